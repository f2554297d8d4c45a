"""Logging: loguru sinks (text or JSON), secret redaction, stdlib logging routed in.

Every sink goes through :class:`Redactor`, which replaces each configured secret, the
generic credential shapes (``Bearer …``, ``token=…`` query parameters) and the shapes
connector plugins declare (``redact_patterns``, a token in a URL path) with ``***``. ``diagnose`` is off:
loguru's default prints local variables (secrets included) in tracebacks.

A text record is one line: control characters, line separators and lone surrogates in
the message and the context fields are written as escapes (``\n``, ``\x1b``,
``\ud800``), so a value a user sent (a message id, a notification type) can neither
forge a record nor drive the terminal. Traceback lines, which follow their record, are
indented: a line that starts at the first column is always a record.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

import ahocorasick
from loguru import logger

# Shapes of a credential whatever the upstream. A pattern's group named ``secret`` is
# what becomes ``***`` (the whole match without one); plugins add their own shapes.
GENERIC_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"(?i)bearer\s+(?P<secret>[A-Za-z0-9._~+/=-]{8,})"),
    re.compile(r"(?i)(?:api[_-]?key|token|secret|password)=(?P<secret>[^&\s\"']+)"),
)
# Texts one of which each generic pattern needs (in the lowered line) to match at all:
# most lines hold none, and a regex scan per pattern was a sixth of a log line's cost.
_NEEDLES: dict[re.Pattern[str], tuple[str, ...]] = {
    GENERIC_PATTERNS[0]: ("bearer",),
    GENERIC_PATTERNS[1]: ("key=", "token=", "secret=", "password="),
}
MIN_NEEDLE = 3


def required_text(pattern: re.Pattern[str]) -> str | None:
    """The longest literal every match of ``pattern`` contains (lowered), if it has one of
    at least MIN_NEEDLE characters: a plugin's pattern is then only run on lines holding it.
    Read from the pattern's parse tree (its top-level sequence: each item must match)."""
    try:
        from re import _parser  # type: ignore[attr-defined]

        items = _parser.parse(pattern.pattern, pattern.flags)
        literal = _parser.LITERAL
    except Exception:  # noqa: BLE001 - another interpreter's internals: no needle, always run
        return None
    best, run = "", ""
    for op, argument in items:
        if op is literal:
            run += chr(argument)
            continue
        best, run = max(best, run, key=len), ""
    best = max(best, run, key=len)
    return best.lower() if len(best) >= MIN_NEEDLE else None

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "tenant={extra[_tenant]} msg={extra[_message_id]} | {extra[_message]}\n{exception}"
)

# Escapes for the text sink: C0 and C1 controls, DEL, line/paragraph separators and
# lone surrogates (which no stream can encode).
_ESCAPES: dict[int, str] = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x2028: "\\u2028", 0x2029: "\\u2029"})
_ESCAPES.update({code: f"\\u{code:04x}" for code in range(0xD800, 0xE000)})


def escape_line(text: str) -> str:
    """``text`` on one line, every control character written as an escape."""
    if text.isprintable():
        return text
    return text.translate(_ESCAPES)


# Secrets added since the automaton was built are looked for one by one up to this
# count; one more and the automaton is rebuilt with all of them (at the next line).
_LOOSE_SECRETS = 8


class Redactor:
    """Replaces secret values in text. Secrets can be added while running.

    Adding is O(1); the secrets live in one Aho-Corasick automaton, built lazily at the
    first line logged after a burst of additions, so a line costs one pass whatever the
    number of secrets (configuration load adds them all before any line is written).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._automaton: Any = None
        self._loose: list[str] = []  # added since the automaton was built
        self._patterns: tuple[re.Pattern[str], ...] = GENERIC_PATTERNS
        for secret in secrets:
            self.add(secret)

    def add_pattern(self, pattern: re.Pattern[str]) -> None:
        """Also hide what ``pattern`` matches (its ``secret`` group, else all of it)."""
        with self._lock:
            if pattern not in self._patterns:
                needle = required_text(pattern)
                if needle is not None:
                    _NEEDLES[pattern] = (needle,)
                self._patterns = (*self._patterns, pattern)

    @property
    def patterns(self) -> tuple[re.Pattern[str], ...]:
        return self._patterns

    def add(self, secret: str) -> None:
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            self._loose.append(secret)

    def _matchers(self) -> tuple[Any, tuple[str, ...]]:
        if len(self._loose) > _LOOSE_SECRETS:
            with self._lock:
                if len(self._loose) > _LOOSE_SECRETS:
                    automaton = ahocorasick.Automaton()
                    for secret in self._secrets:
                        automaton.add_word(secret, len(secret))
                    automaton.make_automaton()
                    self._automaton, self._loose = automaton, []
        return self._automaton, tuple(self._loose)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Merged ``(start, end)`` ranges of ``text`` that hold a secret."""
        automaton, loose = self._matchers()
        found: list[tuple[int, int]] = []
        if automaton is not None:
            found.extend((end - length + 1, end + 1) for end, length in automaton.iter_long(text))
        for secret in loose:
            start = text.find(secret)
            while start != -1:
                found.append((start, start + len(secret)))
                start = text.find(secret, start + 1)
        if len(found) < 2:
            return found
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            if start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged

    def __call__(self, text: str) -> str:
        spans = self.spans(text)
        if spans:
            parts: list[str] = []
            last = 0
            for start, end in spans:
                parts.append(text[last:start])
                parts.append("***")
                last = end
            parts.append(text[last:])
            text = "".join(parts)
        lowered: str | None = None
        for pattern in self._patterns:
            needles = _NEEDLES.get(pattern)
            if needles is not None:
                if lowered is None:
                    lowered = text.lower()
                if not any(needle in lowered for needle in needles):
                    continue
            text = pattern.sub(_hide_secret, text)
        return text


def _hide_secret(match: re.Match[str]) -> str:
    if "secret" not in match.re.groupindex or match.start("secret") < 0:
        return "***"
    start, end = match.start(), match.end()
    text = match.string
    return text[start:match.start("secret")] + "***" + text[match.end("secret"):end]


REDACTOR = Redactor()


def redact(text: str) -> str:
    return REDACTOR(text)


class _RedactingSink:
    def __init__(self, stream: TextIO, fmt: str) -> None:
        self.stream = stream
        self.fmt = fmt

    def __call__(self, message: Any) -> None:
        if self.fmt == "json":
            record = message.record
            data = {
                "time": record["time"].astimezone(UTC).isoformat(),
                "level": record["level"].name,
                "message": record["message"],
                "tenant": record["extra"].get("tenant", "-"),
                "message_id": record["extra"].get("message_id", "-"),
                "logger": record["name"],
            }
            if record["exception"] is not None:
                data["exception"] = "".join(_format_exception(record["exception"]))
            text = json.dumps(data, ensure_ascii=False, default=str) + "\n"
            if not text.isascii():
                # Lone surrogates (only inside JSON strings) become JSON escapes again.
                text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        else:
            text = _one_record(str(message))
        self.stream.write(REDACTOR(text))
        self.stream.flush()


def _one_record(text: str) -> str:
    """The record's line as formatted, then its traceback (if any) escaped and indented."""
    line, _, rest = text.partition("\n")
    if not rest:
        return line + "\n"
    trace = "".join(f"    {escape_line(part)}\n" for part in rest.rstrip("\n").split("\n"))
    return f"{line}\n{trace}"


def _text_format(record: Any) -> str:
    """Escape, once per record, the values the text line shows (loguru gives each
    record its own ``extra`` dict)."""
    extra = record["extra"]
    extra["_tenant"] = escape_line(str(extra.get("tenant", "-")))
    extra["_message_id"] = escape_line(str(extra.get("message_id", "-")))
    extra["_message"] = escape_line(record["message"])
    return TEXT_FORMAT


def _format_exception(exc_info: Any) -> list[str]:
    import traceback

    return traceback.format_exception(exc_info.type, exc_info.value, exc_info.traceback)


class InterceptHandler(logging.Handler):
    """Sends stdlib logging records (hypercorn, httpx, ...) to loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(depth=6, exception=record.exc_info).bind(source=record.name).log(
            level, record.getMessage()
        )


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """(Re)configure every sink. Safe to call more than once."""
    stream = stream or sys.stderr
    logger.remove()
    logger.configure(extra={"tenant": "-", "message_id": "-"})
    colorize = fmt == "text" and stream.isatty()
    logger.add(
        _RedactingSink(stream, fmt),
        level=level,
        format=_text_format if fmt == "text" else "{message}",
        colorize=colorize,
        backtrace=False,
        diagnose=False,
    )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name in ("httpx", "httpcore", "httpx2", "httpcore2", "aiohttp", "hpack", "h2", "h11", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).handlers = [InterceptHandler()]
        logging.getLogger(name).propagate = False


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
