"""Validate a PoP inventory: schema first, then every rule that needs the whole PoP.

All problems are reported at once, each naming the file, the line where it can be found, the key
path and what was expected. Nothing downstream (render, push) runs on an inventory with errors.
"""

from __future__ import annotations

import datetime
import difflib
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, NamedTuple, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, TypeAdapter, ValidationError

from edgepop.derive import server_queue_plan
from edgepop.irq_plan import IrqPlanError
from edgepop.model import locate
from edgepop.model.loader import VAULT_HEADER, RawInventory, Sourced, load_inventory
from edgepop.model.pop import PopModel
from edgepop.model.schema import (
    KIND_GROUPS,
    KIND_MODELS,
    NAME_RE,
    AnycastService,
    Control,
    NearestPop,
    Pdu,
    Pop,
    Provider,
    Ranges,
    Router,
    Server,
    Switch,
    is_host_name,
    natural_key,
)
from edgepop.model.secrets import VaultText, vault_reference

POP_VARS: dict[str, Any] = {"pop": Pop, "providers": list[Provider], "anycast_services": list[AnycastService]}
GROUP_OF_KIND = KIND_GROUPS
KIND_OF_GROUP = {g: k for k, g in KIND_GROUPS.items()}
ROLE_VAR_RE = re.compile(r"^[a-z][a-z0-9_]*__[a-z0-9_]+$")
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


@dataclass(frozen=True, order=True)
class Issue:
    """One validation error, sortable by file then line."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return self.render()

    def render(self, base: str = "") -> str:
        """The message with the file shown under `base` (the inventory path as the user gave it)."""
        file = f"{base.rstrip('/')}/{self.file}" if base and self.file != "." else (base or self.file)
        where = f"{file}:{self.line}" if self.line else file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


@dataclass
class Report:
    """The outcome of a validation run: the model when valid, all issues otherwise."""

    root: Path
    errors: list[Issue] = field(default_factory=list)
    model: PopModel | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self, base: str = "") -> str:
        return "\n".join(e.render(base) for e in self.errors)


class _Collector:
    """Accumulates issues; turns (file, key path) into a line number lazily."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.issues: set[Issue] = set()

    def rel(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def add(self, file: Path, keys: tuple[str | int, ...], message: str, line: int | None = None) -> None:
        if line is None and file.is_file():
            line = locate.line_of(file, keys) if keys else None
        self.issues.add(Issue(self.rel(file), line or 0, _dotted(keys), message))


def _dotted(keys: Iterable[str | int]) -> str:
    out = ""
    for key in keys:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


# --- schema errors -----------------------------------------------------------------------------


class _Where(NamedTuple):
    """Where a pydantic error points, in inventory terms."""

    display: tuple[str | int, ...]  # the key path, union branch labels dropped
    fields: set[str] | None  # fields of the model holding the last key, for 'did you mean'
    tags: list[str]  # when the path ends on a tagged union: its 'type' values
    branch: tuple[tuple[str | int, ...], bool] | None  # plain union passed: (its path, took the model branch)


def _model_fields_at(root_type: Any, loc: tuple[Any, ...]) -> _Where:
    """Walk a pydantic loc through the type tree of the model it came from."""
    display: list[str | int] = []
    current: Any = root_type
    fields: set[str] | None = None
    branch: tuple[tuple[str | int, ...], bool] | None = None
    for part in loc:
        current = _unwrap(current)
        not_none = [m for m in _union_members(current) if m is not type(None)]
        if get_origin(current) in (Union, UnionType) and len(not_none) == 1:
            # Optional[X]: pydantic puts no label for it into the loc
            current = not_none[0]
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = set(current.model_fields)
            display.append(part)
            info = current.model_fields.get(str(part))
            current = info.annotation if info else None
            continue
        origin = get_origin(current)
        if origin in (list, tuple) and isinstance(part, int):
            display.append(part)
            current = get_args(current)[0]
            fields = None
            continue
        if origin is dict:
            display.append(part)
            current = get_args(current)[1]
            fields = None
            continue
        members = [m for m in _union_members(current) if isinstance(m, type) and issubclass(m, BaseModel)]
        if members:
            # a discriminated union puts the tag into the loc; a plain union puts the class name,
            # or a label such as "literal['discover']" for a member that is not a model
            chosen = next((m for m in members if _tag_of(m) == part or m.__name__ == part), None)
            if _tag_of(members[0]) is None:
                branch = (tuple(display), chosen is not None)
            current = chosen
            continue
        display.append(part)
        current = None
        fields = None
    members = [m for m in _union_members(_unwrap(current)) if isinstance(m, type) and issubclass(m, BaseModel)]
    tags = [t for t in (_tag_of(m) for m in members) if t is not None]
    return _Where(tuple(display), fields, tags, branch)


def _unwrap(tp: Any) -> Any:
    while True:
        args = get_args(tp)
        if hasattr(tp, "__metadata__") and args:
            tp = args[0]
            continue
        return tp


def _union_members(tp: Any) -> list[Any]:
    args = get_args(tp)
    return [_unwrap(a) for a in args] if args else []


def _tag_of(model: type[BaseModel]) -> str | None:
    info = model.model_fields.get("type")
    if info is None:
        return None
    tags = get_args(info.annotation)
    return str(tags[0]) if tags else None


def _describe_input(value: Any) -> str:
    if isinstance(value, VaultText):
        return "a !vault value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"


def _friendly(err: Any, fields: set[str] | None, tags: list[str]) -> str:
    kind = err["type"]
    msg: str = err["msg"]
    loc = err["loc"]
    value = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"expected a mapping, got {_describe_input(value)}"
    if kind == "extra_forbidden":
        key = str(loc[-1]) if loc else "?"
        hint = ""
        if fields:
            close = _suggest(key, fields)
            hint = f" (did you mean {close!r}?)" if close else f" (expected one of: {', '.join(sorted(fields))})"
        return f"unknown key {key!r}{hint}"
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        pattern = err.get("ctx", {}).get("pattern", "")
        return f"expected a string matching {pattern}, got {_describe_input(err.get('input'))}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        ctx = err.get("ctx", {})
        expected = ctx.get("expected_tags") or ", ".join(repr(t) for t in tags)
        if kind == "union_tag_not_found":
            return f"missing key 'type' (one of {expected})"
        return f"'type' must be one of {expected}, got {ctx.get('tag')!r}"
    text = msg.replace("Input should be", "expected").replace("input should be", "expected")
    if "input" in err:
        text += f", got {_describe_input(value)}"
    if kind == "string_type" and isinstance(value, int | float | datetime.date):
        what = "a boolean" if isinstance(value, bool) else "a date" if isinstance(value, datetime.date) else "a number"
        text += f" (YAML reads it as {what}: quote it)"
    elif kind in ("int_type", "float_type") and isinstance(value, str) and _is_number(value):
        text += " (a quoted number is a string: remove the quotes)"
    return text


def _suggest(key: str, fields: set[str]) -> str | None:
    close = difflib.get_close_matches(key, sorted(fields), n=1)
    return close[0] if close else None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _adapter(tp: Any) -> TypeAdapter[Any]:
    if tp not in _ADAPTERS:
        _ADAPTERS[tp] = TypeAdapter(tp)
    return _ADAPTERS[tp]


def _validate_var(col: _Collector, name: str, tp: Any, sourced: Sourced) -> Any:
    """Validate one variable. Lists are validated item by item, and invalid items become None, so
    the cross-checks still run over the valid ones and every error shows up in one run."""
    prefix = (*sourced.keys, name)
    if get_origin(tp) is list and isinstance(sourced.value, list):
        item_tp = get_args(tp)[0]
        return [_validate_one(col, (*prefix, i), item_tp, v, sourced.source) for i, v in enumerate(sourced.value)]
    return _validate_one(col, prefix, tp, sourced.value, sourced.source)


def _validate_one(col: _Collector, prefix: tuple[str | int, ...], tp: Any, value: Any, source: Path) -> Any:
    try:
        return _adapter(tp).validate_python(value)
    except ValidationError as exc:
        errors = [(err, _model_fields_at(tp, tuple(err["loc"]))) for err in exc.errors()]
    meant: set[tuple[str | int, ...]] = set()
    for err, where in errors:
        if (
            err["type"] == "extra_forbidden"
            and where.fields
            and (close := _suggest(str(where.display[-1]), where.fields))
        ):
            meant.add((*where.display[:-1], close))
    for display, text in _merge_union_branches(errors):
        col.add(source, (*prefix, *display), text)
    for err, where in errors:
        if where.branch is not None:
            continue
        # 'maac' for 'mac' is one mistake: the "did you mean" hint already covers the missing 'mac'
        if not (err["type"] == "missing" and where.display in meant):
            col.add(source, (*prefix, *where.display), _friendly(err, where.fields, where.tags))
    return None


def _merge_union_branches(errors: list[tuple[Any, _Where]]) -> Iterable[tuple[tuple[str | int, ...], str]]:
    """A value that fits no member of a plain union (`cpu: discover` or a mapping) fails every
    member. Say what was wrong inside the mapping when a mapping was given, else list the choices."""
    unions: dict[tuple[str | int, ...], list[tuple[Any, _Where]]] = {}
    for err, where in errors:
        if where.branch is not None:
            unions.setdefault(where.branch[0], []).append((err, where))
    for path, branch_errors in unions.items():
        model = [(e, w) for e, w in branch_errors if w.branch and w.branch[1]]
        scalar = [e for e, w in branch_errors if not (w.branch and w.branch[1])]
        if model and not any(e["type"] in ("model_type", "model_attributes_type") for e, _ in model):
            yield from ((w.display, _friendly(e, w.fields, w.tags)) for e, w in model)  # a mapping was given
            continue
        choices = [str(e["msg"]).removeprefix("Input should be ") for e in scalar]
        if model:
            choices.append("a mapping")
        given = _describe_input(branch_errors[0][0].get("input"))
        yield path, f"expected {' or '.join(choices)}, got {given}"


# --- structure ---------------------------------------------------------------------------------


def _allowed_host_var(key: str, kind: str | None) -> bool:
    return key.startswith(("ansible_", "vault_")) or bool(ROLE_VAR_RE.match(key)) or (kind is not None and key == kind)


def _unknown_var_message(key: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"unknown variable {key!r}{hint}; inventory variables are the PoP model keys, ansible_*, "
        "vault_* or role variables named <role>__<name>"
    )


def _check_structure(col: _Collector, inv: RawInventory) -> dict[str, str]:
    """Map each host to its kind; report hosts in no kind group or in several."""
    kinds: dict[str, str] = {}
    hosts_file = inv.hosts_file or inv.root / "hosts.yml"
    for name, raw in sorted(inv.hosts.items(), key=lambda kv: natural_key(kv[0])):
        first: tuple[str, ...] = raw.entries[0] if raw.entries else ()
        if not re.fullmatch(NAME_RE, name):
            col.add(hosts_file, first, f"hostname {name!r} must be lower-case letters, digits and '-'")
        found: list[str] = []
        for group in raw.groups:
            for g in inv.ancestry(group):
                kind = KIND_OF_GROUP.get(g)
                if kind and kind not in found:
                    found.append(kind)
        if not found:
            col.add(
                hosts_file,
                first,
                f"host {name!r} is in none of the groups {', '.join(KIND_GROUPS.values())}",
            )
            continue
        if len(found) > 1:
            groups = " and ".join(GROUP_OF_KIND[k] for k in found)
            last: tuple[str, ...] = raw.entries[-1] if raw.entries else ()
            col.add(hosts_file, last, f"duplicate hostname {name!r}: it is in both {groups}")
            continue
        kinds[name] = found[0]
    return kinds


def _check_unknown_vars(col: _Collector, inv: RawInventory, kinds: dict[str, str]) -> set[str]:
    """Report variables the model does not know; return the hosts with a misspelt kind variable
    ('sever:'), whose missing kind variable needs no second message."""
    known = [*POP_VARS, *KIND_GROUPS]
    misspelt: set[str] = set()
    for group, variables in inv.group_vars.items():
        for key, sourced in variables.items():
            if group == "all" and key in POP_VARS:
                continue
            if key in POP_VARS:
                col.add(
                    sourced.source,
                    (*sourced.keys, key),
                    f"{key!r} belongs in group_vars/all, not in the vars of {group!r}",
                )
                continue
            kind = KIND_OF_GROUP.get(group)
            if not _allowed_host_var(key, kind):
                col.add(sourced.source, (*sourced.keys, key), _unknown_var_message(key, known))
    for host, raw in inv.hosts.items():
        kind = kinds.get(host)
        for key, sourced in [*raw.inline_vars.items(), *raw.host_vars.items()]:
            keys = (*sourced.keys, key)
            if key in POP_VARS:
                col.add(sourced.source, keys, f"{key!r} is PoP-wide; it belongs in group_vars/all")
            elif key in KIND_GROUPS:
                if kind is not None and key != kind:  # no kind: its group membership is reported already
                    col.add(
                        sourced.source,
                        keys,
                        f"host {host!r} is in group {GROUP_OF_KIND[kind]!r}, so it takes {kind!r}, not {key!r}",
                    )
            elif not _allowed_host_var(key, kind):
                col.add(sourced.source, keys, _unknown_var_message(key, known))
                if kind is not None and difflib.get_close_matches(key, [kind], n=1, cutoff=0.6):
                    misspelt.add(host)
    return misspelt


def _check_vault_vars(col: _Collector, inv: RawInventory) -> None:
    """A `vault_*` variable is where a secret lives, so it must be ciphertext, not plaintext.
    (Whole-file vaults are not parsed at all, so their variables never get here.)"""
    sourced_vars = [*(s for gv in inv.group_vars.values() for s in gv.items())]
    for raw in inv.hosts.values():
        sourced_vars += [*raw.inline_vars.items(), *raw.host_vars.items()]
    for key, sourced in sourced_vars:
        if not key.startswith("vault_"):
            continue
        value = sourced.value
        if isinstance(value, VaultText) and value.lstrip().startswith(VAULT_HEADER):
            continue
        got = "a !vault value without the $ANSIBLE_VAULT; header" if isinstance(value, VaultText) else "plaintext"
        col.add(
            sourced.source,
            (*sourced.keys, key),
            f"vault_* variables hold secrets: expected ansible-vault ciphertext (!vault), got {got}",
        )


# --- cross checks ------------------------------------------------------------------------------


@dataclass
class _Ctx:
    col: _Collector
    pop: Pop
    providers: list[Provider | None]  # None: the item failed its schema (already reported)
    services: list[AnycastService | None]
    routers: dict[str, Router]
    switches: dict[str, Switch]
    servers: dict[str, Server]
    controls: dict[str, Control]
    sources: dict[str, Sourced]  # top-level var or host -> where its variable is
    # listed hosts that were not validated (schema failed, no kind variable, unreadable file):
    # references to them are not re-reported
    failed: set[str]
    # PoP-wide list ("providers", "anycast_services", "pdus") -> names of the items that failed their
    # schema, or None when the whole list could not be read: references to them are not re-reported
    failed_names: dict[str, set[str] | None]

    def err(self, owner: str, keys: tuple[str | int, ...], message: str) -> None:
        where = self.sources[owner]
        self.col.add(where.source, (*where.keys, *keys), message)

    def known(self, var: str, name: str, valid: Iterable[str]) -> bool:
        """Whether `name` is an item of `var`, counting the items that failed their schema."""
        failed = self.failed_names.get(var, set())
        return failed is None or name in failed or name in valid


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _in_any(addr: str, nets: list[str]) -> bool:
    ip = ipaddress.ip_interface(addr).ip
    return any(ip in _net(n) for n in nets if _net(n).version == ip.version)


def _edge_problem(addr: str, net_text: str | None, label: str) -> str | None:
    """Why `addr` cannot be a host address in the IPv4 network `net_text`: it is the network's own
    address or its broadcast (a device refuses either on an interface). A /31 or /32 has neither."""
    if net_text is None:
        return None
    ip, net = ipaddress.ip_address(addr), _net(net_text)
    if ip.version != 4 or net.version != 4 or net.prefixlen >= 31 or ip not in net:
        return None
    if ip == net.network_address:
        return f"{ip} is the network address of {label} {net}, not a host address"
    if ip == net.broadcast_address:
        return f"{ip} is the broadcast address of {label} {net}, not a host address"
    return None


def _check_edge(
    c: _Ctx, owner: str, keys: tuple[str | int, ...], addr: str | None, net: str | None, label: str
) -> None:
    if addr is not None and (problem := _edge_problem(addr, net, label)):
        c.err(owner, keys, problem)


def _check_ranges(c: _Ctx) -> None:
    r = c.pop.ranges
    named = [
        ("lan_v4", r.lan_v4),
        ("lan_v6", r.lan_v6),
        ("internal_v4", r.internal_v4),
        ("internal_v6", r.internal_v6),
        ("loopback_v4", r.loopback_v4),
        ("loopback_v6", r.loopback_v6),
        ("management_v4", r.management_v4),
        *[(f"anycast_v4[{i}]", n) for i, n in enumerate(r.anycast_v4)],
        *[(f"anycast_v6[{i}]", n) for i, n in enumerate(r.anycast_v6)],
    ]
    present = [(k, _net(v)) for k, v in named if v is not None]
    for i, (ka, na) in enumerate(present):
        for kb, nb in present[i + 1 :]:
            if na.version == nb.version and na.overlaps(nb):
                key = kb.split("[")[0]
                c.err("pop", ("pop", "ranges", key), f"{kb} ({nb}) overlaps {ka} ({na})")
    names = [p.name for p in c.pop.nearest_pops]
    if c.pop.name in names:
        c.err("pop", ("pop", "nearest_pops", names.index(c.pop.name)), "a PoP cannot pull its image from itself")
    for i, name in enumerate(names):
        if name in names[:i]:
            c.err("pop", ("pop", "nearest_pops", i), f"PoP {name!r} is listed twice")
    pdu_names = [p.name for p in c.pop.pdus]
    for i, pdu in enumerate(c.pop.pdus):
        if pdu.name in pdu_names[:i]:
            c.err("pop", ("pop", "pdus", i, "name"), f"duplicate PDU name {pdu.name!r}")
        if not _in_any(pdu.address, [r.management_v4]):
            c.err(
                "pop",
                ("pop", "pdus", i, "address"),
                f"{pdu.address} is outside management_v4 {r.management_v4}",
            )
        _check_edge(c, "pop", ("pop", "pdus", i, "address"), pdu.address, r.management_v4, "management_v4")


def _check_unique_addresses(c: _Ctx) -> None:
    seen: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}

    def claim(value: str | None, owner: str, keys: tuple[str | int, ...]) -> None:
        if value is None:
            return
        ip = ipaddress.ip_interface(value).ip
        where = _dotted(keys) if owner in POP_VARS else f"{owner}:{_dotted(keys)}"
        if ip in seen:
            c.err(owner, keys, f"duplicate IP address {ip}: already used by {seen[ip]}")
        else:
            seen[ip] = where

    for i, pdu in enumerate(c.pop.pdus):
        claim(pdu.address, "pop", ("pop", "pdus", i, "address"))
    for name, rt in c.routers.items():
        claim(rt.mgmt_address, name, ("router", "mgmt_address"))
        claim(rt.loopback_v4, name, ("router", "loopback_v4"))
        claim(rt.loopback_v6, name, ("router", "loopback_v6"))
        for i, itf in enumerate(rt.interfaces):
            claim(itf.address_v4, name, ("router", "interfaces", i, "address_v4"))
            claim(itf.address_v6, name, ("router", "interfaces", i, "address_v6"))
    for name, sw in c.switches.items():
        claim(sw.mgmt_address, name, ("switch", "mgmt_address"))
        claim(sw.loopback_v4, name, ("switch", "loopback_v4"))
        claim(sw.lan_address_v4, name, ("switch", "lan_address_v4"))
        claim(sw.lan_address_v6, name, ("switch", "lan_address_v6"))
        if sw.mlag is not None:
            claim(sw.mlag.address, name, ("switch", "mlag", "address"))
    for name, ctl in c.controls.items():
        claim(ctl.mgmt_address, name, ("control", "mgmt_address"))
        claim(ctl.lan_address_v4, name, ("control", "lan_address_v4"))
    for name, srv in c.servers.items():
        for i, nic in enumerate(srv.nics):
            claim(nic.address_v4, name, ("server", "nics", i, "address_v4"))
            claim(nic.address_v6, name, ("server", "nics", i, "address_v6"))
        for i, bond in enumerate(srv.bonds):
            claim(bond.address_v4, name, ("server", "bonds", i, "address_v4"))
            claim(bond.address_v6, name, ("server", "bonds", i, "address_v6"))
        if srv.ipmi:
            claim(srv.ipmi.address, name, ("server", "ipmi", "address"))
    for i, prov in enumerate(c.providers):
        if prov is None:
            continue
        home = c.routers.get(prov.router) if prov.router else None
        link = next((x for x in home.interfaces if x.name == prov.port), None) if home else None
        for fam, addr in (("v4", prov.address_v4), ("v6", prov.address_v6)):
            mine = getattr(link, f"address_{fam}") if link else None
            if addr is not None and mine is not None and ipaddress.ip_interface(mine).ip == ipaddress.ip_address(addr):
                continue  # the router's own address on that link: _check_providers says so
            own = getattr(prov, f"switch_address_{fam}")
            if addr is not None and own is not None and ipaddress.ip_interface(own).ip == ipaddress.ip_address(addr):
                continue  # the switch's own address on that link: _check_arprelay says so
            claim(addr, "providers", ("providers", i, f"address_{fam}"))
        for fam in ("v4", "v6"):
            claim(getattr(prov, f"switch_address_{fam}"), "providers", ("providers", i, f"switch_address_{fam}"))


def _check_names(c: _Ctx) -> None:
    for var, items in (("providers", c.providers), ("anycast_services", c.services)):
        names = [it.name if it is not None else None for it in items]
        for i, n in enumerate(names):
            if n is not None and n in names[:i]:
                c.err(var, (var, i, "name"), f"duplicate name {n!r}: already {var}[{names.index(n)}]")


def _check_services(c: _Ctx) -> None:
    r = c.pop.ranges
    owner: dict[str, str] = {}
    for i, svc in enumerate(c.services):
        if svc is None:
            continue
        for j, prefix in enumerate(svc.prefixes):
            net = _net(prefix)
            keys: tuple[str | int, ...] = ("anycast_services", i, "prefixes", j)
            if net.prefixlen != net.max_prefixlen:
                c.err("anycast_services", keys, f"{prefix} is not a host route (expected /{net.max_prefixlen})")
                continue
            ranges = r.anycast_v4 if net.version == 4 else r.anycast_v6
            if not any(net.subnet_of(_net(a)) for a in ranges if _net(a).version == net.version):  # type: ignore[arg-type]
                c.err(
                    "anycast_services",
                    keys,
                    f"{prefix} is outside the PoP's anycast ranges ({', '.join(ranges)})",
                )
            if prefix in owner:
                c.err("anycast_services", keys, f"{prefix} is already a prefix of service {owner[prefix]!r}")
            owner[prefix] = svc.name


def _check_routers(c: _Ctx) -> None:
    r = c.pop.ranges
    for name, rt in c.routers.items():
        if not _in_any(rt.mgmt_address, [r.management_v4]):
            c.err(
                name,
                ("router", "mgmt_address"),
                f"{rt.mgmt_address} is outside management_v4 {r.management_v4}",
            )
        if not _in_any(rt.loopback_v4, [r.loopback_v4]):
            c.err(name, ("router", "loopback_v4"), f"{rt.loopback_v4} is outside loopback_v4 {r.loopback_v4}")
        if not _in_any(rt.loopback_v6, [r.loopback_v6]):
            c.err(name, ("router", "loopback_v6"), f"{rt.loopback_v6} is outside loopback_v6 {r.loopback_v6}")
        _check_edge(c, name, ("router", "mgmt_address"), rt.mgmt_address, r.management_v4, "management_v4")
        _check_edge(c, name, ("router", "loopback_v4"), rt.loopback_v4, r.loopback_v4, "loopback_v4")
        names = [i.name for i in rt.interfaces]
        lans = []
        for i, itf in enumerate(rt.interfaces):
            if itf.name in names[:i]:
                c.err(name, ("router", "interfaces", i, "name"), f"duplicate interface {itf.name!r}")
            if itf.lan:
                lans.append(i)
                for fam, addr, rng in (("v4", itf.address_v4, r.lan_v4), ("v6", itf.address_v6, r.lan_v6)):
                    if addr is None:
                        c.err(name, ("router", "interfaces", i), f"the LAN interface needs address_{fam}")
                    elif ipaddress.ip_interface(addr).network != _net(rng):
                        c.err(
                            name,
                            ("router", "interfaces", i, f"address_{fam}"),
                            f"LAN interface address {addr} must be on lan_{fam} {rng}",
                        )
        if len(lans) != 1:
            c.err(
                name,
                ("router", "interfaces"),
                f"expected exactly one interface with 'lan: true' (the server LAN), found {len(lans)}",
            )


def _check_providers(c: _Ctx) -> None:
    own_asns = (
        ("asn", getattr(c.pop, "asn", None), "the PoP's own AS: a router refuses an eBGP neighbour in its own AS"),
        (
            "server_asn",
            getattr(c.pop, "server_asn", None),
            "the servers' AS: the provider's routes and the servers' would be dropped as AS-path loops",
        ),
    )
    for i, prov in enumerate(c.providers):
        if prov is None:
            continue
        base: tuple[str | int, ...] = ("providers", i)
        for key, asn, why in own_asns:
            if prov.asn == asn:
                c.err("providers", (*base, "asn"), f"AS {asn} is pop.{key}, {why}")
        if prov.router is None:
            continue  # on the relay switch: _check_arprelay
        rt = c.routers.get(prov.router)
        if rt is None and prov.router in c.failed:
            continue
        if rt is None:
            known = ", ".join(c.routers) or "none"
            c.err("providers", (*base, "router"), f"unknown router {prov.router!r} (routers: {known})")
            continue
        itf = next((x for x in rt.interfaces if x.name == prov.port), None)
        if itf is None:
            c.err(
                "providers",
                (*base, "port"),
                f"router {prov.router!r} has no interface {prov.port!r} "
                f"(it has: {', '.join(x.name for x in rt.interfaces)})",
            )
            continue
        if itf.lan:
            c.err("providers", (*base, "port"), f"{prov.port!r} is the server LAN interface of {prov.router!r}")
            continue  # its addresses cannot be on that link either; one message is enough
        for fam, addr, mine in (
            ("v4", prov.address_v4, itf.address_v4),
            ("v6", prov.address_v6, itf.address_v6),
        ):
            if addr is None:
                continue
            keys = (*base, f"address_{fam}")
            if mine is None:
                c.err("providers", keys, f"{prov.router}:{prov.port} has no address_{fam} for {addr} to be on")
                continue
            local = ipaddress.ip_interface(mine)
            ip = ipaddress.ip_address(addr)
            if ip not in local.network:
                c.err(
                    "providers",
                    keys,
                    f"{addr} is not on the router interface {prov.router}:{prov.port} ({local.network})",
                )
            elif ip == local.ip:
                c.err("providers", keys, f"{addr} is the router's own address on {prov.port}")
            else:
                _check_edge(c, "providers", keys, addr, str(local.network), f"the link {prov.router}:{prov.port}")


def _check_arprelay(c: _Ctx, used: dict[tuple[str, str], str]) -> None:
    """The relay switch, where its relay runs, and the providers cabled to it (their ports join `used`)."""
    ar = c.pop.arprelay
    homed = [(i, p) for i, p in enumerate(c.providers) if p is not None and p.switch is not None]
    keys: tuple[str | int, ...] = ("pop", "arprelay")
    if not ar.enabled:
        for i, _ in homed:
            c.err("providers", ("providers", i, "switch"), "providers on a switch need pop.arprelay.enabled: true")
        return
    sw = c.switches.get(ar.switch or "")
    if sw is None:
        if ar.switch not in c.failed:
            known = ", ".join(c.switches) or "none"
            c.err("pop", (*keys, "switch"), f"unknown switch {ar.switch!r} (switches: {known})")
        return
    relay = ar.relay_host or ar.switch
    if relay != ar.switch and relay not in c.controls and relay not in c.failed:
        c.err("pop", (*keys, "relay_host"), f"{relay!r} is neither the switch {ar.switch!r} nor a control server")
    elif relay in c.controls and c.controls[relay].lan_address_v4 is None:
        c.err(relay, ("control", "lan_address_v4"), "the arprelay host needs its address on the server LAN")
    elif relay == ar.switch and sw.platform == "eos":
        c.err(
            "pop",
            (*keys, "relay_host"),
            f"{ar.switch!r} is an EOS switch: name the control server that polls its eAPI as relay_host",
        )
    assert ar.switch is not None
    for fam in ("v4", "v6"):
        mine = getattr(sw, f"lan_address_{fam}")
        lan = getattr(c.pop.ranges, f"lan_{fam}")
        if mine is None:
            if fam == "v4":
                c.err(
                    ar.switch, ("switch", "lan_address_v4"), "the arprelay switch needs its address on the server LAN"
                )
        elif ipaddress.ip_interface(mine).network != _net(lan):
            c.err(ar.switch, ("switch", f"lan_address_{fam}"), f"{mine} must be on lan_{fam} {lan}")
    ports = [p.name for p in sw.ports]
    tables: dict[int, str] = {}
    for i, prov in homed:
        base: tuple[str | int, ...] = ("providers", i)
        if prov.switch != ar.switch:
            c.err("providers", (*base, "switch"), f"{prov.switch!r} is not the arprelay switch {ar.switch!r}")
            continue
        assert prov.switch_port is not None and prov.table is not None
        if prov.switch_port not in ports:
            c.err("providers", (*base, "switch_port"), f"switch {ar.switch!r} has no port {prov.switch_port!r}")
        elif (ar.switch, prov.switch_port) in used:
            c.err(
                "providers",
                (*base, "switch_port"),
                f"port {prov.switch_port!r} is already cabled to {used[(ar.switch, prov.switch_port)]}",
            )
        else:
            used[(ar.switch, prov.switch_port)] = f"provider {prov.name!r}"
        if not ar.table_min <= prov.table <= ar.table_max:
            c.err(
                "providers",
                (*base, "table"),
                f"table {prov.table} is outside pop.arprelay.table_min-table_max ({ar.table_min}-{ar.table_max})",
            )
        elif prov.table in tables:
            c.err("providers", (*base, "table"), f"table {prov.table} is already provider {tables[prov.table]!r}'s")
        else:
            tables[prov.table] = prov.name
        for fam in ("v4", "v6"):
            addr, mine = getattr(prov, f"address_{fam}"), getattr(prov, f"switch_address_{fam}")
            if addr is None or mine is None:
                continue
            local = ipaddress.ip_interface(mine)
            keys = (*base, f"address_{fam}")
            if ipaddress.ip_address(addr) not in local.network:
                c.err("providers", keys, f"{addr} is not on the switch's link {local.network}")
            elif ipaddress.ip_address(addr) == local.ip:
                c.err("providers", keys, f"{addr} is the switch's own address on the link (switch_address_{fam})")
            else:
                _check_edge(c, "providers", keys, addr, str(local.network), "the switch's link")


def _check_switches(c: _Ctx) -> dict[tuple[str, str], str]:
    """Validate switch ports and uplinks; return (switch, port) -> what is cabled there."""
    used: dict[tuple[str, str], str] = {}
    router_ports: dict[tuple[str, str], str] = {
        (p.router, p.port): f"provider {p.name!r}" for p in c.providers if p is not None and p.router and p.port
    }
    for name, sw in c.switches.items():
        if not _in_any(sw.mgmt_address, [c.pop.ranges.management_v4]):
            c.err(name, ("switch", "mgmt_address"), f"{sw.mgmt_address} is outside management_v4")
        if sw.loopback_v4 is not None and not _in_any(sw.loopback_v4, [c.pop.ranges.loopback_v4]):
            c.err(
                name,
                ("switch", "loopback_v4"),
                f"{sw.loopback_v4} is outside loopback_v4 {c.pop.ranges.loopback_v4}",
            )
        r = c.pop.ranges
        _check_edge(c, name, ("switch", "mgmt_address"), sw.mgmt_address, r.management_v4, "management_v4")
        _check_edge(c, name, ("switch", "loopback_v4"), sw.loopback_v4, r.loopback_v4, "loopback_v4")
        names = [p.name for p in sw.ports]
        for i, port in enumerate(sw.ports):
            if port.name in names[:i]:
                c.err(name, ("switch", "ports", i, "name"), f"duplicate port {port.name!r}")
        if sw.mlag_peer == name:
            c.err(name, ("switch", "mlag_peer"), f"{name!r} names itself: mlag_peer is the other switch of the pair")
        elif sw.mlag_peer is not None:
            peer = c.switches.get(sw.mlag_peer)
            if peer is None and sw.mlag_peer not in c.failed:
                known = ", ".join(s for s in c.switches if s != name) or "none"
                c.err(name, ("switch", "mlag_peer"), f"unknown switch {sw.mlag_peer!r} (other switches: {known})")
            elif peer is not None and peer.mlag_peer != name:
                c.err(name, ("switch", "mlag_peer"), f"{sw.mlag_peer!r} does not name {name!r} as its mlag_peer")
        for i, up in enumerate(sw.uplinks):
            keys: tuple[str | int, ...] = ("switch", "uplinks", i)
            if up.port not in names:
                c.err(name, (*keys, "port"), f"switch {name!r} has no port {up.port!r}")
            elif (name, up.port) in used:
                c.err(name, (*keys, "port"), f"port {up.port!r} is already cabled to {used[(name, up.port)]}")
            else:
                used[(name, up.port)] = f"{up.router}:{up.router_port}"
            rt = c.routers.get(up.router)
            if rt is None and up.router in c.failed:
                continue
            if up.router == name:
                c.err(name, (*keys, "router"), f"{name!r} names itself: an uplink goes to a router")
            elif rt is None:
                known = ", ".join(c.routers) or "none"
                c.err(name, (*keys, "router"), f"unknown router {up.router!r} (routers: {known})")
            elif up.router_port not in [x.name for x in rt.interfaces]:
                c.err(name, (*keys, "router_port"), f"router {up.router!r} has no interface {up.router_port!r}")
            elif (up.router, up.router_port) in router_ports:
                c.err(
                    name,
                    (*keys, "router_port"),
                    f"{up.router}:{up.router_port} is already cabled to {router_ports[(up.router, up.router_port)]}",
                )
            else:
                router_ports[(up.router, up.router_port)] = f"{name}:{up.port}"
    return used


def _check_servers(c: _Ctx, used: dict[tuple[str, str], str]) -> set[str]:
    """Check every server; return the 'host:nic' whose cabling is already reported as wrong."""
    r = c.pop.ranges
    svc_names = list(dict.fromkeys(s.name for s in c.services if s is not None))
    miscabled: set[str] = set()
    macs: dict[str, str] = {}
    outlets: dict[tuple[str, int], str] = {}
    pdus = {p.name: p for p in c.pop.pdus}
    for name, srv in c.servers.items():
        nics = {n.name: (i, n) for i, n in enumerate(srv.nics)}
        names = [n.name for n in srv.nics]
        for i, nic in enumerate(srv.nics):
            keys: tuple[str | int, ...] = ("server", "nics", i)
            if nic.name in names[:i]:
                c.err(name, (*keys, "name"), f"duplicate NIC name {nic.name!r}")
            if nic.mac in macs:
                c.err(name, (*keys, "mac"), f"duplicate MAC {nic.mac}: already on {macs[nic.mac]}")
            else:
                macs[nic.mac] = f"{name}:{nic.name}"
            for fam in ("v4", "v6"):
                addr = getattr(nic, f"address_{fam}")
                if addr is None:
                    continue
                rng = {
                    "management": r.management_v4 if fam == "v4" else None,
                    "external": getattr(r, f"lan_{fam}"),
                    "internal": getattr(r, f"internal_{fam}"),
                }[nic.group]
                if rng is None or ipaddress.ip_interface(addr).network != _net(rng):
                    label = {"management": "management", "external": "lan", "internal": "internal"}[nic.group]
                    c.err(name, (*keys, f"address_{fam}"), f"{addr} must be on {label}_{fam} {rng}")
            if nic.switch is None or nic.switch_port is None:
                continue
            sw = c.switches.get(nic.switch)
            me = f"{name}:{nic.name}"
            if sw is None and nic.switch in c.failed:
                miscabled.add(me)
                continue
            if sw is None:
                miscabled.add(me)
                c.err(
                    name,
                    (*keys, "switch"),
                    f"unknown switch {nic.switch!r} (switches: {', '.join(c.switches) or 'none'})",
                )
                continue
            port = next((p for p in sw.ports if p.name == nic.switch_port), None)
            if port is None:
                miscabled.add(me)
                c.err(name, (*keys, "switch_port"), f"switch {nic.switch!r} has no port {nic.switch_port!r}")
                continue
            if (nic.switch, nic.switch_port) in used:
                miscabled.add(me)
                c.err(
                    name,
                    (*keys, "switch_port"),
                    f"{nic.switch}:{nic.switch_port} is already cabled to {used[(nic.switch, nic.switch_port)]}",
                )
                continue  # its speed and peer belong to the NIC that has the port
            used[(nic.switch, nic.switch_port)] = me
            if port.speed != nic.speed:
                c.err(
                    name,
                    (*keys, "speed"),
                    f"NIC speed {nic.speed} does not match {nic.switch}:{nic.switch_port} speed {port.speed}",
                )
            if port.peer is not None and port.peer != me:
                c.err(
                    name,
                    (*keys, "switch_port"),
                    f"cabled to {nic.switch}:{nic.switch_port}, but that switch port says its peer is {port.peer}",
                )
        in_bond: dict[str, str] = {}
        bond_names = [b.name for b in srv.bonds]
        for i, bond in enumerate(srv.bonds):
            keys = ("server", "bonds", i)
            if bond.name in bond_names[:i] or bond.name in nics:
                c.err(name, (*keys, "name"), f"duplicate interface name {bond.name!r}")
            switches: list[str] = []
            for j, member in enumerate(bond.members):
                if member not in nics:
                    c.err(
                        name,
                        (*keys, "members", j),
                        f"NIC {member!r} is not declared in server.nics (NICs: {', '.join(names)})",
                    )
                    continue
                _, nic = nics[member]
                if member in in_bond:
                    c.err(
                        name,
                        (*keys, "members", j),
                        f"NIC {member!r} is already a member of {in_bond[member]}",
                    )
                in_bond[member] = bond.name
                if nic.group != bond.group:
                    c.err(
                        name,
                        (*keys, "members", j),
                        f"NIC {member!r} is in group {nic.group!r} but the bond is {bond.group!r}: "
                        "a bond must not mix NIC groups",
                    )
                if nic.switch and nic.switch not in switches:
                    switches.append(nic.switch)
            if len(switches) > 1 and all(s in c.switches for s in switches):  # unknown ones: reported
                pair = len(switches) == 2
                pair = pair and c.switches[switches[0]].mlag_peer == switches[1]
                if not pair:
                    c.err(
                        name,
                        (*keys, "members"),
                        f"bond members are cabled to switches {', '.join(switches)}, which are not an MLAG pair",
                    )
            lan4, lan6 = (r.lan_v4, r.lan_v6) if bond.group == "external" else (r.internal_v4, r.internal_v6)
            for fam, addr, rng in (("v4", bond.address_v4, lan4), ("v6", bond.address_v6, lan6)):
                if addr is None:
                    continue
                if rng is None or ipaddress.ip_interface(addr).network != _net(rng):
                    c.err(
                        name,
                        (*keys, f"address_{fam}"),
                        f"{addr} must be on {'lan' if bond.group == 'external' else 'internal'}_{fam} {rng}",
                    )
        for nic_name, (i, nic) in nics.items():
            addressed = nic.address_v4 is not None or nic.address_v6 is not None
            if nic_name in in_bond and addressed:
                c.err(
                    name,
                    ("server", "nics", i),
                    f"NIC {nic_name!r} is a member of {in_bond[nic_name]}; the bond carries the addresses",
                )
            elif nic.group != "management" and nic_name not in in_bond and not addressed:
                c.err(
                    name,
                    ("server", "nics", i),
                    f"{nic.group} NIC {nic_name!r} is in no bond and has no address: bond it or address it",
                )
        # anycast
        if not c.pop.weight_min <= srv.anycast_weight <= c.pop.weight_max:
            c.err(
                name,
                ("server", "anycast_weight"),
                f"weight {srv.anycast_weight} is out of range {c.pop.weight_min}-{c.pop.weight_max}",
            )
        for i, svc in enumerate(srv.services):
            if not c.known("anycast_services", svc, svc_names):
                c.err(
                    name,
                    ("server", "services", i),
                    f"unknown anycast service {svc!r} (services: {', '.join(svc_names) or 'none'})",
                )
            elif svc in srv.services[:i]:
                c.err(name, ("server", "services", i), f"service {svc!r} is listed twice")
        ext_v4 = [b.address_v4 for b in srv.bonds if b.group == "external" and b.address_v4]
        ext_v4 += [n.address_v4 for n in srv.nics if n.group == "external" and n.address_v4]
        if srv.services and not ext_v4:
            c.err(
                name,
                ("server", "services"),
                "a server that runs anycast services needs an external bond or NIC with address_v4",
            )
        # hardware
        if srv.cpu != "discover":
            for key in ("external_socket", "internal_socket"):
                sock = getattr(srv.irq, key)
                if sock >= srv.cpu.sockets:
                    given = "irq" in srv.model_fields_set and key in srv.irq.model_fields_set
                    n = srv.cpu.sockets
                    c.err(
                        name,
                        ("server", "irq", key),
                        f"socket {sock}{'' if given else ' (the default)'} does not exist: cpu.sockets is {n}, "
                        f"so expected {'0' if n == 1 else f'0 to {n - 1}'}",
                    )
            if srv.cpu.sockets > 1 and srv.irq.external_socket == srv.irq.internal_socket:
                c.err(
                    name,
                    ("server", "irq", "internal_socket"),
                    "external and internal queues must be on different sockets when there are two or more",
                )
            sockets_ok = all(getattr(srv.irq, k) < srv.cpu.sockets for k in ("external_socket", "internal_socket"))
            if sockets_ok:
                try:
                    server_queue_plan(srv)
                except IrqPlanError as exc:
                    c.err(name, ("server", "irq", "queues_per_core"), str(exc))
        if srv.ipmi and not _in_any(srv.ipmi.address, [r.management_v4]):
            c.err(
                name,
                ("server", "ipmi", "address"),
                f"{srv.ipmi.address} is outside management_v4 {r.management_v4}",
            )
        if srv.ipmi:
            _check_edge(c, name, ("server", "ipmi", "address"), srv.ipmi.address, r.management_v4, "management_v4")
        if srv.pdu:
            pdu = pdus.get(srv.pdu.pdu)
            if pdu is None and c.known("pdus", srv.pdu.pdu, pdus):
                pass  # the PDU is there but failed its own schema: already reported
            elif pdu is None:
                c.err(
                    name,
                    ("server", "pdu", "pdu"),
                    f"unknown PDU {srv.pdu.pdu!r} (pop.pdus: {', '.join(pdus) or 'none'})",
                )
            elif srv.pdu.outlet > pdu.outlets:
                c.err(name, ("server", "pdu", "outlet"), f"PDU {pdu.name!r} has only {pdu.outlets} outlets")
            else:
                slot = (srv.pdu.pdu, srv.pdu.outlet)
                if slot in outlets:
                    c.err(
                        name,
                        ("server", "pdu", "outlet"),
                        f"outlet {slot[1]} of {slot[0]} already powers {outlets[slot]}",
                    )
                outlets[slot] = name
    return miscabled


def _check_switch_port_peers(c: _Ctx, used: dict[tuple[str, str], str], miscabled: set[str]) -> None:
    """A port's `peer` that no NIC confirms. A mismatch with a NIC that is cabled here is reported on
    the NIC; peers whose server was not validated, or whose NIC's cabling is wrong, are not re-reported."""
    cabled = {nic: port for port, nic in used.items()}
    for name, sw in c.switches.items():
        for i, port in enumerate(sw.ports):
            if port.peer is None or (name, port.name) in used or port.peer in miscabled:
                continue
            host, nic_name = port.peer.split(":", 1)
            keys: tuple[str | int, ...] = ("switch", "ports", i, "peer")
            if host == name:
                c.err(name, keys, f"{port.peer} names {name} itself: a port's peer is the server NIC cabled to it")
                continue
            srv = c.servers.get(host)
            if srv is None and host in c.failed:
                continue
            if srv is None:
                c.err(name, keys, f"says {port.peer} is cabled here, but there is no server {host!r}")
            elif port.peer in cabled:
                at = cabled[port.peer]
                c.err(name, keys, f"says {port.peer} is cabled here, but {host} cables {nic_name} to {at[0]}:{at[1]}")
            elif nic_name not in [n.name for n in srv.nics]:
                c.err(name, keys, f"says {port.peer} is cabled here, but {host} has no NIC {nic_name!r}")
            else:
                c.err(name, keys, f"says {port.peer} is cabled here, but {host} does not cable {nic_name} to a switch")


def _check_mlag(c: _Ctx, used: dict[tuple[str, str], str]) -> None:
    """The MLAG domain of each pair: present exactly where it can be rendered, a peer link made of
    free ports, and two switches that agree on the domain, the peer VLAN and its /31 or /30."""
    r = c.pop.ranges
    ranges = [
        (key, value)
        for key in ("lan_v4", "internal_v4", "loopback_v4", "management_v4")
        if (value := getattr(r, key)) is not None
    ] + [(f"anycast_v4[{i}]", n) for i, n in enumerate(r.anycast_v4)]
    for name, sw in c.switches.items():
        m = sw.mlag
        if m is None:
            if sw.mlag_peer is not None and sw.platform == "eos":
                c.err(
                    name,
                    ("switch", "mlag_peer"),
                    "an EOS switch with an mlag_peer needs `mlag` (domain_id, peer_link, address) for its MLAG domain",
                )
            continue
        base: tuple[str | int, ...] = ("switch", "mlag")
        if sw.platform != "eos":
            c.err(name, base, f"MLAG is rendered for EOS switches only, not {sw.platform}")
            continue
        if sw.mlag_peer is None:
            c.err(name, base, "an MLAG domain needs mlag_peer: the other switch of the pair")
        ports = {p.name: p for p in sw.ports}
        for i, port in enumerate(m.peer_link):
            keys = (*base, "peer_link", i)
            if port in m.peer_link[:i]:
                c.err(name, keys, f"port {port!r} is listed twice")
            elif port not in ports:
                c.err(name, keys, f"switch {name!r} has no port {port!r}")
            elif (name, port) in used:
                c.err(name, keys, f"port {port!r} is cabled to {used[(name, port)]}, not to the other switch")
            elif ports[port].peer is not None:
                c.err(name, keys, f"port {port!r} says its peer is {ports[port].peer}, not the other switch")
        if m.port_channel <= len(sw.ports):
            c.err(
                name,
                (*base, "port_channel"),
                f"Port-Channel{m.port_channel} may be a server port-channel: those are numbered by port "
                f"position, 1 to {len(sw.ports)} on {name}",
            )
        if m.vlan in sw.vlans.values():
            group = next(g for g, vid in sw.vlans.items() if vid == m.vlan)
            c.err(name, (*base, "vlan"), f"VLAN {m.vlan} is already the {group} VLAN of {name}")
        net = ipaddress.ip_interface(m.address).network
        for key, rng in ranges:
            if net.overlaps(_net(rng)):
                c.err(
                    name,
                    (*base, "address"),
                    f"{net} overlaps {key} ({rng}): the peer VLAN is private to the pair",
                )
        peer = c.switches.get(sw.mlag_peer) if sw.mlag_peer not in (None, name) else None
        if peer is None or peer.mlag is None or peer.mlag_peer != name or peer.platform != "eos":
            continue  # reported on mlag_peer or on the other switch
        if natural_key(name) < natural_key(sw.mlag_peer or ""):
            continue  # the pair is compared once, on its second switch
        pm = peer.mlag
        if m.domain_id != pm.domain_id:
            c.err(name, (*base, "domain_id"), f"{m.domain_id!r} differs from {sw.mlag_peer}'s {pm.domain_id!r}")
        if m.vlan != pm.vlan:
            c.err(name, (*base, "vlan"), f"VLAN {m.vlan} differs from {sw.mlag_peer}'s peer VLAN {pm.vlan}")
        mine, theirs = ipaddress.ip_interface(m.address), ipaddress.ip_interface(pm.address)
        if mine.network != theirs.network:
            c.err(
                name,
                (*base, "address"),
                f"{m.address} and {sw.mlag_peer}'s {pm.address} are not in one point-to-point network",
            )


def _check_controls(c: _Ctx) -> None:
    for name, ctl in c.controls.items():
        if not _in_any(ctl.mgmt_address, [c.pop.ranges.management_v4]):
            c.err(name, ("control", "mgmt_address"), f"{ctl.mgmt_address} is outside management_v4")
        r = c.pop.ranges
        _check_edge(c, name, ("control", "mgmt_address"), ctl.mgmt_address, r.management_v4, "management_v4")
        if ctl.lan_address_v4 and ipaddress.ip_interface(ctl.lan_address_v4).network != _net(c.pop.ranges.lan_v4):
            c.err(
                name,
                ("control", "lan_address_v4"),
                f"{ctl.lan_address_v4} must be on lan_v4 {c.pop.ranges.lan_v4}",
            )


def _check_provisioning(c: _Ctx) -> None:
    """Servers boot on the network the call-home URL points into; the pool for unknown MACs lies in it
    and hands out no address the inventory gives a device."""
    prov = getattr(c.pop, "provisioning", None)  # a stand-in pop (its schema failed) has none
    if prov is None:
        return
    keys = ("pop", "provisioning")
    url = urlsplit(prov.callhome_url)
    if url.scheme != "http":
        c.err("pop", (*keys, "callhome_url"), "provisiond serves plain HTTP: expected an http:// URL")
    host = url.hostname or ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return  # a name: resolved by the boxes, nothing to check here
    r = c.pop.ranges
    boot = next(
        (
            (key, _net(net))
            for key, net in (("management_v4", r.management_v4), ("lan_v4", r.lan_v4))
            if address in _net(net)
        ),
        None,
    )
    if boot is None:
        c.err(
            "pop",
            (*keys, "callhome_url"),
            f"{host} is in neither management_v4 ({r.management_v4}) nor lan_v4 ({r.lan_v4}): "
            "servers boot on one of those and could not reach it",
        )
        return
    own = {
        str(ipaddress.ip_interface(a).ip)
        for ctl in c.controls.values()
        for a in (ctl.mgmt_address, ctl.lan_address_v4)
        if a
    }
    if c.controls and host not in own:
        c.err(
            "pop", (*keys, "callhome_url"), f"{host} is not an address of a control server ({', '.join(sorted(own))})"
        )
    pool = prov.dhcp_pool
    if pool is None:
        return
    for key, value in (("start", pool.start), ("end", pool.end)):
        if ipaddress.ip_address(value) not in boot[1]:
            c.err("pop", (*keys, "dhcp_pool", key), f"{value} is outside {boot[0]} {boot[1]}, where servers boot")
        _check_edge(c, "pop", (*keys, "dhcp_pool", key), value, str(boot[1]), boot[0])
    low, high = ipaddress.IPv4Address(pool.start), ipaddress.IPv4Address(pool.end)
    taken = [(name, a) for name, ctl in c.controls.items() for a in (ctl.mgmt_address, ctl.lan_address_v4) if a]
    for name, srv in c.servers.items():
        taken += [(f"{name} {n.name}", n.address_v4) for n in srv.nics if n.address_v4]
        taken += [(f"{name} {b.name}", b.address_v4) for b in srv.bonds if b.address_v4]
    for owner, value in taken:
        ip = ipaddress.ip_interface(value).ip
        if isinstance(ip, ipaddress.IPv4Address) and low <= ip <= high:
            c.err("pop", (*keys, "dhcp_pool"), f"{pool.start}-{pool.end} holds {ip}, the address of {owner}")


def _secret_refs(value: Any, keys: tuple[str | int, ...]) -> Iterable[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _secret_refs(v, (*keys, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _secret_refs(v, (*keys, i))
    elif isinstance(value, str) and not isinstance(value, VaultText):
        ref = vault_reference(value.strip())
        if ref:
            yield keys, ref


def _check_vault_refs(col: _Collector, inv: RawInventory, checked: list[tuple[str, Sourced]]) -> None:
    """Every `{{ vault_x }}` must name a variable that exists, and that every host using the
    reference can see: Ansible resolves it in the host's own variables, so a vault variable in
    another host's host_vars is undefined there, and the play fails on that host only."""
    if inv.encrypted_files or inv.unreadable_files or not inv.hosts_read:
        # names inside whole-file vaults cannot be seen without the password, and a vars file that
        # did not parse may define any name
        return
    where: dict[str, list[str]] = {}
    for gv in inv.group_vars.values():
        for k, s in gv.items():
            where.setdefault(k, []).append(col.rel(s.source))
    for raw in inv.hosts.values():
        for k, s in [*raw.inline_vars.items(), *raw.host_vars.items()]:
            where.setdefault(k, []).append(col.rel(s.source))
    effective = {host: inv.effective_vars(host) for host in sorted(inv.hosts, key=natural_key)}
    for name, sourced in checked:
        users = [h for h, ev in effective.items() if ev.get(name) is sourced]
        for keys, ref in _secret_refs(sourced.value, (*sourced.keys, name)):
            if ref not in where:
                col.add(sourced.source, keys, f"refers to {ref!r}, which no group_vars or host_vars file defines")
                continue
            blind = [h for h in users if ref not in effective[h]]
            if blind:
                shown = ", ".join(blind[:5]) + (f" and {len(blind) - 5} more" if len(blind) > 5 else "")
                files = sorted(set(where[ref]))
                col.add(
                    sourced.source,
                    keys,
                    f"refers to {ref!r}, which {shown} cannot see: only {', '.join(files)} "
                    f"define{'s' if len(files) == 1 else ''} it, and a host sees no other host's variables",
                )


def _own_addresses(kind: str, device: Any) -> dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]:
    """The addresses a device answers on itself, each with its key path (for the messages)."""
    found: list[tuple[str | None, str]] = []
    if kind in ("router", "switch", "control"):
        found.append((device.mgmt_address, "mgmt_address"))
    if kind == "router":
        found += [(device.loopback_v4, "loopback_v4"), (device.loopback_v6, "loopback_v6")]
        for i, itf in enumerate(device.interfaces):
            found += [(itf.address_v4, f"interfaces[{i}].address_v4"), (itf.address_v6, f"interfaces[{i}].address_v6")]
    elif kind == "switch":
        found += [(device.loopback_v4, "loopback_v4")]
        found += [(device.lan_address_v4, "lan_address_v4"), (device.lan_address_v6, "lan_address_v6")]
        found += [(device.mlag.address if device.mlag else None, "mlag.address")]
    elif kind == "control":
        found.append((device.lan_address_v4, "lan_address_v4"))
    elif kind == "server":
        for attr in ("nics", "bonds"):
            for i, item in enumerate(getattr(device, attr)):
                found += [(item.address_v4, f"{attr}[{i}].address_v4"), (item.address_v6, f"{attr}[{i}].address_v6")]
    return {ipaddress.ip_interface(a).ip: f"{kind}.{key}" for a, key in found if a is not None}


def _check_ansible_hosts(
    col: _Collector, sources: dict[str, Sourced], devices: dict[str, dict[str, Any]], pop: Pop | None
) -> None:
    """`ansible_host` is where Ansible logs in to push a device's config. An address that is not
    the device's own (a typo, its BMC, another host's) pushes one device's config onto another.
    A server whose management NIC has no address in the inventory gets it at boot: any free host
    address of management_v4 may be it (`pop` is None when even a stand-in could not be made)."""
    management = pop.ranges.management_v4 if pop is not None else None
    own: dict[str, dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str]] = {}
    elsewhere: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str] = {}
    for kind, kind_devices in devices.items():
        for host, device in kind_devices.items():
            if device is None:
                continue
            own[host] = _own_addresses(kind, device)
            for ip, key in own[host].items():
                elsewhere.setdefault(ip, f"{host}'s {key}")
            if kind == "server" and device.ipmi is not None:
                elsewhere[ipaddress.ip_address(device.ipmi.address)] = f"{host}'s BMC (server.ipmi.address)"
    for i, pdu in enumerate(pop.pdus if pop is not None else []):
        elsewhere.setdefault(ipaddress.ip_address(pdu.address), f"PDU {pdu.name}'s address (pop.pdus[{i}].address)")
    seen: dict[str, str] = {}
    for host in sorted(sources, key=natural_key):
        ah = sources[host]
        keys = (*ah.keys, "ansible_host")
        value = ah.value
        if not isinstance(value, str) or not value:
            got = "an empty string" if value == "" else _describe_input(value)
            col.add(ah.source, keys, f"expected the IP address or host name Ansible connects to, got {got}")
            continue
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            if not is_host_name(value):
                col.add(ah.source, keys, f"{value!r} is neither an IP address nor a host name")
                continue
        else:
            mine = own.get(host)
            # a loopback ansible_host is a port forward or tunnel on the controller (qemu hostfwd,
            # `ssh -L`), never an address of the box: there is nothing to compare it with
            if mine is not None and ip not in mine and not ip.is_loopback:
                problem = _foreign_address(host, ip, mine, elsewhere, devices["server"].get(host), management)
                if problem:
                    col.add(ah.source, keys, problem)
                    continue
        if value in seen:
            col.add(ah.source, keys, f"duplicate ansible_host {value}: already used by {seen[value]}")
        seen[value] = host


def _foreign_address(
    host: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    mine: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str],
    elsewhere: dict[ipaddress.IPv4Address | ipaddress.IPv6Address, str],
    server: Server | None,
    management: str | None,
) -> str | None:
    """Why `ip`, which is none of the host's own addresses, cannot be its ansible_host (or None)."""
    if ip in elsewhere:
        return f"{ip} is not an address of {host}: it is {elsewhere[ip]}"
    edge = _edge_problem(str(ip), management, "management_v4")
    if edge:
        return edge
    dynamic = server is not None and any(n.group == "management" and n.address_v4 is None for n in server.nics)
    if dynamic:
        if management is None:
            return None  # the range is unknown (pop is invalid): nothing to check against
        if ip.version == 4 and ip in _net(management):
            return None  # the address its management NIC gets at boot
        return (
            f"{ip} is not an address of {host}: its management NIC gets its address at boot, "
            f"so expected one in management_v4 {management}"
        )
    return f"{ip} is not an address of {host} (its addresses: {', '.join(str(a) for a in mine) or 'none'})"


# --- entry point -------------------------------------------------------------------------------


def validate_inventory(root: Path) -> Report:
    """Validate one PoP inventory directory. Never raises for bad content: see Report.errors."""
    root = root.resolve()
    locate.clear_cache()
    col = _Collector(root)
    inv = load_inventory(root)
    for le in inv.errors:
        col.add(le.file, tuple(le.path.split(".")) if le.path else (), le.message, le.line)
    if not root.is_dir():
        return Report(root=root, errors=sorted(col.issues))
    unreadable = {_var_file_owner(root / "host_vars", f) for f in inv.unreadable_files}
    broken_groups = {_var_file_owner(root / "group_vars", f) for f in inv.unreadable_files}
    kinds = _check_structure(col, inv)
    misspelt = _check_unknown_vars(col, inv, kinds)
    _check_vault_vars(col, inv)

    all_vars = inv.group_vars.get("all", {})
    values: dict[str, Any] = {}
    sources: dict[str, Sourced] = {}
    checked: list[tuple[str, Sourced]] = []
    failed_names: dict[str, set[str] | None] = {}
    for var, tp in POP_VARS.items():
        sourced = all_vars.get(var)
        if sourced is None:
            values[var] = None if var == "pop" else []
            if "all" in broken_groups:
                failed_names[var] = None  # it may be in the file that did not parse
            elif var == "pop":
                gv = root / "group_vars" / "all"
                col.add(gv if gv.exists() else root / "group_vars", (), "the PoP-wide variable 'pop' is missing")
            continue
        sources[var] = sourced
        checked.append((var, sourced))
        values[var] = _validate_var(col, var, tp, sourced)
        if var != "pop":
            failed_names[var] = _failed_item_names(sourced.value, values[var])

    devices: dict[str, dict[str, Any]] = {k: {} for k in KIND_MODELS}
    ansible_hosts: dict[str, str] = {}
    ah_sources: dict[str, Sourced] = {}
    extra: dict[str, dict[str, Any]] = {}
    for host in sorted(kinds, key=natural_key):
        kind = kinds[host]
        effective = inv.effective_vars(host)
        extra[host] = {k: s.value for k, s in effective.items() if k != kind}
        ah = effective.get("ansible_host")
        if ah is not None:
            ansible_hosts[host] = str(ah.value)
            ah_sources[host] = ah
        sourced = effective.get(kind)
        if sourced is None and (host in unreadable or host in misspelt):
            continue  # its host_vars did not parse, or its kind variable is misspelt: already reported
        if sourced is None:
            hv = root / "host_vars" / f"{host}.yml"
            col.add(hv if hv.exists() else (inv.hosts_file or root), (), f"host {host!r} has no {kind!r} variable")
            continue
        sources[host] = sourced
        checked.append((kind, sourced))
        devices[kind][host] = _validate_var(col, kind, KIND_MODELS[kind], sourced)

    _check_vault_refs(col, inv, checked)

    for var in ("providers", "anycast_services"):
        if values.get(var) is None:
            values[var] = []
    pop: Pop | None = values["pop"]
    failed_names["pdus"] = set()
    if pop is None and "pop" in sources:
        pop, failed_names["pdus"] = _stand_in_pop(sources["pop"].value)
    _check_ansible_hosts(col, ah_sources, devices, pop)
    if pop is not None and inv.hosts_read:
        valid = {h: d for kind_devices in devices.values() for h, d in kind_devices.items() if d is not None}
        ctx = _Ctx(
            col=col,
            pop=pop,
            providers=values["providers"],
            services=values["anycast_services"],
            routers={h: d for h, d in devices["router"].items() if d is not None},
            switches={h: d for h, d in devices["switch"].items() if d is not None},
            servers={h: d for h, d in devices["server"].items() if d is not None},
            controls={h: d for h, d in devices["control"].items() if d is not None},
            sources=sources,
            failed=set(inv.hosts) - set(valid),
            failed_names=failed_names,
        )
        _check_ranges(ctx)
        _check_unique_addresses(ctx)
        _check_names(ctx)
        _check_services(ctx)
        _check_routers(ctx)
        _check_providers(ctx)
        used = _check_switches(ctx)
        _check_arprelay(ctx, used)
        miscabled = _check_servers(ctx, used)
        _check_switch_port_peers(ctx, used, miscabled)
        _check_mlag(ctx, used)
        _check_controls(ctx)
        _check_provisioning(ctx)

    report = Report(root=root, errors=sorted(col.issues))
    if report.ok and values["pop"] is not None:
        report.model = PopModel(
            root=root,
            pop=values["pop"],
            providers=[p for p in values["providers"] if p is not None],
            services=[s for s in values["anycast_services"] if s is not None],
            routers=devices["router"],
            switches=devices["switch"],
            servers=devices["server"],
            controls=devices["control"],
            ansible_hosts=ansible_hosts,
            extra_vars=extra,
        )
    return report


def _var_file_owner(base: Path, file: Path) -> str | None:
    """The host or group a host_vars/group_vars file belongs to (x.yml or any file under x/)."""
    try:
        parts = file.relative_to(base).parts
    except ValueError:
        return None
    if not parts:
        return None
    return parts[0] if len(parts) > 1 else Path(parts[0]).stem


def _failed_item_names(raw: Any, validated: Any) -> set[str]:
    """Names of the list items that failed their schema (None in `validated`)."""
    if not isinstance(raw, list) or not isinstance(validated, list):
        return set()
    return {
        str(item["name"])
        for item, ok in zip(raw, validated, strict=True)
        if ok is None and isinstance(item, dict) and "name" in item
    }


def _stand_in_pop(raw: Any) -> tuple[Pop | None, set[str]]:
    """When `pop` fails its schema, a stand-in with the parts the cross-checks read, each kept only
    if it is valid on its own, so that one mistake in `pop` does not hide every error elsewhere.
    It is only ever checked against, never rendered. Also returns the names of invalid PDUs."""
    if not isinstance(raw, dict):
        return None, set()
    try:
        ranges = Ranges.model_validate(raw.get("ranges"))
    except ValidationError:
        return None, set()  # every address check needs the ranges

    def items(key: str, model: type[NearestPop] | type[Pdu]) -> tuple[list[Any], set[str]]:
        good: list[Any] = []
        bad: set[str] = set()
        value = raw.get(key)
        for item in value if isinstance(value, list) else []:
            try:
                good.append(model.model_validate(item))
            except ValidationError:
                if isinstance(item, dict) and "name" in item:
                    bad.add(str(item["name"]))
        return good, bad

    nearest, _ = items("nearest_pops", NearestPop)
    pdus, bad_pdus = items("pdus", Pdu)
    name = raw.get("name")
    low, high = raw.get("weight_min", 1), raw.get("weight_max", 1000)
    if not (type(low) is int and type(high) is int and 0 <= low <= high <= 65535):
        low, high = 0, 2**63  # unknown bounds: check no weight against them
    parts: dict[str, Any] = {
        "name": name if isinstance(name, str) and re.fullmatch(NAME_RE, name) else "",
        "ranges": ranges,
        "nearest_pops": nearest,
        "pdus": pdus,
        "weight_min": low,
        "weight_max": high,
    }
    return Pop.model_construct(**parts), bad_pdus


def load_valid(root: Path) -> PopModel:
    """The model of a valid inventory, or InventoryInvalid with every message."""
    report = validate_inventory(root)
    if report.model is None:
        raise InventoryInvalid(report)
    return report.model


class InventoryInvalid(Exception):
    """Raised by load_valid; str() is the full multi-line report."""

    def __init__(self, report: Report) -> None:
        super().__init__(report.format())
        self.report = report
