"""Hypothesis strategies for hostile webhook bodies, seeded from the Green-API fixtures.

A body is a contract fixture with mutations: values replaced by other types, strings
with lone surrogates and control characters, values nested ~1,000 deep, integers of
thousands of digits, non-finite numbers, and the serialised text truncated. Depth and
huge integers are spliced into the text (``json.dumps`` itself refuses them).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "greenapi"
NOT_WEBHOOKS = {"expectations.json", "send_message_request.json", "send_message_response.json",
                "error_466_body.json", "polling_receive_notification.json"}


def webhook_fixtures() -> list[dict[str, Any]]:
    bodies = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(FIXTURES.glob("*.json"))
              if path.name not in NOT_WEBHOOKS]
    polled = json.loads((FIXTURES / "polling_receive_notification.json").read_text(encoding="utf-8"))
    return [*bodies, polled["body"]]


SEEDS = webhook_fixtures()
DEEP = "\u0000\u0001DEEP:"
HUGE = "\u0000\u0001HUGE:"
_MARKER = re.compile(r'"\\u0000\\u0001(DEEP|HUGE):([^"]*)"')

hostile_chars = st.sampled_from(["\ud800", "\udfff", "\ud83d", "\n", "\r\n", "\x1b[2J", "\u2028",
                                 "\x00", "é", "😀", "\\", '"', "</script>"])
hostile_text = st.lists(st.one_of(hostile_chars, st.text(max_size=8)), max_size=6).map("".join)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
    st.integers(1, 1300).map(lambda n: f"{DEEP}{n}"),     # nested n deep (spliced)
    st.integers(300, 5000).map(lambda n: f"{HUGE}{n}"),   # an integer of n digits (spliced)
    st.sampled_from(["NaN", "Infinity", "1e999"]).map(lambda v: f"{HUGE}{v}"),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)), max_leaves=4)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, (*prefix, index)))
    return found


def _replace(node: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[head] = _replace(node[head], tuple(rest), value)
    return copy


def _splice(text: str) -> str:
    """Turn the markers (serialised as JSON strings) into deep nesting or huge numbers."""
    def expand(match: re.Match[str]) -> str:
        kind, arg = match.group(1), match.group(2)
        if kind == "DEEP":
            return "[" * int(arg) + "]" * int(arg)
        return "9" * int(arg) if arg.isdigit() else arg

    return _MARKER.sub(expand, text)


@st.composite
def greenapi_bodies(draw: st.DrawFn, instance: int | None = None) -> bytes:
    """A mutated fixture as the bytes of a request body (``instance`` kept when given)."""
    body: Any = draw(st.sampled_from(SEEDS))
    if instance is not None:
        body = _replace(body, ("instanceData",), {**body.get("instanceData", {}), "idInstance": instance})
    for _ in range(draw(st.integers(0, 3))):
        paths = [p for p in _paths(body) if p and p[:1] != ("instanceData",)] or [()]
        path = draw(st.sampled_from(paths))
        body = _replace(body, path, draw(values))
    text = _splice(json.dumps(body, ensure_ascii=draw(st.booleans())))
    raw = text.encode("utf-8", "surrogatepass")  # raw UTF-8 surrogates, not only escapes
    if draw(st.integers(0, 9)) == 0:
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw


@st.composite
def webchat_bodies(draw: st.DrawFn) -> bytes:
    """A webchat message with hostile text and id (surrogates, newlines, depth)."""
    body: dict[str, Any] = {"text": draw(hostile_text) or "x", "id": draw(st.one_of(hostile_text, values))}
    if draw(st.booleans()):
        body["extra"] = draw(values)
    return _splice(json.dumps(body, ensure_ascii=draw(st.booleans()))).encode("utf-8", "surrogatepass")
