"""Provider next hops on a host (ARP-relay design): read, plan and apply them over netlink.

One file, three users, so they cannot disagree: the `provider_nexthop` Ansible module (shipped to
the box as module_utils), the host half of the arprelay agent, and `edgepop st-ping`
(src/edgepop/nexthop.py is this file).

For every provider next hop the host gets four kernel objects:
- a point-to-point address: `ip addr add LOCAL peer PROVIDER dev IF proto P` (the provider becomes
  on-link without sharing its subnet). IPv6 keys an address by its local half alone, so the host's
  own address cannot be added again with a peer: an IPv6 provider is made on-link by a host route
  instead, `ip -6 route replace PROVIDER/128 dev IF proto P` (main table);
- a permanent neighbour: `ip neigh replace PROVIDER lladdr MAC nud permanent dev IF proto P` (no ARP
  or ND needed: the switch's ARP table told us the MAC);
- a routing table of its own: `ip route replace default via PROVIDER dev IF table T proto P`;
- a rule that selects that table by firewall mark: `ip rule add fwmark T lookup T pref R proto P`
  (what `st-ping` uses to send one probe over each provider).

Ownership: everything this code creates carries the protocol number P (`proto` of addresses, routes
and rules, `protocol` of neighbours), and its tables lie in [table_min, table_max]. Only objects
carrying P are ever changed or removed; an operator's route, even in one of those tables, is left
alone, and so are neighbours the kernel learned by itself unless one has to be replaced.

pyroute2 is imported only where the kernel is touched, so the planning works without it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
IFNAME_RE = re.compile(r"^[A-Za-z0-9_.@-]{1,15}$")
NUD_PERMANENT = 0x80
IFA_F_NODAD = 0x02
AF_INET = 2
AF_INET6 = 10
MAIN_TABLE = 254

DEFAULT_PROTO = 200
DEFAULT_TABLE_MIN = 1000
DEFAULT_TABLE_MAX = 1999
DEFAULT_RULE_PRIORITY = 1000


class NexthopError(Exception):
    """Input that cannot be applied, or a kernel that refused a change; the message names which."""


@dataclass(frozen=True, order=True)
class Nexthop:
    """One provider address as a host reaches it."""

    provider: str
    address: str
    mac: str
    interface: str
    local: str
    table: int

    @property
    def family(self) -> int:
        return AF_INET6 if ":" in self.address else AF_INET


@dataclass(frozen=True)
class Settings:
    """What marks the objects as ours."""

    proto: int = DEFAULT_PROTO
    table_min: int = DEFAULT_TABLE_MIN
    table_max: int = DEFAULT_TABLE_MAX
    rule_priority: int = DEFAULT_RULE_PRIORITY

    def check(self) -> None:
        if not 5 <= self.proto <= 254:
            raise NexthopError(f"proto {self.proto}: expected 5-254 (0-4 belong to the kernel, 255 is reserved)")
        if not 1 <= self.table_min <= self.table_max <= 0xFFFFFFFE:
            raise NexthopError(f"table range {self.table_min}-{self.table_max} is empty or out of range")
        if self.table_min <= 255 <= self.table_max or self.table_min <= 254 <= self.table_max:
            raise NexthopError(f"table range {self.table_min}-{self.table_max} covers the kernel's main/local tables")
        if not 1 <= self.rule_priority <= 32765:
            raise NexthopError(f"rule_priority {self.rule_priority}: expected 1-32765 (below the main table's rule)")


def _address(value: Any, where: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise NexthopError(f"{where}: {value!r} is not an IP address") from None


def parse_nexthops(items: Sequence[dict[str, Any]], settings: Settings) -> list[Nexthop]:
    """Check every entry (all errors at once) and return them sorted; raises NexthopError."""
    errors: list[str] = []
    out: list[Nexthop] = []
    seen: dict[str, str] = {}
    tables: dict[int, str] = {}
    for i, item in enumerate(items):
        where = f"nexthops[{i}]"
        missing = [k for k in ("provider", "address", "mac", "interface", "local", "table") if item.get(k) is None]
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}")
            continue
        try:
            provider = str(item["provider"])
            if not NAME_RE.match(provider):
                raise NexthopError(f"{where}.provider: {provider!r} is not a provider name")
            address = _address(item["address"], f"{where}.address")
            local = _address(item["local"], f"{where}.local")
            if (":" in address) != (":" in local):
                raise NexthopError(f"{where}: address {address} and local {local} are of different families")
            mac = str(item["mac"]).lower()
            if not MAC_RE.match(mac) or mac == "00:00:00:00:00:00" or int(mac[:2], 16) & 1:
                raise NexthopError(f"{where}.mac: {item['mac']!r} is not a unicast MAC address")
            interface = str(item["interface"])
            if not IFNAME_RE.match(interface):
                raise NexthopError(f"{where}.interface: {interface!r} is not an interface name")
            table = item["table"]
            if not isinstance(table, int) or isinstance(table, bool):
                raise NexthopError(f"{where}.table: {table!r} is not a number")
            if not settings.table_min <= table <= settings.table_max:
                raise NexthopError(
                    f"{where}.table: {table} is outside the owned range {settings.table_min}-{settings.table_max}"
                )
            if address in seen:
                raise NexthopError(f"{where}.address: {address} is also the next hop of {seen[address]}")
            owner = tables.setdefault(table, provider)
            if owner != provider:
                raise NexthopError(f"{where}.table: table {table} is already provider {owner}'s")
            seen[address] = provider
            out.append(Nexthop(provider, address, mac, interface, local, table))
        except NexthopError as exc:
            errors.append(str(exc))
    families: dict[tuple[int, int], str] = {}
    for nh in out:
        other = families.setdefault((nh.table, nh.family), nh.address)
        if other != nh.address:
            errors.append(
                f"provider {nh.provider}: two next hops of one family ({other}, {nh.address}) in table {nh.table}"
            )
    if errors:
        raise NexthopError("; ".join(errors))
    return sorted(out)


# --- state: the kernel objects, normalised ----------------------------------------------------------

AddressKey = tuple[str, str, str]  # interface, local, peer (IPv4); interface, "", peer: on-link route (IPv6)
NeighKey = tuple[str, str]  # interface, address
RouteKey = tuple[int, int]  # table, family


@dataclass
class State:
    """The objects we own (or want), in a shape that compares and prints simply."""

    addresses: set[AddressKey] = field(default_factory=set)
    neighbours: dict[NeighKey, str] = field(default_factory=dict)  # -> MAC
    routes: dict[RouteKey, tuple[str, str]] = field(default_factory=dict)  # -> (gateway, interface)
    rules: dict[RouteKey, int] = field(default_factory=dict)  # -> priority

    def lines(self) -> list[str]:
        """One line per object, sorted: what diff mode shows."""
        out = [
            f"address {local} peer {peer} dev {ifname}" if local else f"on-link {peer} dev {ifname}"
            for ifname, local, peer in sorted(self.addresses)
        ]
        out += [
            f"neighbour {addr} lladdr {mac} dev {ifname}" for (ifname, addr), mac in sorted(self.neighbours.items())
        ]
        out += [
            f"route {_default(fam)} via {gw} dev {ifname} table {table}"
            for (table, fam), (gw, ifname) in sorted(self.routes.items())
        ]
        out += [
            f"rule {_fam(fam)} fwmark {table} lookup {table} pref {prio}"
            for (table, fam), prio in sorted(self.rules.items())
        ]
        return out


def _default(family: int) -> str:
    return "::/0" if family == AF_INET6 else "0.0.0.0/0"


def _fam(family: int) -> str:
    return "-6" if family == AF_INET6 else "-4"


def desired_state(nexthops: Iterable[Nexthop], settings: Settings) -> State:
    want = State()
    for nh in nexthops:
        want.addresses.add((nh.interface, nh.local if nh.family == AF_INET else "", nh.address))
        want.neighbours[(nh.interface, nh.address)] = nh.mac
        want.routes[(nh.table, nh.family)] = (nh.address, nh.interface)
        want.rules[(nh.table, nh.family)] = settings.rule_priority
    return want


@dataclass(frozen=True)
class Change:
    """One kernel operation: op is add, replace or delete; kind is address, neighbour, route or rule."""

    op: str
    kind: str
    key: tuple[Any, ...]
    value: Any = None
    old: Any = None

    def command(self, proto: int) -> str:
        """The equivalent iproute2 command, for the operator (the code speaks netlink)."""
        if self.kind == "address":
            ifname, local, peer = self.key
            if not local:
                verb = "replace" if self.op == "add" else "del"
                return f"ip -6 route {verb} {peer}/128 dev {ifname} proto {proto}"
            verb = "add" if self.op == "add" else "del"
            return f"ip addr {verb} {local} peer {peer} dev {ifname} proto {proto}"
        if self.kind == "neighbour":
            ifname, addr = self.key
            if self.op == "delete":
                return f"ip neigh del {addr} dev {ifname}"
            return f"ip neigh replace {addr} lladdr {self.value} nud permanent dev {ifname} proto {proto}"
        if self.kind == "route":
            table, fam = self.key
            if self.op == "delete":
                return f"ip {_fam(fam)} route del {_default(fam)} table {table} proto {proto}"
            gw, ifname = self.value
            return f"ip {_fam(fam)} route replace {_default(fam)} via {gw} dev {ifname} table {table} proto {proto}"
        table, fam = self.key
        verb = "add" if self.op == "add" else "del"
        prio = self.value if self.op == "add" else self.old
        return f"ip {_fam(fam)} rule {verb} fwmark {table} lookup {table} pref {prio} proto {proto}"


def plan(current: State, desired: State) -> list[Change]:
    """The changes that turn `current` into `desired`: stale objects go first (rules, routes,
    neighbours, addresses: nothing is ever left pointing at a removed object), then new and changed
    ones in the order they depend on each other (address, neighbour, route, rule)."""
    out: list[Change] = []
    for rkey, prio in sorted(current.rules.items()):
        if desired.rules.get(rkey) != prio:
            out.append(Change("delete", "rule", rkey, old=prio))
    for rkey, route in sorted(current.routes.items()):
        if rkey not in desired.routes:
            out.append(Change("delete", "route", rkey, old=route))
    for nkey, mac in sorted(current.neighbours.items()):
        if nkey not in desired.neighbours:
            out.append(Change("delete", "neighbour", nkey, old=mac))
    for akey in sorted(current.addresses - desired.addresses):
        out.append(Change("delete", "address", akey))
    for akey in sorted(desired.addresses - current.addresses):
        out.append(Change("add", "address", akey))
    for nkey, mac in sorted(desired.neighbours.items()):
        if current.neighbours.get(nkey) != mac:
            out.append(Change("replace", "neighbour", nkey, mac, current.neighbours.get(nkey)))
    for rkey, route in sorted(desired.routes.items()):
        if current.routes.get(rkey) != route:
            out.append(Change("replace", "route", rkey, route, current.routes.get(rkey)))
    for rkey, prio in sorted(desired.rules.items()):
        if current.rules.get(rkey) != prio:
            out.append(Change("add", "rule", rkey, prio))
    return out


def inverse(change: Change) -> Change | None:
    """The change that undoes `change` (for a rollback after a failure part-way)."""
    if change.op == "delete":
        op = "add" if change.kind in ("address", "rule") else "replace"
        return Change(op, change.kind, change.key, change.old)
    if change.old is not None:
        return Change("replace", change.kind, change.key, change.old, change.value)
    return Change("delete", change.kind, change.key, old=change.value)


# --- the kernel -------------------------------------------------------------------------------------


class Netlink:
    """The host's kernel through pyroute2: reads the objects we own, applies changes.

    `netns` names a network namespace (tests, the lab); None is the caller's own.
    """

    def __init__(self, settings: Settings, netns: str | None = None) -> None:
        self.settings = settings
        self.netns = netns
        self._ipr: Any = None

    def __enter__(self) -> Netlink:
        try:
            from pyroute2 import IPRoute, NetNS
        except ImportError:
            raise NexthopError("pyroute2 is not installed (Debian: python3-pyroute2)") from None
        self._ipr = NetNS(self.netns) if self.netns else IPRoute()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    def _names(self) -> dict[int, str]:
        return {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}

    def index(self, ifname: str) -> int:
        found = self._ipr.link_lookup(ifname=ifname)
        if not found:
            raise NexthopError(f"interface {ifname!r} does not exist")
        return int(found[0])

    def read(self) -> State:
        s = self.settings
        names = self._names()
        state = State()
        for msg in self._ipr.get_addr():
            if msg.get_attr("IFA_PROTO") != s.proto:
                continue
            local = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            peer = msg.get_attr("IFA_ADDRESS")
            state.addresses.add((names.get(msg["index"], str(msg["index"])), _norm(local), _norm(peer)))
        for msg in self._ipr.get_neighbours():
            if msg.get_attr("NDA_PROTOCOL") != s.proto:
                continue
            mac = msg.get_attr("NDA_LLADDR")
            key = (names.get(msg["ifindex"], str(msg["ifindex"])), _norm(msg.get_attr("NDA_DST")))
            state.neighbours[key] = str(mac or "").lower()
        for family in (AF_INET, AF_INET6):
            for msg in self._ipr.get_routes(family=family, table=None):
                table = msg.get_attr("RTA_TABLE") or msg["table"]
                if msg["proto"] != s.proto:
                    continue
                if family == AF_INET6 and table == MAIN_TABLE and msg["dst_len"] == 128:
                    oif = msg.get_attr("RTA_OIF")
                    state.addresses.add((names.get(oif, str(oif)), "", _norm(msg.get_attr("RTA_DST"))))
                    continue
                if not s.table_min <= table <= s.table_max or msg["dst_len"] != 0:
                    continue
                gw = msg.get_attr("RTA_GATEWAY")
                oif = msg.get_attr("RTA_OIF")
                state.routes[(table, family)] = (_norm(gw) if gw else "", names.get(oif, str(oif)))
            for msg in self._ipr.get_rules(family=family):
                table = msg.get_attr("FRA_TABLE") or msg["table"]
                if msg.get_attr("FRA_PROTOCOL") != s.proto or not s.table_min <= table <= s.table_max:
                    continue
                state.rules[(table, family)] = int(msg.get_attr("FRA_PRIORITY") or 0)
        return state

    def check_interfaces(self, nexthops: Iterable[Nexthop]) -> None:
        missing = sorted({nh.interface for nh in nexthops} - set(self._names().values()))
        if missing:
            raise NexthopError(f"interface {', '.join(missing)} does not exist on this host")

    def apply(self, changes: Sequence[Change]) -> None:
        """Apply in order; if the kernel refuses one, undo those already applied and raise."""
        done: list[Change] = []
        try:
            for change in changes:
                self._one(change)
                done.append(change)
        except NexthopError:
            for change in reversed(done):
                undo = inverse(change)
                if undo is not None:
                    with contextlib.suppress(NexthopError):
                        self._one(undo)
            raise

    def _one(self, c: Change) -> None:
        from pyroute2.netlink.exceptions import NetlinkError

        p = self.settings.proto
        try:
            if c.kind == "address" and not c.key[1]:
                ifname, _, peer = c.key
                verb = "replace" if c.op == "add" else "del"
                self._ipr.route(verb, family=AF_INET6, dst=f"{peer}/128", oif=self.index(ifname), table=MAIN_TABLE,
                                proto=p)  # fmt: skip
            elif c.kind == "address":
                ifname, local, peer = c.key
                v6 = ":" in peer
                args: dict[str, Any] = {
                    "index": self.index(ifname),
                    "local": local,
                    "address": peer,
                    "prefixlen": 128 if v6 else 32,
                }
                if c.op == "add":
                    args.update(proto=p, flags=IFA_F_NODAD if v6 else 0)
                    self._ipr.addr("add", **args)
                else:
                    self._ipr.addr("del", **args)
            elif c.kind == "neighbour":
                ifname, addr = c.key
                if c.op == "delete":
                    self._ipr.neigh("del", dst=addr, ifindex=self.index(ifname))
                else:
                    self._ipr.neigh(
                        "replace",
                        dst=addr,
                        lladdr=c.value,
                        ifindex=self.index(ifname),
                        state=NUD_PERMANENT,
                        NDA_PROTOCOL=p,
                    )
            elif c.kind == "route":
                table, fam = c.key
                if c.op == "delete":
                    self._ipr.route("del", family=fam, dst=_default(fam), table=table, proto=p)
                else:
                    gw, ifname = c.value
                    self._ipr.route(
                        "replace",
                        family=fam,
                        dst=_default(fam),
                        gateway=gw,
                        oif=self.index(ifname),
                        table=table,
                        proto=p,
                    )
            else:
                table, fam = c.key
                prio = c.value if c.op == "add" else c.old
                self._ipr.rule(
                    "add" if c.op == "add" else "del",
                    family=fam,
                    fwmark=table,
                    table=table,
                    priority=prio,
                    FRA_PROTOCOL=p,
                )
        except NetlinkError as exc:
            raise NexthopError(f"{c.command(p)}: {exc.args[-1] if exc.args else exc}") from None


def _norm(addr: Any) -> str:
    return str(ipaddress.ip_address(str(addr)))


@dataclass
class Result:
    changed: bool
    commands: list[str]
    before: list[str]
    after: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "commands": self.commands}


def converge(
    items: Sequence[dict[str, Any]] | Sequence[Nexthop],
    settings: Settings,
    *,
    check: bool = False,
    netns: str | None = None,
) -> Result:
    """Make the host's owned objects exactly `items`: validate everything first, then change only
    what differs (nothing in check mode)."""
    settings.check()
    if items and isinstance(items[0], Nexthop):
        nexthops = sorted(x for x in items if isinstance(x, Nexthop))
    else:
        nexthops = parse_nexthops([x for x in items if isinstance(x, dict)], settings)
    want = desired_state(nexthops, settings)
    with Netlink(settings, netns) as nl:
        nl.check_interfaces(nexthops)
        have = nl.read()
        changes = plan(have, want)
        if changes and not check:
            nl.apply(changes)
    return Result(bool(changes), [c.command(settings.proto) for c in changes], have.lines(), want.lines())
