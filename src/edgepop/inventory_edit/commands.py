"""The inventory edits: add-server, adopt, set-weight, remove-server.

Each command reads the inventory once (the fast loader says which file holds which variable),
edits round-trip documents in a ChangeSet and returns it with a one-line summary; it never writes.
Validating the result and writing it are the caller's (see cli.py), so every edit goes through
the same check, dry-run and diff path.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from edgepop.inventory_edit.changeset import ChangeSet, EditError, read_source
from edgepop.inventory_edit.clone import ServerSpec, interface_addresses, personalise, spec_macs
from edgepop.inventory_edit.clone import normalise_mac as normalise_mac  # part of this module's interface
from edgepop.inventory_edit.roundtrip import RoundTripError, YamlDoc, map_like, scalar_like
from edgepop.model.loader import YAML_SUFFIXES, RawInventory, load_inventory
from edgepop.model.schema import KIND_GROUPS, NAME_RE, natural_key

SERVERS = KIND_GROUPS["server"]
SWITCHES = KIND_GROUPS["switch"]
SPARE = "spare"  # the description switch files give a free port (bench/popgen.py writes it)


@dataclass
class Plan:
    """An edit ready to be checked and written."""

    changes: ChangeSet
    summary: str
    notes: list[str] = field(default_factory=list)


# --- reading the inventory ---------------------------------------------------------------------------


def _inventory(root: Path) -> RawInventory:
    if not root.is_dir():
        raise EditError(f"{root}: no such inventory directory")
    inv = load_inventory(root.resolve())
    broken = [e for e in inv.errors if inv.hosts_file is None or e.file == inv.hosts_file]
    if inv.hosts_file is None or broken:
        where = inv.hosts_file or root / "hosts.yml"
        detail = "; ".join(e.message for e in broken) or "missing"
        raise EditError(f"{where}: {detail}", "data")
    return inv


def _groups_of(inv: RawInventory, host: str) -> list[str]:
    found: list[str] = []
    for group in inv.hosts[host].groups:
        found += [g for g in inv.ancestry(group) if g not in found]
    return found


def _hosts_in(inv: RawInventory, group: str) -> list[str]:
    return sorted((h for h in inv.hosts if group in _groups_of(inv, h)), key=natural_key)


def _require_server(inv: RawInventory, host: str) -> None:
    servers = _hosts_in(inv, SERVERS)
    if host not in inv.hosts:
        raise EditError(f"unknown host {host!r} (servers: {', '.join(servers) or 'none'})")
    if host not in servers:
        groups = ", ".join(g for g in inv.hosts[host].groups) or "no group"
        raise EditError(f"{host!r} is not a server (it is in {groups}); these commands edit servers only")


def _host_var_doc(changes: ChangeSet, inv: RawInventory, host: str, var: str) -> CommentedMap:
    """The mapping that holds `var` for `host`: a host_vars file, or the host's entry in hosts.yml."""
    sourced = inv.effective_vars(host).get(var)
    if sourced is None:
        unread = [
            f"{e.file}: {f'line {e.line}: ' if e.line else ''}{e.message}"
            for e in inv.errors
            if e.file.name in (host, *(f"{host}{suffix}" for suffix in YAML_SUFFIXES)) or e.file.parent.name == host
        ]
        detail = f" (a file that would set it cannot be read: {'; '.join(unread)})" if unread else ""
        raise EditError(f"{host} has no {var!r} variable{detail}", "data")
    source = Path(os.path.abspath(sourced.source))  # a symbolic link stays one: ChangeSet refuses it
    if source.parent.name == "host_vars" or source.parent.parent.name == "host_vars":
        data = changes.doc(source).data
        if isinstance(data, CommentedMap) and isinstance(data.get(var), CommentedMap):
            return data
    elif inv.hosts_file is not None and source == Path(os.path.abspath(inv.hosts_file)):
        for entry in _host_entries(changes.doc(source).data, host):
            if isinstance(entry, CommentedMap) and isinstance(entry.get(var), CommentedMap):
                return entry
    raise EditError(
        f"{host} takes {var!r} from {changes.rel(source)}, which this command does not edit (it is shared "
        "or not a mapping); change it by hand",
        "data",
    )


# --- hosts.yml --------------------------------------------------------------------------------------


def _group_bodies(data: Any) -> Iterator[tuple[str, CommentedMap]]:
    """Every group mapping in hosts.yml, `all` first, children depth first."""

    def walk(name: str, body: Any) -> Iterator[tuple[str, CommentedMap]]:
        if not isinstance(body, CommentedMap):
            return
        yield name, body
        children = body.get("children")
        if isinstance(children, CommentedMap):
            for child, child_body in children.items():
                yield from walk(str(child), child_body)

    if isinstance(data, CommentedMap):
        yield from walk("all", data.get("all"))


def _host_entries(data: Any, host: str) -> list[Any]:
    return [
        body["hosts"][host]
        for _, body in _group_bodies(data)
        if isinstance(body.get("hosts"), CommentedMap) and host in body["hosts"]
    ]


def _sorted_position(names: list[str], new: str) -> int:
    """Where `new` goes: in natural order if the list is in natural order, else at the end."""
    keys = [natural_key(n) for n in names]
    if keys != sorted(keys):
        return len(names)
    return next((i for i, key in enumerate(keys) if key > natural_key(new)), len(names))


def _add_to_servers(hosts_doc: YamlDoc, host: str, like: str | None, ansible_host: str | None) -> None:
    group = next((body for name, body in _group_bodies(hosts_doc.data) if name == SERVERS), None)
    if group is None:
        raise EditError(f"{hosts_doc.label} has no {SERVERS!r} group to add {host} to", "data")
    members = group.get("hosts")
    if not isinstance(members, CommentedMap):
        members = CommentedMap()
        group["hosts"] = members
    names = [str(k) for k in members]
    sibling = members.get(like) if like in members else (members[names[-1]] if names else None)
    entry: CommentedMap | None = None
    if ansible_host is not None:
        entry = map_like(sibling)
        old = sibling.get("ansible_host") if isinstance(sibling, CommentedMap) else None
        entry["ansible_host"] = scalar_like(old, ansible_host)
    members.insert(_sorted_position(names, host), host, entry)


# --- switches -----------------------------------------------------------------------------------------


def _port_maps(switch_var: Any) -> CommentedSeq | None:
    ports = switch_var.get("ports") if isinstance(switch_var, CommentedMap) else None
    return ports if isinstance(ports, CommentedSeq) else None


def _cable(changes: ChangeSet, inv: RawInventory, host: str, server: CommentedMap, declare: bool) -> list[str]:
    """Record the new server on its switch ports (`peer`), where the switch documents its peers."""
    problems: list[str] = []
    switches = set(_hosts_in(inv, SWITCHES))
    nics = server.get("nics")
    for nic in nics if isinstance(nics, CommentedSeq) else []:
        if not isinstance(nic, CommentedMap) or nic.get("switch") is None or nic.get("switch_port") is None:
            continue
        switch, port = str(nic["switch"]), str(nic["switch_port"])
        if switch not in switches:
            continue  # the validator names the unknown switch
        ports = _port_maps(_host_var_doc(changes, inv, switch, "switch")["switch"])
        if ports is None:
            continue
        entries = [p for p in ports if isinstance(p, CommentedMap)]
        with_peer = [p for p in entries if p.get("peer") is not None]
        me = f"{host}:{nic.get('name')}"
        entry = next((p for p in entries if str(p.get("name")) == port), None)
        if entry is None:
            if not declare:
                problems.append(
                    f"switch {switch!r} has no port {port!r} (for {me}); check the name, or pass "
                    "--new-switch-ports to declare it"
                )
                continue
            sample = with_peer[-1] if with_peer else (entries[-1] if entries else None)
            entry = map_like(sample)
            entry["name"] = scalar_like(sample.get("name") if sample else None, port)
            if nic.get("speed") is not None or (sample is not None and "speed" in sample):
                entry["speed"] = nic.get("speed", 1000)
            ports.insert(_sorted_position([str(p.get("name")) for p in entries], port), entry)
        if str(entry.get("description", "")).lower() == SPARE:
            del entry["description"]
        if with_peer and entry.get("peer") is None:
            entry["peer"] = scalar_like(with_peer[0]["peer"], me)
    return problems


def _uncable(changes: ChangeSet, inv: RawInventory, host: str) -> int:
    """Clear every switch port `peer` that names the host; return how many were cleared."""
    cleared = 0
    for switch in _hosts_in(inv, SWITCHES):
        sourced = inv.effective_vars(switch).get("switch")
        raw_ports = sourced.value.get("ports") if sourced and isinstance(sourced.value, dict) else None
        if not isinstance(raw_ports, list) or not any(
            isinstance(p, dict) and str(p.get("peer", "")).startswith(f"{host}:") for p in raw_ports
        ):
            continue  # only files that change are loaded for editing
        ports: list[Any] = _port_maps(_host_var_doc(changes, inv, switch, "switch")["switch"]) or []
        entries = [p for p in ports if isinstance(p, CommentedMap)]
        spare = next((p["description"] for p in entries if str(p.get("description", "")).lower() == SPARE), None)
        for entry in entries:
            if str(entry.get("peer", "")).startswith(f"{host}:"):
                del entry["peer"]
                if spare is not None and "description" not in entry:
                    entry["description"] = spare  # the switch marks free ports: this one is free again
                cleared += 1
    return cleared


def _known_macs(inv: RawInventory) -> dict[str, str]:
    known: dict[str, str] = {}
    for host in _hosts_in(inv, SERVERS):
        sourced = inv.effective_vars(host).get("server")
        nics = sourced.value.get("nics") if sourced and isinstance(sourced.value, dict) else None
        for nic in nics if isinstance(nics, list) else []:
            if isinstance(nic, dict) and nic.get("mac") is not None:
                known.setdefault(str(nic["mac"]).lower(), f"{host}:{nic.get('name')}")
    return known


# --- templates ----------------------------------------------------------------------------------------


@dataclass
class _Template:
    label: str  # for messages: the server name or the file
    doc: YamlDoc  # the new host_vars document, still holding the template's values
    host: str | None  # the template server, when cloning one
    inline_ansible_host: str | None  # the template's ansible_host in hosts.yml


def _from_host(inv: RawInventory, like: str, host: str) -> _Template:
    _require_server(inv, like)
    sourced = inv.effective_vars(like)["server"]
    if "host_vars" not in (sourced.source.parent.name, sourced.source.parent.parent.name):
        raise EditError(f"{like} keeps its server variable in {sourced.source.name}; write {host} with --from")
    try:
        doc = YamlDoc.parse(read_source(sourced.source), f"host_vars/{host}.yml")
    except RoundTripError as exc:
        raise EditError(str(exc), "data") from None
    for key in [k for k in doc.data if str(k).startswith("vault_")]:
        del doc.data[key]  # per-host secrets are not shared with the new server
    inline = inv.hosts[like].inline_vars.get("ansible_host")
    return _Template(like, doc, like, str(inline.value) if inline else None)


def _from_file(path: Path, host: str) -> _Template:
    try:
        source = YamlDoc.parse(read_source(path), str(path))
    except RoundTripError as exc:
        raise EditError(str(exc), "data") from None
    data = source.data
    if isinstance(data, CommentedMap) and isinstance(data.get("server"), CommentedMap):
        doc = source.clone(f"host_vars/{host}.yml")
    elif isinstance(data, CommentedMap) and "nics" in data:
        wrapped = CommentedMap()
        wrapped["server"] = data
        layout = dataclasses.replace(source.layout, explicit_start=True)
        doc = YamlDoc(f"host_vars/{host}.yml", wrapped, layout, form=dataclasses.replace(source.form, bom=False))
    else:
        raise EditError(f"{path}: expected a host_vars file ('server: ...') or a server body ('nics: ...')")
    return _Template(str(path), doc, None, None)


def _nic_count(inv: RawInventory, host: str) -> int | None:
    sourced = inv.effective_vars(host).get("server")
    nics = sourced.value.get("nics") if sourced and isinstance(sourced.value, dict) else None
    return len(nics) if isinstance(nics, list) else None


def _default_template(inv: RawInventory, macs: int) -> str:
    """For adopt without --like: the last server (natural order) with as many NICs as MACs given."""
    fits = [host for host in _hosts_in(inv, SERVERS) if _nic_count(inv, host) == macs]
    if not fits:
        raise EditError(f"no server has {macs} NIC(s) to take the shape of; choose one with --like or --from")
    return fits[-1]


def _template_ansible_host(template: _Template) -> str | None:
    if template.inline_ansible_host is not None:
        return template.inline_ansible_host
    value = template.doc.data.get("ansible_host")
    return None if value is None else str(value)


def _reached_on(before: dict[str, str], address: str) -> str | None:
    """The template's interface whose address Ansible uses to reach it, if any."""
    return next((iface for iface, ip in before.items() if ip == address), None)


# --- the commands -------------------------------------------------------------------------------------


def add_server(
    root: Path,
    host: str,
    spec: ServerSpec,
    *,
    like: str | None = None,
    from_file: Path | None = None,
    ansible_host: str | None = None,
    new_switch_ports: bool = False,
) -> Plan:
    """A new server shaped like `like` (an existing server) or written in `from_file`."""
    return _add(_inventory(root), root, host, spec, like, from_file, ansible_host, new_switch_ports, "add")


def _add(
    inv: RawInventory,
    root: Path,
    host: str,
    spec: ServerSpec,
    like: str | None,
    from_file: Path | None,
    ansible_host: str | None,
    new_switch_ports: bool,
    action: str,
) -> Plan:
    changes = ChangeSet(root)
    if not re.match(NAME_RE, host):
        raise EditError(f"hostname {host!r} must be lower-case letters, digits and '-'")
    if host in inv.hosts:
        raise EditError(f"{host!r} is already in the inventory (groups: {', '.join(inv.hosts[host].groups)})")
    if (like is None) == (from_file is None):
        raise EditError("give exactly one template: --like EXISTING or --from FILE")
    template = _from_host(inv, like, host) if like is not None else _from_file(from_file or Path(), host)
    server = template.doc.data["server"]
    before = interface_addresses(server)
    problems = personalise(server, spec, template.label, complete=template.host is not None)

    notes: list[str] = []
    template_host = _template_ansible_host(template)
    if ansible_host is None and template_host is not None:
        iface = _reached_on(before, template_host)
        new = interface_addresses(server).get(iface or "")
        if iface is not None and new is not None and new != template_host:
            ansible_host = new
            notes.append(f"ansible_host {new}: the new address of {iface}, as {template.label} is reached on {iface}")
        elif iface is None and template.host is not None:
            problems.append(
                f"missing --ansible-host ADDRESS ({template.label} is reached on {template_host}, "
                "which is none of its interface addresses)"
            )
    inline = ansible_host
    if ansible_host is not None and "ansible_host" in template.doc.data:
        template.doc.data["ansible_host"] = scalar_like(template.doc.data["ansible_host"], ansible_host)
        inline = None
    if not problems:
        problems += _cable(changes, inv, host, server, new_switch_ports)
    if problems:
        raise EditError(f"cannot {action} {host} as a copy of {template.label}:\n  " + "\n  ".join(problems))

    known = _known_macs(inv)
    nics = server.get("nics")
    taken = [
        f"MAC {nic['mac']} ({host}:{nic.get('name')}) is already {known[str(nic['mac']).lower()]}"
        for nic in (nics if isinstance(nics, CommentedSeq) else [])
        if isinstance(nic, CommentedMap) and str(nic.get("mac", "")).lower() in known
    ]
    if taken:
        raise EditError("\n".join(taken) + "\n(a server is in the inventory once; check the MACs)", "data")

    assert inv.hosts_file is not None
    _add_to_servers(changes.doc(inv.hosts_file), host, template.host, inline)
    changes.create(changes.root / "host_vars" / f"{host}.yml", template.doc)
    done = {"add": "added to", "adopt": "adopted into"}.get(action, action)
    return Plan(changes, f"{host}: {done} {SERVERS}, shaped like {template.label}", notes)


def adopt(
    root: Path,
    host: str,
    spec: ServerSpec,
    *,
    like: str | None = None,
    from_file: Path | None = None,
    ansible_host: str | None = None,
    new_switch_ports: bool = False,
) -> Plan:
    """A server that called home with its MACs; known MACs are refused before anything else."""
    inv = _inventory(root)
    known = _known_macs(inv)
    problems, macs, in_order = spec_macs(spec)
    if problems:
        raise EditError(f"cannot adopt {host}:\n  " + "\n  ".join(problems))
    given = [*macs.items(), *(("?", m) for m in in_order)]
    if not given:
        raise EditError("adopt needs the MACs the server reported (--mac)")
    taken = [f"MAC {mac} is already {known[mac]}" for _, mac in given if mac in known]
    if taken:
        raise EditError(
            "\n".join(taken) + f"\nnot adopting {host}: these NICs belong to servers in the inventory", "data"
        )
    if like is None and from_file is None:
        like = _default_template(inv, len(given))
    return _add(inv, root, host, spec, like, from_file, ansible_host, new_switch_ports, "adopt")


def set_weight(root: Path, host: str, weight: int) -> Plan:
    """Change `server.anycast_weight` and nothing else."""
    inv = _inventory(root)
    _require_server(inv, host)
    changes = ChangeSet(root)
    server = _host_var_doc(changes, inv, host, "server")["server"]
    old = server.get("anycast_weight")
    server["anycast_weight"] = scalar_like(old, weight)
    shown = "default" if old is None else str(old)
    return Plan(changes, f"{host}: anycast_weight {shown} -> {weight}")


def remove_server(root: Path, host: str) -> Plan:
    """Take a server out: hosts.yml, its host_vars, and the switch ports that name it."""
    inv = _inventory(root)
    _require_server(inv, host)
    changes = ChangeSet(root)
    assert inv.hosts_file is not None
    hosts_doc = changes.doc(inv.hosts_file)
    for _, body in _group_bodies(hosts_doc.data):
        members = body.get("hosts")
        if isinstance(members, CommentedMap) and host in members:
            del members[host]
    base = changes.root / "host_vars"
    files = [base / f"{host}{suffix}" for suffix in ("", *YAML_SUFFIXES)]
    files = [f for f in files if f.is_file()]
    if (base / host).is_dir():
        files += sorted(p for p in (base / host).rglob("*") if p.is_file())
    for path in files:
        changes.delete(path)
    cleared = _uncable(changes, inv, host)
    ports = f", {cleared} switch port peer(s) cleared" if cleared else ""
    return Plan(changes, f"{host}: removed from {SERVERS}{ports}")
