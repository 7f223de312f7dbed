"""Random single mistakes in real inventories: validate reports them cleanly, or render works.

The corpus (test_validate_corpus.py) pins the messages of mistakes someone thought of; this test
looks for the ones nobody did. It takes the lab and the example PoPs, applies one random mutation to
one node of one file of a scratch copy (another type or value, a deleted key, a duplicated list
item, two values swapped, a huge/negative/zero number, an empty/unicode/very long string), then:

- validate must return a Report, never raise;
- an invalid inventory must yield a clean report: no model, and every error on a file of the
  inventory with a message;
- a valid one must derive, render and write exactly as `edgepop render` does.

Hypothesis runs derandomized, so CI sees the same examples every time; a failure prints the
mutation it applied (file, key path, new value), which is enough to write a corpus case for it.
"""

from __future__ import annotations

import copy
import io
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from edgepop.render import render_pop, write_tree
from edgepop.validate import Report, validate_inventory

REPO = Path(__file__).resolve().parents[2]
INVENTORIES = [REPO / "inventory" / "lab", *sorted(p for p in (REPO / "inventory" / "examples").iterdir())]
MUTATIONS = ("replace", "borrow", "delete", "duplicate", "swap", "number", "string")

Key = str | int
NodePath = tuple[Key, ...]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.preserve_quotes = True
    return yaml


@dataclass(frozen=True)
class _File:
    """One YAML file of an inventory, its parsed tree and every key path in it."""

    rel: str
    data: Any
    paths: tuple[NodePath, ...]
    explicit_start: bool  # starts with '---': written back the same way, so line numbers stay

    def dump(self, tree: Any, root: Path) -> None:
        yaml = _yaml()
        yaml.explicit_start = self.explicit_start
        out = io.StringIO()
        yaml.dump(tree, out)
        (root / self.rel).write_text(out.getvalue(), encoding="utf-8")


def _paths(node: Any, at: NodePath = ()) -> Iterator[NodePath]:
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            yield (*at, str(key))
            yield from _paths(value, (*at, str(key)))
    elif isinstance(node, CommentedSeq):
        for i, value in enumerate(node):
            yield (*at, i)
            yield from _paths(value, (*at, i))


def _load(root: Path) -> list[_File]:
    files = []
    for path in sorted(root.rglob("*.yml")):
        text = path.read_text(encoding="utf-8")
        data = _yaml().load(text)
        found = tuple(_paths(data))
        if found:
            files.append(_File(str(path.relative_to(root)), data, found, text.startswith("---")))
    return files


def _parent(data: Any, path: NodePath) -> Any:
    node = data
    for key in path[:-1]:
        node = node[key]
    return node


def _get(data: Any, path: NodePath) -> Any:
    return _parent(data, path)[path[-1]]


def _scalars_of(files: list[_File]) -> tuple[Any, ...]:
    """Every distinct plain scalar of an inventory: values that pass the schema somewhere, so that
    moving one to another key reaches the cross-checks and the renderer, not only the schema."""
    found: dict[str, Any] = {}
    for file in files:
        for path in file.paths:
            value = _get(file.data, path)
            if isinstance(value, str | int | float | bool) and not isinstance(value, CommentedMap | CommentedSeq):
                found.setdefault(f"{type(value).__name__}:{value}", value)
    return tuple(found[k] for k in sorted(found))


SOURCES = {root.name: (root, _load(root)) for root in INVENTORIES}
BORROWED = {name: _scalars_of(files) for name, (_, files) in SOURCES.items()}

_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_long = st.builds(lambda n: "x" * n, st.sampled_from([300, 5000]))
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 65535, 65536, 2**31, 2**32, 2**63, 2**64 + 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    _long,
    st.sampled_from(["", " ", "é", "🙂", "203.0.113.0", "198.51.100.255/24", "::", "ff:ff:ff:ff:ff:ff"]),
    st.sampled_from(["{{ vault_nope }}", "sw1", "srv1", "rtr1", "lab1", "external", "management", "http", "discover"]),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["name", "x", "type", "mac"]), inner, max_size=3)
    ),
    max_leaves=4,
)


def _mutate(draw: Any, data: Any, file: _File, borrowed: tuple[Any, ...] = ()) -> str:
    """Apply one mutation to `data` (a copy of file.data) in place; describe it for the failure report.
    `draw` draws from a strategy; `borrowed` are the inventory's own scalars."""
    path = draw(st.sampled_from(file.paths))
    kind = draw(st.sampled_from(MUTATIONS))
    parent, last = _parent(data, path), path[-1]
    where = f"{file.rel}: {'.'.join(map(str, path))}"
    if kind == "delete":
        del parent[last]
        return f"{where}: deleted"
    if kind == "duplicate" and isinstance(parent, list):
        parent.insert(int(last), copy.deepcopy(parent[last]))
        return f"{where}: list item duplicated"
    if kind == "swap":
        other = draw(st.sampled_from(file.paths))
        if other[: len(path)] != path and path[: len(other)] != other:  # neither inside the other
            a, b = copy.deepcopy(_get(data, path)), copy.deepcopy(_get(data, other))
            parent[last] = b
            _parent(data, other)[other[-1]] = a
            return f"{where}: swapped with {'.'.join(map(str, other))}"
    if kind == "borrow" and borrowed:
        value: Any = draw(st.sampled_from(borrowed))
    elif kind == "number":
        value = draw(st.sampled_from([0, -1, -(2**63), 2**63, 10**30, 4294967296]))
    elif kind == "string":
        value = draw(st.sampled_from(["", "\u00e9\u00e8\u2603", "x" * 100_000, "a\nb", "../../etc", " 1"]))
    else:
        value = draw(_values)
    parent[last] = value
    return f"{where}: set to {value!r:.200}"


def _check_report(report: Report, root: Path, mutation: str) -> None:
    if report.ok:
        assert report.model is not None, mutation
        files = render_pop(report.model)
        assert files and "summary.md" in files, mutation
        with tempfile.TemporaryDirectory() as out:
            write_tree(files, Path(out) / "render")
        return
    assert report.model is None, mutation
    text = report.format(str(root))
    assert len(text.splitlines()) >= len(report.errors), mutation
    for issue in report.errors:
        assert issue.message.strip(), f"{mutation}: empty message {issue!r}"
        assert "Traceback" not in issue.message and "object at 0x" not in issue.message, f"{mutation}: {issue!r}"
        file = root / issue.file
        assert file == root or root in file.parents, f"{mutation}: {issue.file} is outside the inventory"


def one_random_mistake(data: st.DataObject) -> None:
    """One example: mutate one node of one file of one inventory, validate, check the outcome."""
    name = data.draw(st.sampled_from(sorted(SOURCES)))
    source, files = SOURCES[name]
    file = data.draw(st.sampled_from(files))
    tree = copy.deepcopy(file.data)
    mutation = f"{name}/{_mutate(data.draw, tree, file, BORROWED[name])}"
    assume(tree != file.data)  # swapping two equal values, say, tests nothing
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / name
        shutil.copytree(source, root)
        file.dump(tree, root)
        try:
            report = validate_inventory(root)
        except Exception as exc:  # the point of the test: validate must not raise on any input
            pytest.fail(f"validate raised {type(exc).__name__}: {exc} after {mutation}")
        event("valid" if report.ok else "invalid")
        try:
            _check_report(report, root.resolve(), mutation)
        except AssertionError:
            raise
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} after {mutation} (validated: {report.ok})")


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,  # derandomized: the same examples every run, nothing to remember
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_one_random_mistake_is_reported_or_renders(data: st.DataObject) -> None:
    one_random_mistake(data)


def test_the_sources_are_valid_and_render() -> None:
    """The mutations start from valid inventories, so any error comes from the mutation."""
    for root, _ in SOURCES.values():
        report = validate_inventory(root)
        assert report.errors == [], report.format()
        assert report.model is not None
        assert "summary.md" in render_pop(report.model)


class _Scripted:
    """A `draw` that returns given choices in order, to drive the mutator deterministically."""

    def __init__(self, *choices: Any) -> None:
        self.choices = list(choices)

    def __call__(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.choices.pop(0)


@pytest.mark.parametrize(
    ("choices", "described", "expect"),
    [
        (
            [("pop", "asn"), "replace", "AS64496"],
            "group_vars/all/pop.yml: pop.asn: set to 'AS64496'",
            "group_vars/all/pop.yml:7: pop.asn: expected a valid integer, got str 'AS64496'",
        ),
        (
            [("pop", "server_asn"), "borrow", 64496],
            "group_vars/all/pop.yml: pop.server_asn: set to 64496",
            "group_vars/all/pop.yml:4: pop: server_asn must differ from asn (servers peer with the routers over eBGP)",
        ),
        (
            [("pop", "provisioning", "callhome_url"), "delete"],
            "group_vars/all/pop.yml: pop.provisioning.callhome_url: deleted",
            "group_vars/all/pop.yml:24: pop.provisioning.callhome_url: required key is missing",
        ),
        (
            [("pop", "pdus", 0), "duplicate"],
            "group_vars/all/pop.yml: pop.pdus.0: list item duplicated",
            "group_vars/all/pop.yml:34: pop.pdus[1].name: duplicate PDU name 'pdu1'",
        ),
    ],
)
def test_a_mutation_is_applied_and_reported(choices: list[Any], described: str, expect: str, lab_copy: Path) -> None:
    """The mutator changes what it says it changes, and the check sees the error it causes (a test of
    the test: an idle mutator or a check that accepts anything would prove nothing)."""
    _, files = SOURCES["lab"]
    pop = next(f for f in files if f.rel == "group_vars/all/pop.yml")
    tree = copy.deepcopy(pop.data)
    assert _mutate(_Scripted(*choices), tree, pop, BORROWED["lab"]) == described
    assert tree != pop.data
    pop.dump(tree, lab_copy)
    report = validate_inventory(lab_copy)
    _check_report(report, lab_copy.resolve(), described)
    assert expect in report.format().splitlines()
