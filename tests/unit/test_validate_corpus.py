"""The bad-inventory corpus: every validator message, pinned exactly.

Each tests/data/bad/<NNN>-<slug>.yml applies a few edits to a copy of inventory/lab and lists every
line `Report.format()` must print, in order. To regenerate the `expect` lists after a deliberate
message change, run

    EDGEPOP_UPDATE_CORPUS=1 pytest tests/unit/test_validate_corpus.py

then read every changed message in `git diff` before committing it.

Prefer set/unset/append: they survive reformatting of the lab files, `replace` does not.

Edit operations (each names its `file`, relative to the inventory root, except `delete`):
  set:     {path: [key, 0, key], value: ...}  round-trip edit; an index equal to the length appends;
                                              in hosts.yml a {group: name} step finds that group at
                                              any depth, so cases survive regrouping of the lab
  unset:   {path: [key, ...]}                 remove a key or a list item
  replace: {old: "...", new: "..."}           raw text edit; `old` must occur exactly once
  append:  "..."                              raw text added at the end of the file
  write:   "..."                              the whole file
  delete:  host_vars/x.yml                    remove a file or a directory
"""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from edgepop.cli import main
from edgepop.validate import validate_inventory

CORPUS = Path(__file__).resolve().parent.parent / "data" / "bad"
CASES = sorted(CORPUS.glob("*.yml"))
UPDATE = os.environ.get("EDGEPOP_UPDATE_CORPUS") == "1"
CASE_KEYS = {"description", "edits", "expect"}
EDIT_OPS = {"set", "unset", "replace", "append", "write"}


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.width = 4096
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _find_group(node: Any, name: str) -> Any:
    """The body of the group `name` anywhere under `node` (hosts.yml, or a group body in it)."""
    if not isinstance(node, dict):
        return None
    if "all" in node and "children" not in node:
        node = node["all"] or {}
    children = node.get("children") or {}
    if name in children:
        return children[name]
    for child in children.values():
        found = _find_group(child, name)
        if found is not None:
            return found
    return None


def _walk(node: Any, path: list[Any], where: str) -> Any:
    for key in path:
        try:
            node = _find_group(node, key["group"]) if isinstance(key, dict) else node[key]
            assert node is not None
        except (KeyError, IndexError, TypeError, AssertionError):
            raise AssertionError(f"{where}: no {key!r} on the way to {path}") from None
    return node


def _edit_tree(file: Path, op: str, arg: dict[str, Any]) -> None:
    yaml = _yaml()
    yaml.explicit_start = file.read_text(encoding="utf-8").startswith("---")  # keep the line numbers
    data = yaml.load(file.read_text(encoding="utf-8"))
    path = list(arg["path"])
    parent = _walk(data, path[:-1], str(file))
    last = path[-1]
    if op == "set":
        if isinstance(parent, list) and last == len(parent):
            parent.append(arg["value"])
        else:
            parent[last] = arg["value"]
    else:
        _walk(parent, [last], str(file))
        del parent[last]
    out = io.StringIO()
    yaml.dump(data, out)
    file.write_text(out.getvalue(), encoding="utf-8")


def apply_edits(root: Path, edits: list[dict[str, Any]]) -> None:
    """Apply the case's edits in order; an edit that would change nothing fails the test."""
    for edit in edits:
        if "delete" in edit:
            assert set(edit) == {"delete"}, edit
            target = root / edit["delete"]
            assert target.exists(), f"delete: {edit['delete']} does not exist"
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
            continue
        ops = set(edit) & EDIT_OPS
        assert set(edit) == {"file", *ops} and len(ops) == 1, f"bad edit {edit}"
        op = ops.pop()
        file = root / edit["file"]
        if op == "write":
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(edit["write"], encoding="utf-8")
        elif op == "append":
            text = file.read_text(encoding="utf-8")
            file.write_text(text + ("" if text.endswith("\n") else "\n") + edit["append"], encoding="utf-8")
        elif op == "replace":
            text = file.read_text(encoding="utf-8")
            old, new = edit["replace"]["old"], edit["replace"]["new"]
            assert text.count(old) == 1, f"{edit['file']}: {old!r} occurs {text.count(old)} times, not once"
            file.write_text(text.replace(old, new), encoding="utf-8")
        else:
            _edit_tree(file, op, edit[op])


def _load_case(case: Path) -> Any:
    spec = _yaml().load(case.read_text(encoding="utf-8"))
    assert set(spec) <= CASE_KEYS and {"description", "edits"} <= set(spec), f"{case.name}: keys {set(spec)}"
    assert spec["edits"], f"{case.name}: no edits"
    return spec


def _rewrite_expect(case: Path, spec: Any, lines: list[str]) -> None:
    spec["expect"] = [DoubleQuotedScalarString(line) for line in lines]
    out = io.StringIO()
    _yaml().dump(spec, out)
    case.write_text(out.getvalue(), encoding="utf-8")


def _with_base(line: str, base: str) -> str:
    """A corpus line as the CLI prints it, with the inventory path in front of the file."""
    return base + line[1:] if line.startswith(".:") else f"{base}/{line}"


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 110
    numbers = [case.name.split("-", 1)[0] for case in CASES]
    assert len(numbers) == len(set(numbers)), "two corpus cases share a number"
    for case in CASES:
        text = case.read_text(encoding="utf-8")
        assert "192.0.2." not in text, f"{case.name}: use 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32"


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_bad_inventory(case: Path, lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _load_case(case)
    apply_edits(lab_copy, spec["edits"])

    report = validate_inventory(lab_copy)
    got = report.format().splitlines()
    if UPDATE and got != list(spec.get("expect") or []):
        _rewrite_expect(case, spec, got)
        spec = _load_case(case)
    expect = list(spec.get("expect") or [])
    assert expect, f"{case.name}: a bad inventory must list the errors it expects"
    assert got == expect
    assert report.model is None

    for line in expect:
        file = line.split(":", 1)[0]
        # the error is put on a file of this inventory, one that is there (except a missing hosts.yml)
        assert (lab_copy / file).is_file() or "missing hosts.yml" in line, f"{case.name}: no file {file!r}"

    base = str(lab_copy)
    assert main(["validate", base]) == 65
    err = capsys.readouterr().err.splitlines()
    assert err[:-1] == [_with_base(line, base) for line in expect]
    assert err[-1] == f"{base}: invalid, {len(expect)} error{'s' if len(expect) != 1 else ''}"


# --- properties of the corpus as a whole -------------------------------------------------------

# messages about a whole file or the inventory itself, where no line can be named
FILE_LEVEL = ("host_vars for ", "group_vars for ", "has no '", "missing hosts.yml")
MESSAGE_RE = re.compile(r"^(?P<file>[^:]+?)(?::(?P<line>\d+))?: (?:(?P<path>[A-Za-z_][\w.\[\]-]*): )?(?P<msg>.+)$")


def _all_expected() -> list[tuple[str, str]]:
    return [(case.stem, line) for case in CASES for line in _load_case(case).get("expect") or []]


def test_several_cases_show_all_errors_at_once() -> None:
    """The point of the validator: many errors in many files come out of one run."""
    broad = []
    for case in CASES:
        expect = list(_load_case(case).get("expect") or [])
        files = {line.split(":", 1)[0] for line in expect}
        if len(expect) >= 5 and len(files) >= 3:
            broad.append(case.stem)
    assert len(broad) >= 2, broad


def test_every_message_names_file_line_and_key_path() -> None:
    for case, line in _all_expected():
        match = MESSAGE_RE.match(line)
        assert match, f"{case}: unparsable message {line!r}"
        if match["line"] is None:
            assert any(marker in line for marker in FILE_LEVEL), f"{case}: no line number in {line!r}"
        elif "YAML" not in line and "duplicate key" not in line and "expected a mapping of variables" not in line:
            assert match["path"], f"{case}: no key path in {line!r}"


# messages about a file as a whole: it does not parse, or is in the wrong place, or lacks its variable
WHOLE_FILE = ("YAML syntax error", "duplicate key ", "expected a mapping of variables", *FILE_LEVEL)
INVENTORY_FILE_RE = re.compile(r"^(hosts\.ya?ml|(group_vars|host_vars)/[\w.-]+(/[\w.-]+)*\.ya?ml)$")


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_case_names_its_file_and_key_path(case: Path) -> None:
    """Every expected line starts with the inventory file that holds the mistake and, unless the file
    as a whole is the problem, names the line and the key path in it: a case whose messages point
    nowhere (or at the inventory directory) fails here, whatever the validator says."""
    expect = list(_load_case(case).get("expect") or [])
    assert expect, f"{case.name}: no expected lines"
    for line in expect:
        match = MESSAGE_RE.match(line)
        assert match, f"{case.name}: unparsable message {line!r}"
        assert INVENTORY_FILE_RE.match(match["file"]), f"{case.name}: {match['file']!r} is not an inventory file"
        if any(marker in match["msg"] for marker in WHOLE_FILE):
            continue
        assert match["line"], f"{case.name}: no line number in {line!r}"
        assert match["path"], f"{case.name}: no key path in {line!r}"


def test_paths_show_inventory_keys_not_schema_internals() -> None:
    """Union members appear in pydantic's locs (a check's 'http' tag, 'CpuLayout', "literal[...]")."""
    internals = re.compile(r"literal\[|function-|[A-Z][a-z]+[A-Z]|\.(http|tcp|dns|process|exec)(\.|:)")
    for case, line in _all_expected():
        match = MESSAGE_RE.match(line)
        assert match and not internals.search(match["path"] or ""), f"{case}: {line!r}"
