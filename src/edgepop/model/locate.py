"""Find the line of a key path in a YAML file, only when an error needs it.

The loader reads and parses each file once and hands its node tree here (`remember`); a line is
looked up in that tree when an error names a key path, so no file is parsed a second time (and a
file that changed, or that no bound would let through, is never read again).
"""

from __future__ import annotations

from pathlib import Path

from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

_nodes: dict[Path, Node | None] = {}


def remember(path: Path, node: Node | None) -> None:
    """Keep the node tree of a file the loader has read (None for an empty document)."""
    _nodes[path] = node


def line_of(path: Path, keys: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest node of `keys` that exists in the file (its parent if it is missing)."""
    node = _nodes.get(path)
    line: int | None = None
    for key in keys:
        child: Node | None = None
        if isinstance(node, MappingNode):
            for key_node, value in node.value:
                if isinstance(key_node, ScalarNode) and key_node.value == str(key):
                    line = key_node.start_mark.line + 1
                    child = value
                    break
        elif isinstance(node, SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            child = node.value[key]
            line = child.start_mark.line + 1
        if child is None:
            break
        node = child
    return line


def clear_cache() -> None:
    _nodes.clear()
