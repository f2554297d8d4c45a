"""List parameters of EspoCRM 8.3 (``Core/Record/SearchParamsFetcher.php``) and where items.

Query strings are parsed the way PHP does (``where[0][value][]=a``), then evaluated
against stored records with MariaDB's default semantics: case-insensitive string
comparison, ``NULL`` never equal to anything.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .metadata import EntityDefs

MAX_SIZE_LIMIT = 200
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_ATTRIBUTE_TYPES = {"equals", "notEquals", "in", "notIn", "contains", "startsWith", "isNull",
                    "isNotNull"}
_MULTI_VALUE_ATTRIBUTES = {"emailAddress": "emailAddressData", "phoneNumber": "phoneNumberData"}


class BadRequest(Exception):
    """400 with the reason in ``X-Status-Reason``."""


class Forbidden(Exception):
    """403 with the reason in ``X-Status-Reason``."""


def php_intval(text: str) -> int:
    """PHP's intval on a string: the leading integer, 0 when there is none."""
    match = re.match(r"^\s*([+-]?\d+)", text)
    return int(match.group(1)) if match else 0


def parse_php_query(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """``[("where[0][type]", "equals"), ...]`` → ``{"where": {"0": {"type": "equals"}}}``."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY_RE.match(key)
        if not match:
            result[key] = value
            continue
        base, brackets = match.group(1), match.group(2)
        parts = re.findall(r"\[([^\[\]]*)\]", brackets)
        if not parts:
            result[base] = value
            continue
        node = result.setdefault(base, {})
        if not isinstance(node, dict):
            node = result[base] = {}
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return {key: _listify(value) for key, value in result.items()}


def _listify(value: Any) -> Any:
    """PHP arrays with 0..n keys become lists (order of the indexes, as Espo iterates)."""
    if not isinstance(value, dict):
        return value
    converted = {k: _listify(v) for k, v in value.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


@attrs.frozen
class ListParams:
    where: list[dict[str, Any]]
    select: list[str] | None
    max_size: int
    offset: int
    order_by: str | None
    order: str | None


def list_params(pairs: list[tuple[str, str]]) -> ListParams:
    """Read ``searchParams`` (JSON) or the individual list parameters."""
    query = parse_php_query(pairs)
    if "searchParams" in query:
        try:
            data = json.loads(query["searchParams"])
        except (TypeError, ValueError):
            raise BadRequest("Invalid search params JSON.") from None
        if not isinstance(data, dict):
            raise BadRequest("Invalid search params JSON.")
        max_size = data.get("maxSize")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int)):
            raise BadRequest("maxSize must be integer.")
        offset = data.get("offset") or 0
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise BadRequest("offset must be integer.")
        select = data.get("select")
        where = data.get("where") or []
        order_by, order = data.get("orderBy"), data.get("order")
    else:
        max_size = php_intval(query["maxSize"]) if isinstance(query.get("maxSize"), str) else None
        offset = php_intval(query["offset"]) if isinstance(query.get("offset"), str) else 0
        select_text = query.get("select")
        select = select_text.split(",") if isinstance(select_text, str) and select_text else None
        where = query.get("where") or []
        order_by = query.get("orderBy") or query.get("sortBy")
        order = query.get("order")
        if order is None and "asc" in query:
            order = "asc" if query["asc"] == "true" else "desc"
    if max_size is None:
        max_size = MAX_SIZE_LIMIT
    if max_size > MAX_SIZE_LIMIT:
        raise Forbidden(f"Max size should not exceed {MAX_SIZE_LIMIT}. Use offset and limit.")
    if not isinstance(where, list) or not all(isinstance(item, dict) for item in where):
        raise BadRequest("Bad where.")
    if select is not None and (not isinstance(select, list)
                               or not all(isinstance(s, str) for s in select)):
        raise BadRequest("Bad select.")
    return ListParams(where, select, max(max_size, 0), max(offset, 0),
                      order_by if isinstance(order_by, str) else None,
                      order.upper() if isinstance(order, str) else None)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _values(record: Mapping[str, Any], attribute: str) -> list[Any]:
    """All values an attribute has (e-mails and phones: every address of the record)."""
    if attribute == "name" and "firstName" in record and "name" not in record:
        full = " ".join(p for p in (record.get("firstName"), record.get("lastName")) if p)
        return [full or None]
    data_key = _MULTI_VALUE_ATTRIBUTES.get(attribute)
    if data_key and record.get(data_key):
        return [item.get(attribute) for item in record[data_key]] or [None]
    return [record.get(attribute)]


def fold(value: Any) -> Any:
    """How ``equals`` compares values (strings case-insensitively)."""
    return _fold(value)


@functools.cache
def equality_keys(attribute: str) -> Callable[[Mapping[str, Any]], list[Any]]:
    """What an ``equals`` on ``attribute`` compares a record by: its folded values (the
    keys of :meth:`Store.lookup`'s index, so the index finds every record it matches)."""

    def keys(record: Mapping[str, Any]) -> list[Any]:
        return [_fold(v) for v in _values(record, attribute) if v is not None]

    return keys


def check_where(items: list[dict[str, Any]], entity: EntityDefs) -> None:
    """Refuse unknown types and attributes before touching the data (400)."""
    for item in items:
        kind = item.get("type")
        if kind in ("and", "or"):
            value = item.get("value")
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise BadRequest(f"Bad where item: '{kind}' needs a list of items.")
            check_where(value, entity)
            continue
        if kind not in _ATTRIBUTE_TYPES:
            raise BadRequest(f"Bad where item type '{kind}'.")
        attribute = item.get("attribute")
        if not isinstance(attribute, str) or not attribute:
            raise BadRequest("Bad where item. No 'attribute'.")
        if attribute not in entity.attributes:
            # 8.3's exact wording (Core/Select/Where/Checker.php).
            raise BadRequest(f"Not existing attribute '{attribute}' in where.")
        if kind in ("in", "notIn") and not isinstance(item.get("value"), list):
            raise BadRequest(f"Bad where item. '{kind}' needs an array value.")


def matches(record: Mapping[str, Any], item: Mapping[str, Any]) -> bool:
    kind = item["type"]
    if kind == "and":
        return all(matches(record, sub) for sub in item["value"])
    if kind == "or":
        return any(matches(record, sub) for sub in item["value"])
    values = _values(record, item["attribute"])
    wanted = item.get("value")
    if kind == "isNull":
        return all(v is None for v in values)
    if kind == "isNotNull":
        return any(v is not None for v in values)
    present = [_fold(v) for v in values if v is not None]
    if kind == "equals":
        return wanted is not None and _fold(wanted) in present
    if kind == "notEquals":
        return wanted is not None and bool(present) and _fold(wanted) not in present
    if kind == "in":
        return any(_fold(w) in present for w in wanted or ())
    if kind == "notIn":
        return bool(present) and not any(_fold(w) in present for w in wanted or ())
    needle = _fold(str(wanted or ""))
    if kind == "contains":
        return any(isinstance(v, str) and needle in v for v in present)
    if kind == "startsWith":
        return any(isinstance(v, str) and v.startswith(needle) for v in present)
    return False


def sort_key(attribute: str) -> Any:
    """MariaDB order: NULL first ascending; strings case-insensitively."""

    def key(row: tuple[int, dict[str, Any]]) -> tuple[Any, ...]:
        value = _values(row[1], attribute)[0]
        if value is None:
            return (0, "", row[0])
        if isinstance(value, bool | int | float):
            return (1, float(value), row[0])
        return (2, _fold(str(value)), row[0])

    return key
