"""Read an Ansible inventory directory into raw variables, remembering which file said what.

The inventory is plain Ansible (hosts.yml, group_vars/, host_vars/) so `ansible-inventory` and the
playbooks read it directly. This loader reads the same files without Ansible, fast (libyaml), and
keeps the source file of every top-level variable so that every error can name its file.
Variable precedence follows Ansible's defaults: host_vars over inline host vars over group vars of
the most specific group over `all`; a variable is replaced whole, never merged.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edgepop.model.secrets import VaultText

try:
    _BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _BaseLoader = yaml.SafeLoader

YAML_SUFFIXES = (".yml", ".yaml")
VAULT_HEADER = "$ANSIBLE_VAULT;"


class YamlProblem(Exception):
    """A file that is not valid YAML, or has a duplicate key; carries the line for the message."""

    def __init__(self, message: str, line: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """Safe loader that knows Ansible's tags and refuses duplicate keys (YAML keeps the last one)."""


def _construct_vault(loader: yaml.SafeLoader, node: yaml.Node) -> VaultText:
    return VaultText(loader.construct_scalar(node))  # type: ignore[arg-type]


def _construct_unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise YamlProblem(
                f"duplicate key {key!r} (first at line {seen[key]}); YAML would silently keep only the last",
                key_node.start_mark.line + 1,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_Loader.add_constructor("!vault", _construct_vault)
_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml_text(text: str) -> Any:
    """Parse one YAML document; raise YamlProblem with a line number on any error."""
    try:
        return yaml.load(text, Loader=_Loader)
    except YamlProblem:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = f", column {mark.column + 1}" if mark is not None else ""
        what = exc.problem or exc.context or "syntax error"
        start = exc.context_mark
        if exc.problem and exc.context and start is not None and start.line + 1 != line:
            # the problem is often found far from its cause (an unclosed bracket): name both ends
            what += f" ({exc.context} that starts at line {start.line + 1})"
        raise YamlProblem(f"YAML syntax error{col}: {what}", line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {exc}", None) from None


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


def _var_files(base: Path, name: str) -> Iterator[Path]:
    """group_vars/<name>.yml, or every YAML file under group_vars/<name>/, in sorted order."""
    for suffix in ("", *YAML_SUFFIXES):
        candidate = base / f"{name}{suffix}"
        if candidate.is_file():
            yield candidate
    directory = base / name
    if directory.is_dir():
        yield from sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)


def _read_vars_file(inv: RawInventory, path: Path) -> dict[str, Any] | None:
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith(VAULT_HEADER):
        inv.encrypted_files.append(path)
        return None
    try:
        data = load_yaml_text(text)
    except YamlProblem as exc:
        inv.errors.append(LoadError(path, exc.line, "", exc.message))
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
    for path in _var_files(base, name):
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
    hosts_file = next((root / f"hosts{s}" for s in YAML_SUFFIXES if (root / f"hosts{s}").is_file()), None)
    data: Any = None
    if hosts_file is None:
        inv.errors.append(LoadError(root / "hosts.yml", None, "", "missing hosts.yml (the Ansible host list)"))
    else:
        inv.hosts_file = hosts_file
        try:
            data = load_yaml_text(hosts_file.read_text(encoding="utf-8"))
        except YamlProblem as exc:
            inv.errors.append(LoadError(hosts_file, exc.line, "", exc.message))
        else:
            if not isinstance(data, dict) or set(data) != {"all"}:
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
