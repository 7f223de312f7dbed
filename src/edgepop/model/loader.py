"""Read an Ansible inventory directory into raw variables, remembering which file said what.

The inventory is plain Ansible (hosts.yml, group_vars/, host_vars/) so `ansible-inventory` and the
playbooks read it directly. This loader reads the same files without Ansible, fast (libyaml), and
keeps the source file of every top-level variable so that every error can name its file.
Variable precedence follows Ansible's defaults: host_vars over inline host vars over group vars of
the most specific group over `all`; a variable is replaced whole, never merged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgepop.model import locate
from edgepop.model.safe_yaml import BoundedLoader, YamlProblem, load_text, load_text_and_node, read_text
from edgepop.model.secrets import VaultText

__all__ = [
    "VAULT_HEADER",
    "YAML_SUFFIXES",
    "RawInventory",
    "Sourced",
    "YamlProblem",
    "load_inventory",
    "load_yaml_text",
]

YAML_SUFFIXES = (".yml", ".yaml")
VAULT_HEADER = "$ANSIBLE_VAULT;"


class _Loader(BoundedLoader):
    """The bounded safe loader (scalar, unique keys; no bombs) plus Ansible's two tags."""


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultText:
    return VaultText(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document; raise YamlProblem with a line number on any error."""
    return load_text(text, _Loader)


@dataclass
class Sourced:
    """A top-level variable and the file it came from. `keys` is where the mapping that holds it
    sits inside that file: empty for a vars file, e.g. all.children.servers.vars for hosts.yml."""

    value: Any
    source: Path
    keys: tuple[str, ...] = ()


@dataclass
class LoadError:
    file: Path
    line: int | None
    path: str
    message: str


@dataclass
class RawHost:
    name: str
    groups: list[str] = field(default_factory=list)
    entries: list[tuple[str, ...]] = field(default_factory=list)  # key paths of its listings in hosts.yml
    inline_vars: dict[str, Sourced] = field(default_factory=dict)
    host_vars: dict[str, Sourced] = field(default_factory=dict)


@dataclass
class RawInventory:
    """Everything the files say, before any schema is applied."""

    root: Path
    hosts: dict[str, RawHost] = field(default_factory=dict)
    group_parents: dict[str, list[str]] = field(default_factory=dict)
    group_vars: dict[str, dict[str, Sourced]] = field(default_factory=dict)
    encrypted_files: list[Path] = field(default_factory=list)
    unreadable_files: list[Path] = field(default_factory=list)  # vars files that are not YAML mappings
    errors: list[LoadError] = field(default_factory=list)
    hosts_file: Path | None = None
    hosts_read: bool = False  # False: hosts.yml is missing or unreadable, so hosts and groups are unknown

    def ancestry(self, group: str) -> list[str]:
        """The group and all its parents, most specific first, `all` last."""
        order: list[str] = []
        frontier = [group]
        while frontier:
            current = frontier.pop(0)
            if current in order:
                continue
            order.append(current)
            frontier.extend(self.group_parents.get(current, []))
        if "all" in order:
            order.remove("all")
        order.append("all")
        return order

    def depth(self, group: str, _seen: tuple[str, ...] = ()) -> int:
        """Distance from `all` along the longest parent chain, as Ansible counts it."""
        if group == "all" or group in _seen:
            return 0
        parents = self.group_parents.get(group) or ["all"]
        return 1 + max(self.depth(p, (*_seen, group)) for p in parents)

    def effective_vars(self, host: str) -> dict[str, Sourced]:
        """Variables as Ansible would resolve them for one host (replace, not merge)."""
        raw = self.hosts[host]
        merged: dict[str, Sourced] = {}
        groups: set[str] = set()
        for group in raw.groups:
            groups.update(self.ancestry(group))
        # Ansible's order: shallow groups first, so deeper (more specific) groups overwrite them;
        # groups of equal depth in name order, the last name winning
        for group in sorted(groups, key=lambda g: (self.depth(g), g)):
            merged.update(self.group_vars.get(group, {}))
        merged.update(raw.inline_vars)
        merged.update(raw.host_vars)
        return merged


def _present(path: Path) -> bool:
    """The name exists, whatever it is: a FIFO, a dangling link or a link loop is read (and refused
    with a reason) rather than skipped as if it were not there."""
    return os.path.lexists(path) and not path.is_dir()


def _yaml_files_under(inv: RawInventory, directory: Path) -> list[Path]:
    """Every YAML-named entry below `directory`, following symlinked directories once each: a link
    back to an ancestor is reported, not walked forever."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            info = current.stat()
            entries = list(os.scandir(current))
        except OSError as exc:
            inv.errors.append(LoadError(current, None, "", f"cannot read directory: {exc.strerror or exc}"))
            continue
        if (info.st_dev, info.st_ino) in seen:
            inv.errors.append(
                LoadError(current, None, "", "directory loop: a symlink leads back to a directory already read")
            )
            continue
        seen.add((info.st_dev, info.st_ino))
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                pending.append(path)
            elif path.suffix in YAML_SUFFIXES:
                found.append(path)
    return sorted(found)


def _var_files(inv: RawInventory, base: Path, name: str) -> list[Path]:
    """group_vars/<name>.yml, or every YAML file under group_vars/<name>/, in sorted order."""
    out = [base / f"{name}{suffix}" for suffix in ("", *YAML_SUFFIXES) if _present(base / f"{name}{suffix}")]
    directory = base / name
    if directory.is_dir():
        out += _yaml_files_under(inv, directory)
    return out


def _read_yaml(inv: RawInventory, path: Path, vars_file: bool = True) -> tuple[bool, Any]:
    """(True, data) for a file read and parsed (once: its node tree is kept for error lines), or
    (False, None) with the reason in inv.errors. A whole-file vault (vars files only: hosts.yml
    cannot be one) is (False, None) too, listed in inv.encrypted_files."""
    try:
        text = read_text(path)
        if vars_file and text.lstrip().startswith(VAULT_HEADER):
            inv.encrypted_files.append(path)
            return False, None
        data, node = load_text_and_node(text, _Loader)
    except YamlProblem as exc:
        inv.errors.append(LoadError(path, exc.line, "", exc.message))
        return False, None
    locate.remember(path, node)
    return True, data


def _read_vars_file(inv: RawInventory, path: Path) -> dict[str, Any] | None:
    ok, data = _read_yaml(inv, path)
    if not ok:
        if path not in inv.encrypted_files:
            inv.unreadable_files.append(path)
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        inv.errors.append(LoadError(path, 1, "", f"expected a mapping of variables, got {type(data).__name__}"))
        inv.unreadable_files.append(path)
        return None
    return data


def _collect_vars(inv: RawInventory, base: Path, name: str) -> dict[str, Sourced]:
    out: dict[str, Sourced] = {}
    for path in _var_files(inv, base, name):
        data = _read_vars_file(inv, path)
        if not data:
            continue
        for key, value in data.items():
            if key in out:
                first = out[key].source.relative_to(inv.root)
                inv.errors.append(LoadError(path, None, str(key), f"variable {key!r} is already defined in {first}"))
                continue
            out[str(key)] = Sourced(value, path)
    return out


def _walk_group(inv: RawInventory, path: Path, name: str, body: Any, parent: str | None, trail: str) -> None:
    if parent is not None:
        parents = inv.group_parents.setdefault(name, [])
        if parent not in parents:
            parents.append(parent)
    if body is None:
        return
    if not isinstance(body, dict):
        inv.errors.append(LoadError(path, None, trail, "expected a group mapping (hosts, children, vars)"))
        return
    for key in body:
        if key not in ("hosts", "children", "vars"):
            inv.errors.append(
                LoadError(path, None, f"{trail}.{key}", "unknown group key (expected hosts, children or vars)")
            )
    hosts = body.get("hosts") or {}
    if not isinstance(hosts, dict):
        inv.errors.append(LoadError(path, None, f"{trail}.hosts", "expected a mapping of hostname -> vars"))
        hosts = {}
    keys = tuple(trail.split("."))
    for host, hvars in hosts.items():
        host = str(host)
        raw = inv.hosts.setdefault(host, RawHost(host))
        raw.entries.append((*keys, "hosts", host))
        if name not in raw.groups:
            raw.groups.append(name)
        if hvars is None:
            continue
        if not isinstance(hvars, dict):
            inv.errors.append(LoadError(path, None, f"{trail}.hosts.{host}", "expected a mapping of variables"))
            continue
        for key, value in hvars.items():
            raw.inline_vars[str(key)] = Sourced(value, path, (*keys, "hosts", host))
    gvars = body.get("vars")
    if gvars:
        if isinstance(gvars, dict):
            target = inv.group_vars.setdefault(name, {})
            for key, value in gvars.items():
                target[str(key)] = Sourced(value, path, (*keys, "vars"))
        else:
            inv.errors.append(LoadError(path, None, f"{trail}.vars", "expected a mapping of variables"))
    children = body.get("children") or {}
    if not isinstance(children, dict):
        inv.errors.append(LoadError(path, None, f"{trail}.children", "expected a mapping of groups"))
        return
    for child, child_body in children.items():
        _walk_group(inv, path, str(child), child_body, name, f"{trail}.children.{child}")


def load_inventory(root: Path) -> RawInventory:
    """Read hosts.yml, group_vars and host_vars. Never raises on bad content; errors are collected."""
    inv = RawInventory(root=root)
    if not root.is_dir():
        inv.errors.append(LoadError(root, None, "", "inventory directory does not exist"))
        return inv
    hosts_file = next((root / f"hosts{s}" for s in YAML_SUFFIXES if _present(root / f"hosts{s}")), None)
    data: Any = None
    if hosts_file is None:
        inv.errors.append(LoadError(root / "hosts.yml", None, "", "missing hosts.yml (the Ansible host list)"))
    else:
        inv.hosts_file = hosts_file
        ok, data = _read_yaml(inv, hosts_file, vars_file=False)
        if ok and (not isinstance(data, dict) or set(data) != {"all"}):
            inv.errors.append(LoadError(hosts_file, 1, "", "expected a single top-level group 'all'"))
            data = None
    gv_base = root / "group_vars"
    if hosts_file is None or data is None:
        # without the host list only the PoP-wide variables can still be read and checked
        inv.group_vars["all"] = _collect_vars(inv, gv_base, "all")
        return inv
    _walk_group(inv, hosts_file, "all", data["all"], None, "all")
    inv.hosts_read = True

    groups = {"all", *inv.group_parents}
    for group in sorted(groups):
        found = _collect_vars(inv, gv_base, group)
        if found:
            inv.group_vars.setdefault(group, {}).update(found)
    if gv_base.is_dir():
        for entry in sorted(gv_base.iterdir()):
            stem = entry.name if entry.is_dir() else entry.stem
            if stem not in groups:
                inv.errors.append(
                    LoadError(entry, None, "", f"group_vars for {stem!r}, which is not a group in hosts.yml")
                )
    hv_base = root / "host_vars"
    for host in inv.hosts:
        inv.hosts[host].host_vars = _collect_vars(inv, hv_base, host)
    if hv_base.is_dir():
        for entry in sorted(hv_base.iterdir()):
            stem = entry.name if entry.is_dir() else entry.stem
            if stem not in inv.hosts:
                inv.errors.append(
                    LoadError(entry, None, "", f"host_vars for {stem!r}, which is not a host in hosts.yml")
                )
    return inv
