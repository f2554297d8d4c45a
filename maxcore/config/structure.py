"""A strict cattrs converter and the translation of its errors into readable problems.

cattrs converts silently (``42`` becomes ``"42"``); configuration must not, or a typo
in a port or a token would pass unnoticed. Each problem names the key path.
"""

from __future__ import annotations

from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)

from .models import FieldValueError

T = TypeVar("T")


def _type_name(value: Any) -> str:
    return {
        str: "string", int: "integer", float: "number", bool: "boolean", list: "list",
        dict: "mapping", type(None): "nothing (null)",
    }.get(type(value), type(value).__name__)


def _got(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{shown} ({_type_name(value)})"


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_got(value)}")
    return value


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_got(value)}")
    return value


def _strict_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_got(value)}")
    return float(value)


def _strict_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_got(value)}")
    return value


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    return converter


CONVERTER = make_converter()


def join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def structure(data: Any, cls: type[T], path: str = "") -> tuple[T | None, list[tuple[str, str]]]:
    """Structure ``data`` into ``cls``; return (instance, []) or (None, problems)."""
    if data is None:
        data = {}
    if attrs.has(cls) and not isinstance(data, dict):
        return None, [(path, f"expected a mapping of settings, got {_got(data)}")]
    try:
        return CONVERTER.structure(data, cls), []
    except Exception as exc:  # noqa: BLE001 - every failure becomes a readable problem
        return None, list(_walk(exc, path, cls))


def _walk(exc: BaseException, path: str, cls: Any) -> Any:
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        fields = {a.name: a.type for a in attrs.fields(exc.cl)} if attrs.has(exc.cl) else {}
        for sub, note in with_notes:
            yield from _walk(sub, join(path, note.name), fields.get(note.name))
        for sub in without:
            yield from _walk(sub, path, exc.cl)
    elif isinstance(exc, IterableValidationError):
        items, loose = exc.group_exceptions()
        for sub, item in items:
            # IterableValidationNote subclasses str: its `index` attribute shadows str.index.
            yield from _walk(sub, join(path, int(item.index)), None)  # type: ignore[call-overload]
        for sub in loose:
            yield from _walk(sub, path, None)
        return
    elif isinstance(exc, ForbiddenExtraKeysError):
        allowed = ", ".join(a.name for a in attrs.fields(exc.cl)) if attrs.has(exc.cl) else ""
        for key in sorted(exc.extra_fields):
            yield join(path, key), f"unknown key; expected one of: {allowed}"
    elif isinstance(exc, FieldValueError):
        yield join(path, exc.field), str(exc)
    elif isinstance(exc, KeyError):
        # cattrs reports a missing attribute under a note that already names it.
        yield path, "required key is missing"
    elif isinstance(exc, TypeError | ValueError):
        text = str(exc)
        if "has no attribute 'keys'" in text or "object is not iterable" in text:
            text = "expected a mapping of settings" if attrs.has(cls or object) else (
                f"expected a value of type {getattr(cls, '__name__', cls)}"
            )
        elif "is not a valid" in text or text.startswith("expected"):
            pass
        else:
            text = f"invalid value ({text})"
        yield path, text
    else:
        yield path, f"invalid value ({type(exc).__name__}: {exc})"
