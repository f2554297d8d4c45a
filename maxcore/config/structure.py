"""A strict cattrs converter and the translation of its errors into readable problems.

cattrs converts silently (``42`` becomes ``"42"``, ``"abc"`` becomes ``('a', 'b', 'c')``
where a list is expected); configuration must not, or a typo in a port, a token or a
tool list would pass unnoticed. Each problem names the key path.

Two departures from cattrs' defaults:

- a string that came from ``${VAR}`` (a :class:`FromEnv`) is converted to the field's
  type (``port: ${PORT}`` is an integer), since the environment only holds strings;
- attrs classes are structured field by field and every field's validator is run on its
  own, so a block with three bad values gives three problems in one ``maxcore check``
  instead of one per round.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mutable_sequence,
    is_sequence,
    list_structure_factory,
)
from cattrs.errors import (
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import AttributeValidationNote

from .models import FieldValueError

T = TypeVar("T")
_INT_RE = re.compile(r"^[+-]?\d{1,30}$")
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


class FromEnv(str):
    """A string built from ``${VAR}`` references.

    Its ``repr`` is the reference as written in the file (``'${GREEN_TOKEN}'``), so an
    error message that shows the value never shows what the environment holds.
    """

    template: str

    def __new__(cls, value: str, template: str) -> FromEnv:
        obj = super().__new__(cls, value)
        obj.template = template
        return obj

    def __repr__(self) -> str:
        return repr(self.template)


def _type_name(value: Any) -> str:
    if isinstance(value, FromEnv):
        return "string from the environment"
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
    return str(value)  # a plain str: FromEnv stays inside the loader


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, FromEnv) and _INT_RE.match(value.strip()):
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_got(value)}")
    return value


def _strict_float(value: Any, _type: type) -> float:
    if isinstance(value, FromEnv):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {_got(value)}")
    return float(value)


def _strict_bool(value: Any, _type: type) -> bool:
    if isinstance(value, FromEnv) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_got(value)}")
    return value


def _plain(value: Any, _type: Any = None) -> Any:
    """``Any`` fields keep the YAML value as is, minus the FromEnv wrapper."""
    if isinstance(value, FromEnv):
        return str(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _sequence_factory(type_: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    """Lists and homogeneous tuples accept a YAML list only, never a string or a mapping."""
    if is_mutable_sequence(type_):
        base = list_structure_factory(type_, converter)
    else:
        base = homogenous_tuple_structure_factory(type_, converter)

    def structure(value: Any, target: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_got(value)}")
        return base(value, target)

    return structure


def _note(cls: type, name: str, type_: Any) -> AttributeValidationNote:
    return AttributeValidationNote(f"Structuring class {cls.__qualname__} @ attribute {name}",
                                   name, type_)


def _with_note(exc: Exception, cls: type, name: str, type_: Any) -> Exception:
    exc.__notes__ = [*getattr(exc, "__notes__", []), _note(cls, name, type_)]
    return exc


def _attrs_factory(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    attrs.resolve_types(cls)
    fields = [a for a in attrs.fields(cls) if a.init]
    known = {a.name for a in fields}

    def structure(value: Any, _target: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected a mapping of settings, got {_got(value)}")
        errors: list[Exception] = []
        kwargs: dict[str, Any] = {}
        for a in fields:
            if a.name not in value:
                if a.default is attrs.NOTHING:
                    errors.append(_with_note(KeyError(a.name), cls, a.name, a.type))
                continue
            try:
                kwargs[a.alias] = converter.structure(value[a.name], a.type)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a problem
                errors.append(_with_note(exc, cls, a.name, a.type))
        extra = set(value) - known
        if extra:
            errors.append(ForbiddenExtraKeysError("", cls, extra))
        errors.extend(_validator_errors(cls, fields, kwargs, partial=bool(errors)))
        if errors:
            raise ClassValidationError(f"While structuring {cls.__name__}", errors, cls)
        try:
            return cls(**kwargs)
        except Exception as exc:  # e.g. from __attrs_post_init__: keep this class's path
            raise ClassValidationError(f"While structuring {cls.__name__}", [exc], cls) from exc

    return structure


def _validator_errors(
    cls: type, fields: list[attrs.Attribute], kwargs: dict[str, Any], *, partial: bool
) -> Iterator[Exception]:
    """Run each field's validator on its own, the way ``__init__`` would, without stopping."""
    shell: Any = object.__new__(cls)
    ok: list[attrs.Attribute] = []
    for a in fields:
        if a.alias in kwargs:
            value = kwargs[a.alias]
        elif a.default is attrs.NOTHING:
            continue
        elif isinstance(a.default, attrs.Factory):  # type: ignore[arg-type]
            factory: Any = a.default
            value = factory.factory(shell) if factory.takes_self else factory.factory()
        else:
            value = a.default
        if a.converter is not None and a.alias in kwargs:
            try:
                value = a.converter(value)  # type: ignore[operator]
            except Exception as exc:  # noqa: BLE001
                yield _with_note(exc, cls, a.name, a.type)
                continue
        object.__setattr__(shell, a.name, value)
        ok.append(a)
    for a in ok:
        if a.validator is None:
            continue
        try:
            a.validator(shell, a, getattr(shell, a.name))
        except AttributeError:
            if not partial:  # another field is missing: that problem is already reported
                raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a problem
            name = exc.field if isinstance(exc, FieldValueError) else a.name
            yield _with_note(exc, cls, name, a.type)


def make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook(Any, _plain)
    converter.register_structure_hook_factory(is_sequence, _sequence_factory)
    converter.register_structure_hook_factory(attrs.has, _attrs_factory)
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


def _noted(exc: BaseException) -> bool:
    return any(isinstance(n, AttributeValidationNote) for n in getattr(exc, "__notes__", ()))


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
        # With a note, the path already ends with the field; without (raised from
        # __attrs_post_init__), the error names it.
        yield (path if _noted(exc) else join(path, exc.field)), str(exc)
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
