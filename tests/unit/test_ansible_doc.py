"""Every custom module renders in ansible-doc, and documents exactly the options it accepts.

A module whose DOCUMENTATION does not parse, or parses into the wrong shape (a description line
with `: ` in it becomes a mapping), makes `ansible-doc` fail and ansible-lint skip its checks; an
option documented but not accepted (or the other way round) misleads whoever writes the task.
The options a module accepts come from its source, read with `ast` rather than imported: the
modules import module_utils that only Ansible's loader can resolve. A module file that only
documents an action plugin (no AnsibleModule of its own) takes its options from the action's
`validate_argument_spec` call.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / "plugins" / "modules"
ACTIONS = ROOT / "plugins" / "action"
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"
NAMES = sorted(p.stem for p in MODULES.glob("*.py") if p.stem != "__init__")


def ansible_doc(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    env.pop("ANSIBLE_LIBRARY", None)
    return subprocess.run(
        [str(ANSIBLE_DOC), "-M", str(MODULES), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


# --- the options a module accepts, from its source ------------------------------------------------


class _Opaque:
    """A value the spec reader cannot evaluate (a call, a comprehension): only its presence counts."""


def _value(node: ast.AST, names: dict[str, ast.AST]) -> Any:
    """Evaluate the literal parts of an argument_spec: dicts, dict(...), lists, constants, names."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict):
        return {
            _value(k, names): _value(v, names) for k, v in zip(node.keys, node.values, strict=True) if k is not None
        }
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        return {kw.arg: _value(kw.value, names) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_value(e, names) for e in node.elts]
    if isinstance(node, ast.Name) and node.id in names:
        return _value(names[node.id], names)
    return _Opaque()


def _module_names(tree: ast.Module) -> dict[str, ast.AST]:
    names: dict[str, ast.AST] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            names[stmt.targets[0].id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            names[stmt.target.id] = stmt.value
    return names


def _spec_in(path: Path, callee: str) -> dict[str, Any] | None:
    """The argument_spec= given to `callee` (AnsibleModule, validate_argument_spec) in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = _module_names(tree)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if called != callee:
            continue
        for kw in node.keywords:
            if kw.arg == "argument_spec":
                spec = _value(kw.value, names)
                assert isinstance(spec, dict), f"{path}: argument_spec of {callee} is not a literal mapping"
                return spec
    return None


def argument_spec(name: str) -> dict[str, Any]:
    spec = _spec_in(MODULES / f"{name}.py", "AnsibleModule")
    if spec is None and (ACTIONS / f"{name}.py").is_file():
        spec = _spec_in(ACTIONS / f"{name}.py", "validate_argument_spec")
    assert spec is not None, f"{name}: no AnsibleModule(argument_spec=...) and no action plugin spec found"
    return spec


def option_tree(options: dict[str, Any] | None) -> dict[str, Any]:
    """Option names, nested by suboptions (documentation) or options (argument_spec)."""
    out: dict[str, Any] = {}
    for key, body in (options or {}).items():
        sub = body.get("suboptions", body.get("options")) if isinstance(body, dict) else None
        out[key] = option_tree(sub) if isinstance(sub, dict) else {}
    return out


def spec_tree(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, body in spec.items():
        sub = body.get("options") if isinstance(body, dict) else None
        out[key] = spec_tree(sub) if isinstance(sub, dict) else {}
    return out


def comparable(documented: dict[str, Any], accepted: dict[str, Any | None]) -> dict[str, Any]:
    """The documented tree, without the suboptions of a dict the spec leaves unchecked.

    A module may take a list of dicts and check their keys itself (edgepop_files does); its
    documentation still describes those keys, and that is not a mismatch."""
    return {
        key: (comparable(sub, accepted[key]) if accepted.get(key) else {}) if key in accepted else sub
        for key, sub in documented.items()
    }


# --- the tests ------------------------------------------------------------------------------------


def test_modules_are_found() -> None:
    assert len(NAMES) >= 9 and "irq_affinity" in NAMES and "arista_arp_facts" in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_module_renders_as_text(name: str) -> None:
    done = ansible_doc(name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "[WARNING]" not in done.stdout and "[DEPRECATION" not in done.stdout
    assert f"> MODULE {name} (" in done.stdout
    for option in argument_spec(name):
        assert f"{option}" in done.stdout, f"{name}: option {option} missing from the text"


@pytest.mark.parametrize("name", NAMES)
def test_module_documents_exactly_its_options(name: str) -> None:
    done = ansible_doc("--json", name)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    entry = json.loads(done.stdout)[name]
    doc = entry["doc"]
    assert doc["module"] == name

    def strings(value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    assert strings(doc["description"]), f"{name}: description must be a string or a list of strings"
    assert strings(doc["short_description"])
    assert comparable(option_tree(doc.get("options")), spec_tree(argument_spec(name))) == spec_tree(argument_spec(name))
    for key, body in (doc.get("options") or {}).items():
        assert strings(body.get("description")), f"{name}: option {key}: description must be text"

    attributes = doc.get("attributes", {})
    for attr in ("check_mode", "diff_mode"):
        assert attributes.get(attr, {}).get("support") in ("full", "partial", "none"), f"{name}: {attr}"
    assert isinstance(entry["examples"], str) and f"{name}:" in entry["examples"]
    assert entry["return"], f"{name}: RETURN is empty"


def test_spec_reader_sees_nested_options() -> None:
    """The comparison above is only as good as this reader: it must see suboptions by name."""
    assert spec_tree(argument_spec("irq_affinity"))["groups"] == {"name": {}, "socket": {}, "nics": {}}
    assert "inventory" in argument_spec("edgepop_validate")


def test_every_module_is_listed() -> None:
    done = ansible_doc("-t", "module", "--list", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    listed = {name.removeprefix("ansible.legacy.") for name in json.loads(done.stdout)}
    assert set(NAMES) <= listed, f"not listed: {sorted(set(NAMES) - listed)}"
    text = ansible_doc("-t", "module", "--list")
    assert text.returncode == 0 and text.stderr == ""
    shown = {line.split()[0].removeprefix("ansible.legacy.") for line in text.stdout.splitlines() if line.strip()}
    assert set(NAMES) <= shown, f"not listed: {sorted(set(NAMES) - shown)}"
