"""Logging: loguru sinks (text or JSON), secret redaction, stdlib logging routed in.

Every sink goes through :class:`Redactor`, which replaces each configured secret and
anything shaped like a Green-API token in a URL path with ``***``. ``diagnose`` is off:
loguru's default prints local variables (secrets included) in tracebacks.
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

from loguru import logger

# /waInstance1101000001/sendMessage/<token>  →  /waInstance1101000001/sendMessage/***
_URL_TOKEN_RE = re.compile(r"(/waInstance\d+/[A-Za-z]+/)([^/\s?\"'#]+)")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_KEY_PARAM_RE = re.compile(r"(?i)((?:api[_-]?key|token|secret|password)=)[^&\s\"']+")

TEXT_FORMAT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "tenant={extra[tenant]} msg={extra[message_id]} | {message}"
)


class Redactor:
    """Replaces secret values in text. Secrets can be added while running."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if not secret or len(secret) < 4:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub("***", text)
        text = _URL_TOKEN_RE.sub(r"\1***", text)
        text = _BEARER_RE.sub(r"\1***", text)
        return _KEY_PARAM_RE.sub(r"\1***", text)


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
        else:
            text = str(message)
        self.stream.write(REDACTOR(text))
        self.stream.flush()


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
        format=TEXT_FORMAT if fmt == "text" else "{message}",
        colorize=colorize,
        backtrace=False,
        diagnose=False,
    )
    logging.basicConfig(handlers=[InterceptHandler()], level=0, force=True)
    for name in ("httpx", "httpcore", "hpack", "h2", "h11", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("hypercorn.error", "hypercorn.access"):
        logging.getLogger(name).handlers = [InterceptHandler()]
        logging.getLogger(name).propagate = False


def now_iso() -> str:
    return datetime.now(UTC).isoformat()
