"""The webhook fuzz suite with a large budget and fresh random inputs, by hand.

    .venv/bin/python bench/fuzz_webhooks.py [--examples 20000] [--seed N]

Runs tests/fuzz (every webhook route and channel parser, hostile bodies seeded from the
Green-API contract fixtures) with ``--examples`` per property instead of the suite's
fixed-seed few hundred. Properties: never a 500, never a dead worker, never a forged
log line, a valid message sent afterwards is still answered. A failure prints the
shrunk body that reproduces it; add it as an ``@example`` in tests/fuzz.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=20000, help="examples per property")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (default: random)")
    args = parser.parse_args()
    env = {**os.environ, "MAXCORE_FUZZ_EXAMPLES": str(args.examples), "MAXCORE_FUZZ_RANDOM": "1"}
    command = [sys.executable, "-m", "pytest", str(ROOT / "tests" / "fuzz"), "-q", "-x",
               "-p", "no:cacheprovider"]
    if args.seed is not None:
        command.append(f"--hypothesis-seed={args.seed}")
    started = time.monotonic()
    status = subprocess.call(command, cwd=ROOT, env=env)
    print(f"{args.examples} examples per property in {time.monotonic() - started:.0f}s: "
          f"{'no failure' if status == 0 else 'FAILED (see above)'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
