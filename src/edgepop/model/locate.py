"""Find the line of a key path in a YAML file, only when an error needs it.

The fast path loads YAML with libyaml and keeps no positions; positions are looked up here, with
ruamel.yaml's round-trip loader, for the few files that have errors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq


@lru_cache(maxsize=256)
def _load(path: Path) -> Any:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = True
    try:
        return yaml.load(path.read_text(encoding="utf-8"))
    except Exception:
        return None


def line_of(path: Path, keys: tuple[str | int, ...]) -> int | None:
    """1-based line of the deepest node of `keys` that exists in the file (its parent if it is missing)."""
    node = _load(path)
    line: int | None = None
    for key in keys:
        if isinstance(node, CommentedMap) and key in node:
            line = node.lc.key(key)[0] + 1
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            line = node.lc.item(key)[0] + 1
            node = node[key]
        else:
            break
    return line


def clear_cache() -> None:
    _load.cache_clear()
