"""YAML for configuration files: bounded in size, depth and alias expansion, strict on keys.

``yaml.safe_load`` constructs anchors once and shares them, so a 400-byte "billion
laughs" file parses quickly into a graph that expands to 10⁹ values the moment anything
walks it (interpolation, validation). Deep nesting exhausts Python's recursion limit
inside the composer. And a key written twice silently keeps the last value.

So a file is composed into YAML nodes with a depth limit, the node graph is measured
(expanded size, depth through aliases, recursive aliases) before any Python value is
built, and duplicate keys are reported with their key path and lines.
"""

from __future__ import annotations

from typing import Any

import attrs
import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.scanner import ScannerError

MAX_BYTES = 1 << 20  # 1 MiB: a configuration file is a few kilobytes
MAX_DEPTH = 64  # nesting levels, counted through aliases too
MAX_VALUES = 100_000  # values once every alias is expanded

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLRefused(Exception):
    """The file is valid YAML but too large, too deep or self-referencing."""


@attrs.frozen
class ParsedYAML:
    """The file's value and its duplicate keys as (key path, message) pairs."""

    data: Any
    duplicates: list[tuple[str, str]]


class _BoundedLoader(yaml.SafeLoader):
    """A SafeLoader whose composer refuses nesting deeper than MAX_DEPTH.

    The composer recurses once per level; stopping it early turns a 5,000-deep file
    into a clear error instead of a RecursionError.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:  # noqa: N803 - PyYAML's name
        # Refuse at the scanner too: it looks ahead over every pending "[" or "{" (up to
        # 1,024 characters, quadratically) before the composer sees the first one.
        super().fetch_flow_collection_start(TokenClass)  # type: ignore[misc]
        if self.flow_level > MAX_DEPTH:
            raise ScannerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", self.get_mark())

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"nesting deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else f"<{type(node).__name__}>"


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class _Measure:
    """One walk over the node graph: expanded size (memoised per node), depth, duplicates."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}
        self.active: set[int] = set()
        self.duplicates: list[tuple[str, str]] = []

    def size(self, node: Node, path: str, depth: int) -> int:
        known = self.sizes.get(id(node))
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if id(node) in self.active:
            raise YAMLRefused(f"line {line}: an alias refers to a value that contains it")
        if depth > MAX_DEPTH:
            raise YAMLRefused(f"line {line}: nesting deeper than {MAX_DEPTH} levels (through aliases)")
        self.active.add(id(node))
        total = 1
        if isinstance(node, MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                key = _key_text(key_node)
                identity = (key_node.tag, key)  # 1 and "1" are two keys
                if key_node.tag != _MERGE_TAG and isinstance(key_node, ScalarNode):
                    key_line = key_node.start_mark.line + 1
                    if identity in seen:
                        self.duplicates.append((
                            _join(path, key),
                            f"duplicate key (line {key_line}; first defined on line {seen[identity]})",
                        ))
                    else:
                        seen[identity] = key_line
                total += self.size(key_node, path, depth + 1)
                total += self.size(value_node, _join(path, key), depth + 1)
                self._bounded(total, node)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                total += self.size(item, _join(path, index), depth + 1)
                self._bounded(total, node)
        self.active.discard(id(node))
        self.sizes[id(node)] = total
        return total

    @staticmethod
    def _bounded(total: int, node: Node) -> None:
        if total > MAX_VALUES:
            raise YAMLRefused(
                f"line {node.start_mark.line + 1}: aliases expand to more than {MAX_VALUES:,} "
                "values (an alias bomb?)"
            )


def parse(text: str) -> ParsedYAML:
    """Parse one configuration document.

    Raises ``yaml.YAMLError`` (syntax, or nesting deeper than MAX_DEPTH, with a mark)
    or :class:`YAMLRefused` (alias expansion, recursive alias).
    """
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return ParsedYAML(None, [])
        measure = _Measure()
        measure.size(node, "", 1)
        return ParsedYAML(loader.construct_document(node), measure.duplicates)
    finally:
        loader.dispose()
