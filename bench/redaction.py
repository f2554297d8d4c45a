"""Log redaction cost: adding N secrets, then one log line, vs the former single regex.

    .venv/bin/python bench/redaction.py [--secrets 1000] [--lines 20000]

The baseline (recompile one alternation of every secret at each add, then ``sub`` per
line) is measured in the same run. Secrets are 32–50-character hex tokens, as real
deployments have; lines look like the pipeline's (a URL with a token shape, a chat id).
"""

from __future__ import annotations

import argparse
import random
import re
import time

from maxcore.logs import Redactor

LINE = ("2026-01-01 12:00:00.000 | INFO    | tenant=acme-{n} msg=3EB0C767D71D3A8E | [GREENAPI_SEND] "
        "sent part 1/1 (128 chars) to chat 33612345678@c.us: idMessage BAE5FB8C45BE1D7B")


class RegexRedactor:
    """The former implementation: one regex of every secret, rebuilt on each add."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.pattern: re.Pattern[str] | None = None

    def add(self, secret: str) -> None:
        self.secrets.add(secret)
        ordered = sorted(self.secrets, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __call__(self, text: str) -> str:
        return self.pattern.sub("***", text) if self.pattern else text


def measure(redactor: object, secrets: list[str], lines: list[str]) -> tuple[float, float]:
    started = time.perf_counter()
    for secret in secrets:
        redactor.add(secret)  # type: ignore[attr-defined]
    add_s = time.perf_counter() - started
    redactor(lines[0])  # type: ignore[operator]  # a lazy build happens here, counted with the adds
    add_s = time.perf_counter() - started
    started = time.perf_counter()
    for line in lines:
        redactor(line)  # type: ignore[operator]
    per_line_us = (time.perf_counter() - started) / len(lines) * 1e6
    return add_s, per_line_us


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--secrets", type=int, default=1000)
    parser.add_argument("--lines", type=int, default=20000)
    parser.add_argument("--baseline-secrets", type=int, default=1000,
                        help="the regex baseline is quadratic: measure it on at most this many")
    args = parser.parse_args()
    rng = random.Random(7)
    secrets = ["".join(rng.choice("0123456789abcdef") for _ in range(rng.randint(32, 50)))
               for _ in range(args.secrets)]
    lines = [LINE.format(n=n) + (f" token {secrets[n % len(secrets)]}" if n % 10 == 0 else "")
             for n in range(args.lines)]
    new_add, new_line = measure(Redactor(), secrets, lines)
    old_lines = lines[: max(200, args.lines // 20)]  # the baseline is slow: fewer lines
    old_add, old_line = measure(RegexRedactor(), secrets[: args.baseline_secrets], old_lines)
    print(f"{args.secrets} secrets, 32-50 hex chars (baseline on {min(args.secrets, args.baseline_secrets)})")
    print(f"  add all + first line: regex {old_add * 1000:9.1f} ms   automaton {new_add * 1000:7.1f} ms")
    print(f"  per log line:         regex {old_line:9.1f} µs   automaton {new_line:7.1f} µs "
          "(includes the three token-shape regexes)")
    interleaved = Redactor()
    started = time.perf_counter()
    for secret, line in zip(secrets, lines, strict=False):
        interleaved.add(secret)
        interleaved(line)
    print(f"  add + line interleaved, {len(secrets)} times: automaton "
          f"{(time.perf_counter() - started) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
