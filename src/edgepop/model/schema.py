"""The PoP data model: one schema, the single source for validation and the reference docs.

Every class forbids unknown keys, so a typo anywhere in the inventory is an error rather than a
silently ignored setting. Field descriptions are written for operators: `edgepop schema --markdown`
turns them into docs/data-model.md.

Cross-object rules (duplicate MACs, cabling, ranges ...) live in `edgepop.validate`, because they
need the whole PoP at once; this module only checks what one object can check about itself.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, field_validator, model_validator

from edgepop.model.secrets import Secret

NAME_RE = r"^[a-z][a-z0-9-]{0,62}$"
MAC_RE = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
SHA256_RE = r"^[0-9a-f]{64}$"

Name = Annotated[str, Field(pattern=NAME_RE, description="lower-case name: letters, digits, '-'")]
IFNAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_./:-]{0,63}$"


def _ifname(value: str) -> str:
    """A port or interface name as the device spells it (et-0/0/0, Ethernet49/1, swp1). It is written
    into device configs and networkd files, where a space, a quote or a line break breaks them."""
    if not re.fullmatch(IFNAME_RE.strip("^$"), value):
        raise ValueError(
            f"{value!r} is not an interface name: a letter or digit, then letters, digits and _ . / : - "
            "(at most 64; no spaces, quotes or line breaks)"
        )
    return value


IfName = Annotated[str, AfterValidator(_ifname), WithJsonSchema({"type": "string", "pattern": IFNAME_RE})]


def _one_line(value: str) -> str:
    """Free text lands in configs (networkd Description=, summaries), where a line break starts a new
    setting: one line, no control characters."""
    bad = next((ch for ch in value if ord(ch) < 32 or ord(ch) == 127), None)
    if bad is not None:
        raise ValueError(f"expected one line of text, got {value!r} with the control character {bad!r}")
    return value


Text = Annotated[str, AfterValidator(_one_line), Field(max_length=255)]
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
SSH_KEY_RE = rf"^({'|'.join(map(re.escape, SSH_KEY_TYPES))}) [A-Za-z0-9+/]+={{0,3}}( [^\x00-\x1f\x7f]*)?$"


def _ssh_key(value: str) -> str:
    """One OpenSSH public key per item: a booted server writes them one per line into root's
    authorized_keys, so a line break would smuggle in a second key nobody listed."""
    if not re.fullmatch(SSH_KEY_RE.strip("^$"), value):
        first = value.split(" ", 1)[0]
        if "\n" in value:
            why = "it spans several lines"
        elif first in SSH_KEY_TYPES:
            why = "expected '<type> <base64 key> [comment]' on one line"
        else:
            why = f"type {first[:40]!r} is not one of {', '.join(SSH_KEY_TYPES)}"
        raise ValueError(f"not one OpenSSH public key: {why}")
    return value


SshKey = Annotated[str, AfterValidator(_ssh_key), WithJsonSchema({"type": "string"})]
Asn = Annotated[int, Field(ge=1, le=4294967294, description="autonomous system number (1-4294967294)")]
Port = Annotated[int, Field(ge=1, le=65535)]


def unicast_mac_problem(mac: str) -> str | None:
    """Why `mac` (aa:bb:cc:dd:ee:ff) cannot be a NIC's own address, or None when it can.

    Switches flood broadcast and multicast destinations and never learn them as a source, and an
    all-zero MAC is what a NIC reports before its firmware set one: none of them identifies a box.
    """
    if mac == "ff:ff:ff:ff:ff:ff":
        return f"{mac} is the broadcast MAC, not a NIC's address"
    if int(mac[:2], 16) & 1:
        return f"{mac} is a multicast MAC (the first octet is odd), not a NIC's address"
    if mac == "00:00:00:00:00:00":
        return f"{mac} is the all-zero MAC, not a NIC's address"
    return None


def _unicast_mac(value: str) -> str:
    problem = unicast_mac_problem(value)
    if problem:
        raise ValueError(problem)
    return value


class Strict(BaseModel):
    """Base for every inventory object: unknown keys are errors, values are never coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _interface(value: str, version: int | None = None) -> str:
    """Accept `address/len` with host bits set (an interface address, not a network)."""
    iface = ipaddress.ip_interface(value)
    if version is not None and iface.version != version:
        raise ValueError(f"expected an IPv{version} address/prefix-length, got IPv{iface.version} {value}")
    if "/" not in value:
        raise ValueError(f"expected address/prefix-length, e.g. 198.51.100.1/26, got {value} (no prefix length)")
    if iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1:
        raise ValueError(f"{value} is the network address of {iface.network}, not a host address")
    # IPv6 has no broadcast; an IPv4 /31 or /32 has no broadcast address either (RFC 3021)
    if iface.version == 4 and iface.ip == iface.network.broadcast_address and iface.network.prefixlen < 31:
        raise ValueError(f"{value} is the broadcast address of {iface.network}, not a host address")
    return str(iface)


def _network(value: str, version: int | None = None) -> str:
    try:
        net = ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"expected a network with no host bits set: {exc}") from None
    if version is not None and net.version != version:
        raise ValueError(f"expected an IPv{version} network, got IPv{net.version} {value}")
    return str(net)


def _address(value: str, version: int | None = None) -> str:
    addr = ipaddress.ip_address(value)
    if version is not None and addr.version != version:
        raise ValueError(f"expected an IPv{version} address, got IPv{addr.version} {value}")
    return str(addr)


IPv4Iface = Annotated[str, AfterValidator(lambda v: _interface(v, 4)), Field(description="IPv4 address/prefix-length")]
IPv6Iface = Annotated[str, AfterValidator(lambda v: _interface(v, 6)), Field(description="IPv6 address/prefix-length")]
IPv4Addr = Annotated[str, AfterValidator(lambda v: _address(v, 4)), Field(description="IPv4 address")]
IPv6Addr = Annotated[str, AfterValidator(lambda v: _address(v, 6)), Field(description="IPv6 address")]
IPv4Net = Annotated[str, AfterValidator(lambda v: _network(v, 4)), Field(description="IPv4 network")]
IPv6Net = Annotated[str, AfterValidator(lambda v: _network(v, 6)), Field(description="IPv6 network")]


def _host_route(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(f"expected a host route like 203.0.113.10/32: {exc}") from None
    if net.prefixlen != net.max_prefixlen:
        raise ValueError(f"{value} is not a host route (expected /{net.max_prefixlen})")
    return str(net)


HostRoute = Annotated[str, AfterValidator(_host_route), Field(description="host route: /32 or /128")]

_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_host_name(text: str) -> bool:
    """Whether `text` is a DNS host name (RFC 1123 labels, a top label that is not all digits), as a
    resolver would accept it; 203.0.113.300 is a mistyped address, not a name."""
    labels = text.removesuffix(".").split(".")
    return (
        0 < len(text) <= 253 and all(_HOST_LABEL_RE.fullmatch(label) for label in labels) and not labels[-1].isdigit()
    )


def _http_url(value: str) -> str:
    """An http(s) URL a box can actually open: a host name or address, a port 1-65535.

    The pattern on the field only pins the scheme; urllib would fail later, on the box, on a port
    out of range, an empty host or a space, where nobody reads the error.
    """
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value!r} is not a URL: it contains whitespace or a control character")
    try:
        url = urlsplit(value)
    except ValueError as exc:
        raise ValueError(f"{value} is not a valid URL: {exc}") from None
    try:
        port = url.port
    except ValueError:
        text = url.netloc.rpartition(":")[2]
        if text.isascii() and text.isdigit():
            raise ValueError(f"{value}: port {text} is out of range (expected 1-65535)") from None
        raise ValueError(f"{value}: port {text!r} is not a number") from None
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"{value}: port {port} is out of range (expected 1-65535)")
    if url.username is not None or url.password is not None:
        raise ValueError(f"{value}: no credentials in a URL (they would be readable by every box)")
    host = url.hostname or ""
    if not host:
        raise ValueError(f"{value} has no host")
    if url.netloc.endswith(":"):
        raise ValueError(f"{value} has an empty port after ':'")
    if "[" in url.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value}: {host!r} in brackets is not an IPv6 address") from None
        return value
    if re.fullmatch(r"[0-9.]+", host):
        try:
            addr = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{value}: {host!r} is not a valid IPv4 address") from None
        if addr.is_unspecified or addr.is_multicast or addr == ipaddress.IPv4Address("255.255.255.255"):
            raise ValueError(f"{value}: {host} is not an address a box can connect to")
        return value
    if not is_host_name(host):
        raise ValueError(f"{value}: {host!r} is not a valid host name")
    return value


HttpUrl = Annotated[str, Field(pattern=r"^https?://"), AfterValidator(_http_url)]

# Ethernet link speeds in Mb/s (IEEE 802.3): 10M up to 800G, including 2.5G and 5G (802.3bz)
ETHERNET_SPEEDS = (10, 100, 1000, 2500, 5000, 10000, 25000, 40000, 50000, 100000, 200000, 400000, 800000)


def _ethernet_speed(value: int) -> int:
    if value not in ETHERNET_SPEEDS:
        raise ValueError(
            f"{value} Mb/s is not an Ethernet speed (expected one of {', '.join(map(str, ETHERNET_SPEEDS))})"
        )
    return value


Speed = Annotated[
    int,
    AfterValidator(_ethernet_speed),
    WithJsonSchema({"type": "integer", "enum": list(ETHERNET_SPEEDS)}),
]


class Ranges(Strict):
    """Address plan of the PoP. Every address in the inventory must fall in one of these ranges."""

    lan_v4: IPv4Net = Field(description="server LAN toward the routers (external bonds, BGP sessions), IPv4")
    lan_v6: IPv6Net = Field(description="server LAN toward the routers, IPv6")
    internal_v4: IPv4Net = Field(description="server-to-server network (internal bonds), IPv4")
    internal_v6: IPv6Net | None = Field(default=None, description="server-to-server network, IPv6")
    loopback_v4: IPv4Net = Field(description="router and switch loopbacks, IPv4")
    loopback_v6: IPv6Net = Field(description="router and switch loopbacks, IPv6")
    management_v4: IPv4Net = Field(description="out-of-band management: device management ports, IPMI, PDUs")
    anycast_v4: list[IPv4Net] = Field(min_length=1, description="IPv4 aggregates announced to providers")
    anycast_v6: list[IPv6Net] = Field(min_length=1, description="IPv6 aggregates announced to providers")


class NearestPop(Strict):
    """An existing PoP this one pulls its boot image from, in order of preference."""

    name: Name = Field(description="PoP name")
    url: HttpUrl = Field(description="base URL of that PoP's image server")


class DhcpPool(Strict):
    """Addresses handed to MACs the inventory does not know yet, so they can boot and call home."""

    start: IPv4Addr = Field(description="first address of the pool")
    end: IPv4Addr = Field(description="last address of the pool")

    @model_validator(mode="after")
    def _order(self) -> DhcpPool:
        if ipaddress.IPv4Address(self.start) > ipaddress.IPv4Address(self.end):
            raise ValueError(f"start ({self.start}) is after end ({self.end})")
        return self


class Provisioning(Strict):
    """What bare servers boot and where they report their MACs."""

    image_version: str = Field(pattern=r"^[0-9A-Za-z._-]+$", description="stateless image version to serve")
    image_sha256: str = Field(pattern=SHA256_RE, description="sha256 of the image manifest (64 hex digits)")
    image_public_key: str | None = Field(
        default=None,
        pattern=r"^ed25519:[A-Za-z0-9+/]{43}=$",
        description="ed25519 public key the image manifest must be signed with (`edgepop image keygen` prints "
        "it); none: provisiond serves no image and pulls none",
    )
    callhome_url: HttpUrl = Field(description="call-home endpoint booted servers POST to")
    callhome_token: Secret = Field(description="per-PoP call-home token (ansible-vault)")
    ssh_authorized_keys: list[SshKey] = Field(
        default_factory=list,
        description="SSH public keys a booted server installs for root, so Ansible can reach it: one key per "
        "item on one line (type, base64 key, optional comment), type ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521 "
        "or sk-ssh-ed25519@openssh.com / sk-ecdsa-sha2-nistp256@openssh.com",
    )
    dhcp_pool: DhcpPool | None = Field(
        default=None,
        description="addresses for MACs not in the inventory (on the call-home network); none: unknown MACs "
        "get no lease and cannot call home",
    )


class Bgp(Strict):
    """PoP-wide BGP timers and anycast weight bounds."""

    bfd_interval_ms: int = Field(default=100, ge=10, le=10000, description="BFD transmit/receive interval")
    bfd_multiplier: int = Field(default=3, ge=1, le=255, description="BFD detection multiplier")
    hold_time: int = Field(default=9, ge=3, le=65535, description="BGP hold time in seconds")
    keepalive: int = Field(default=3, ge=1, le=21845, description="BGP keepalive in seconds")
    server_password: Secret | None = Field(
        default=None,
        description="TCP-MD5 password of every session between the servers and the routers (ansible-vault); "
        "none: no password",
    )
    reflect_to_servers: bool = Field(
        default=False,
        description="ARP-relay design: each router also sends the routes it learns from its providers to every "
        "server, over an iBGP session per server and family from its loopback, with the provider as next hop "
        "(unchanged), so servers send straight to the provider's MAC (arprelay); false: servers get no routes",
    )

    @model_validator(mode="after")
    def _timers(self) -> Bgp:
        if self.keepalive * 3 > self.hold_time:
            raise ValueError(f"keepalive ({self.keepalive}) must be at most a third of hold_time ({self.hold_time})")
        return self


class ArpRelay(Strict):
    """ARP relay (Fastly's Silverton): the providers' eBGP sessions end on one switch, whose BIRD
    reflects their routes to every server with the provider as next hop; the relay agent reads the
    providers' MACs from that switch's ARP table and every server programs them (a point-to-point
    address, a permanent neighbour entry and a routing table per provider), so servers send
    straight to the provider's MAC through the switch. See docs/arprelay.md."""

    enabled: bool = Field(default=False, description="run the ARP relay and the switch-homed provider sessions")
    switch: Name | None = Field(
        default=None, description="inventory hostname of the switch the providers are cabled to (its ARP table)"
    )
    relay_host: Name | None = Field(
        default=None,
        description="box that runs the relay: the switch itself (a Linux switch, netlink) or a control server "
        "polling an EOS switch over eAPI; default: the switch",
    )
    port: Port = Field(default=8790, description="TCP port of the relay's HTTP endpoint, on the switch LAN address")
    token: Secret | None = Field(
        default=None, description="shared token the hosts present to the relay (ansible-vault); none: no token"
    )
    eapi_poll_ms: int = Field(default=200, ge=50, le=5000, description="how often an EOS switch's ARP table is read")
    long_poll_s: int = Field(
        default=25, ge=1, le=300, description="how long a host's request waits for a change before it asks again"
    )
    proto: int = Field(
        default=200,
        ge=5,
        le=254,
        description="protocol number that marks the hosts' relay-made addresses, neighbours, routes and rules",
    )
    table_min: int = Field(
        default=1000, ge=256, le=0xFFFFFFFE, description="lowest routing table id owned by the relay"
    )
    table_max: int = Field(
        default=1999, ge=256, le=0xFFFFFFFE, description="highest routing table id owned by the relay"
    )
    rule_priority: int = Field(
        default=1000, ge=1, le=32765, description="priority of the per-provider 'fwmark T lookup T' rules"
    )

    @model_validator(mode="after")
    def _relay(self) -> ArpRelay:
        if self.enabled and self.switch is None:
            raise ValueError("an enabled arprelay needs the switch whose ARP table it reads")
        if self.table_min > self.table_max:
            raise ValueError(f"table_min ({self.table_min}) is above table_max ({self.table_max})")
        return self


class Pdu(Strict):
    """A switched PDU the recovery daemon can cycle outlets on (SNMP)."""

    name: Name
    address: IPv4Addr = Field(description="management IPv4 address")
    outlets: int = Field(ge=1, le=96, description="number of outlets")
    snmp_community: Secret = Field(description="SNMP write community (ansible-vault)")


class Pop(Strict):
    """The PoP itself: identity, numbering and the settings every device shares."""

    name: Name = Field(description="short PoP name, e.g. 'fra1'")
    description: Text | None = Field(default=None, description="free text, e.g. the city")
    asn: Asn = Field(description="public AS number the routers announce the anycast aggregates from")
    server_asn: Asn = Field(description="private AS number the servers use toward the routers")
    ranges: Ranges
    bgp: Bgp = Field(default_factory=Bgp)
    nearest_pops: list[NearestPop] = Field(
        default_factory=list, description="existing PoPs to pull the image from, nearest first"
    )
    provisioning: Provisioning
    pdus: list[Pdu] = Field(default_factory=list, description="switched PDUs in the PoP")
    arprelay: ArpRelay = Field(default_factory=ArpRelay)
    weight_min: int = Field(default=1, ge=0, le=65535, description="lowest anycast weight a server may have")
    weight_max: int = Field(default=1000, ge=0, le=65535, description="highest anycast weight a server may have")

    @model_validator(mode="after")
    def _asns(self) -> Pop:
        if self.asn == self.server_asn:
            raise ValueError("server_asn must differ from asn (servers peer with the routers over eBGP)")
        if self.weight_min > self.weight_max:
            raise ValueError(f"weight_min ({self.weight_min}) is above weight_max ({self.weight_max})")
        return self


class PrefixLimit(Strict):
    """Maximum prefixes accepted from a provider before the session is torn down."""

    v4: int = Field(ge=1, le=4294967295, description="IPv4 prefix limit")
    v6: int = Field(ge=1, le=4294967295, description="IPv6 prefix limit")


class Provider(Strict):
    """A transit provider or a peer: one eBGP session per address family, on one router port or, in
    the ARP-relay design, on one port of the relay switch."""

    name: Name
    kind: Literal["transit", "peer"] = Field(description="transit (full table) or peer (their routes only)")
    asn: Asn
    router: Name | None = Field(
        default=None, description="inventory hostname of the router the session lands on (or give switch)"
    )
    port: IfName | None = Field(default=None, description="router interface the provider is cabled to")
    switch: Name | None = Field(
        default=None, description="arprelay: the relay switch the provider is cabled to and the session lands on"
    )
    switch_port: IfName | None = Field(default=None, description="arprelay: that switch's port")
    switch_address_v4: IPv4Iface | None = Field(
        default=None, description="arprelay: the switch's own IPv4 address/prefix on the provider link"
    )
    switch_address_v6: IPv6Iface | None = Field(
        default=None, description="arprelay: the switch's own IPv6 address/prefix on the provider link"
    )
    table: int | None = Field(
        default=None,
        ge=256,
        le=0xFFFFFFFE,
        description="arprelay: the provider's routing table (and firewall mark) on every server, "
        "inside pop.arprelay.table_min-table_max; fixed, so adding a provider renumbers no other",
    )
    address_v4: IPv4Addr | None = Field(default=None, description="provider's IPv4 address on that link")
    address_v6: IPv6Addr | None = Field(default=None, description="provider's IPv6 address on that link")
    password: Secret | None = Field(default=None, description="BGP session password (ansible-vault)")
    prefix_limit: PrefixLimit
    local_preference: int = Field(default=100, ge=0, le=4294967295, description="local preference of its routes")
    ttl_security: bool = Field(
        default=False,
        description="GTSM (RFC 5082): send BGP at TTL 255 and accept this provider's BGP packets only at TTL 255; "
        "both ends must have it, so only with the provider's agreement",
    )

    @model_validator(mode="after")
    def _some_address(self) -> Provider:
        if self.address_v4 is None and self.address_v6 is None:
            raise ValueError("a provider needs address_v4, address_v6 or both")
        if (self.router is None) == (self.switch is None):
            raise ValueError("a provider lands on a router (router, port) or on the relay switch (switch, ...)")
        if self.router is not None and self.port is None:
            raise ValueError("a provider on a router needs the router port it is cabled to (port)")
        if self.switch is not None:
            if self.switch_port is None or self.table is None:
                raise ValueError("a provider on the relay switch needs switch_port and table")
            for fam in ("v4", "v6"):
                if getattr(self, f"address_{fam}") is not None and getattr(self, f"switch_address_{fam}") is None:
                    raise ValueError(f"a provider on the relay switch with address_{fam} needs switch_address_{fam}")
        return self


class CheckBase(Strict):
    # Defaults for sub-second failover: a dead service is withdrawn within about interval_s + the
    # agent's fast recheck (fall - 1 of them), 0.3 s at most; four local checks a second cost nothing.
    interval_s: float = Field(default=0.25, gt=0, le=300, description="seconds between checks")
    timeout_s: float = Field(default=0.2, gt=0, le=60, description="seconds before one check counts as failed")
    rise: int = Field(default=3, ge=1, le=100, description="consecutive passes before the service is up")
    fall: int = Field(default=2, ge=1, le=100, description="consecutive failures before the service is down")

    @model_validator(mode="after")
    def _timeout(self) -> CheckBase:
        if self.timeout_s > self.interval_s:
            raise ValueError(f"timeout_s ({self.timeout_s}) must not exceed interval_s ({self.interval_s})")
        return self


class HttpCheck(CheckBase):
    """GET a URL on the server's own anycast address; healthy on the expected status."""

    type: Literal["http"]
    port: Port = 80
    path: str = Field(default="/", pattern=r"^/")
    host: str | None = Field(default=None, description="Host header to send")
    expect_status: int = Field(default=200, ge=100, le=599)


class TcpCheck(CheckBase):
    """Open a TCP connection; healthy when it is accepted."""

    type: Literal["tcp"]
    port: Port


class DnsCheck(CheckBase):
    """Ask a DNS question over UDP; healthy on an answer with the expected rcode."""

    type: Literal["dns"]
    port: Port = 53
    query: str = Field(min_length=1, description="name to resolve")
    qtype: Literal["A", "AAAA", "SOA", "NS", "TXT"] = "A"
    expect_rcode: Literal["NOERROR", "NXDOMAIN"] = "NOERROR"


class ProcessCheck(CheckBase):
    """Healthy while the service's systemd unit is active."""

    type: Literal["process"]


class ExecCheck(CheckBase):
    """Run a command; healthy on exit status 0."""

    type: Literal["exec"]
    command: list[str] = Field(min_length=1, description="argv, no shell")


Check = Annotated[
    HttpCheck | TcpCheck | DnsCheck | ProcessCheck | ExecCheck,
    Field(discriminator="type", description="how healthd proves the service healthy"),
]


class AnycastService(Strict):
    """A service every server in the PoP may announce, as host routes inside the anycast ranges."""

    name: Name
    description: Text | None = None
    prefixes: list[HostRoute] = Field(min_length=1, description="host routes (/32 or /128) that carry the service")
    unit: str = Field(
        pattern=r"^[A-Za-z0-9@._-]+\.(service|target)$",
        description="systemd unit that provides it (a target for a service run as several units)",
    )
    check: Check
    restart_command: list[str] | None = Field(
        default=None, description="argv to restart it; default: systemctl restart <unit>"
    )


class Interface(Strict):
    """A router or switch L3 interface."""

    name: IfName = Field(description="device interface name, e.g. et-0/0/0 or Ethernet49/1")
    description: Text | None = None
    address_v4: IPv4Iface | None = Field(default=None, description="IPv4 address/prefix-length")
    address_v6: IPv6Iface | None = Field(default=None, description="IPv6 address/prefix-length")
    lan: bool = Field(default=False, description="true on the interface facing the server LAN")
    mtu: int = Field(default=1500, ge=576, le=9216)


class Router(Strict):
    """A PoP router: eBGP to providers, BGP to every server for the anycast host routes."""

    platform: Literal["junos", "bird"]
    model: Text | None = Field(default=None, description="hardware model, for the summary")
    mgmt_address: IPv4Addr = Field(description="management IPv4 address (inside ranges.management_v4)")
    loopback_v4: IPv4Addr
    loopback_v6: IPv6Addr
    router_id: IPv4Addr | None = Field(default=None, description="BGP router id; default: loopback_v4")
    interfaces: list[Interface] = Field(min_length=1)


class SwitchPort(Strict):
    """A physical switch port. `peer` is optional, and checked against the servers' cabling if given."""

    name: IfName = Field(description="e.g. Ethernet1")
    speed: Speed = Field(default=1000, description="port speed in Mb/s")
    peer: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9-]*:[A-Za-z0-9_.-]+$", description="'host:nic' cabled here"
    )
    description: Text | None = None


class Uplink(Strict):
    """A switch port cabled to a router port."""

    port: IfName
    router: Name
    router_port: IfName


class Mlag(Strict):
    """The MLAG domain of an EOS switch pair: the peer link that bundles the ports cabled between the
    two switches, and the peer VLAN the two MLAG agents talk over. Both switches of the pair carry
    one, with the same domain_id and vlan and their two addresses in one /31 or /30."""

    domain_id: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", description="MLAG domain name, the same on both switches"
    )
    peer_link: list[IfName] = Field(
        min_length=1, description="ports cabled to the other switch, bundled into the peer-link port-channel"
    )
    port_channel: int = Field(
        default=2000,
        ge=1,
        le=2000,
        description="number of the peer-link port-channel; server port-channels take 1 up to the number of ports",
    )
    vlan: int = Field(default=4094, ge=2, le=4094, description="peer VLAN, carried on the peer link only")
    address: IPv4Iface = Field(
        description="this switch's address on the peer VLAN, address/31 or /30; the other switch has the other one"
    )

    @field_validator("address")
    @classmethod
    def _point_to_point(cls, v: str) -> str:
        net = ipaddress.ip_interface(v).network
        if net.prefixlen not in (30, 31):
            raise ValueError(f"expected a /31 or /30 (two switches on a point-to-point VLAN), got /{net.prefixlen}")
        return v


class Switch(Strict):
    """A PoP switch: server-facing LACP port-channels derived from the servers' bonds, plus uplinks."""

    platform: Literal["eos", "bird"]
    model: Text | None = None
    mgmt_address: IPv4Addr
    loopback_v4: IPv4Addr | None = None
    lan_address_v4: IPv4Iface | None = Field(
        default=None, description="arprelay: the switch's address on the server LAN (iBGP to servers, the relay)"
    )
    lan_address_v6: IPv6Iface | None = Field(default=None, description="arprelay: the same, IPv6")
    mlag_peer: Name | None = Field(default=None, description="the other switch of an MLAG pair, if any")
    mlag: Mlag | None = Field(
        default=None, description="the MLAG domain; required on an EOS switch with an mlag_peer, EOS only"
    )
    ports: list[SwitchPort] = Field(min_length=1)
    uplinks: list[Uplink] = Field(default_factory=list)
    vlans: dict[str, int] = Field(
        default_factory=lambda: {"external": 100, "internal": 200},
        description="VLAN id per NIC group (external, internal)",
    )

    @field_validator("vlans")
    @classmethod
    def _vlans(cls, v: dict[str, int]) -> dict[str, int]:
        for key, vid in v.items():
            if key not in ("external", "internal"):
                raise ValueError(f"unknown NIC group {key!r} (expected external or internal)")
            if not 1 <= vid <= 4094:
                raise ValueError(f"VLAN id {vid} for {key} is outside 1-4094")
        return v


NicGroup = Literal["external", "internal", "management"]


class Nic(Strict):
    """A server NIC. External and internal NICs are cabled to a switch port and are either bond
    members or, where there is a single port per group (the lab), carry the addresses themselves."""

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,14}$", description="stable interface name set from the MAC")
    mac: Annotated[str, AfterValidator(_unicast_mac)] = Field(
        pattern=MAC_RE, description="lower-case colon-separated unicast MAC address"
    )
    group: NicGroup
    speed: Speed = Field(default=1000, description="link speed in Mb/s")
    queues: int | None = Field(default=None, ge=1, le=256, description="RSS queues; default: as the NIC has")
    switch: Name | None = Field(default=None, description="switch this NIC is cabled to")
    switch_port: IfName | None = Field(default=None, description="port on that switch")
    address_v4: IPv4Iface | None = Field(default=None, description="IPv4 address/prefix on an unbonded NIC")
    address_v6: IPv6Iface | None = Field(default=None, description="IPv6 address/prefix on an unbonded NIC")

    @model_validator(mode="after")
    def _cabling(self) -> Nic:
        if (self.switch is None) != (self.switch_port is None):
            raise ValueError("switch and switch_port go together")
        if self.group != "management" and self.switch is None:
            raise ValueError(f"a {self.group} NIC must say which switch and switch_port it is cabled to")
        return self


class Bond(Strict):
    """An 802.3ad (LACP) bond of NICs of one group."""

    name: str = Field(pattern=r"^[a-z][a-z0-9]{0,14}$")
    group: Literal["external", "internal"]
    members: list[str] = Field(min_length=1, description="NIC names")
    address_v4: IPv4Iface | None = None
    address_v6: IPv6Iface | None = None
    lacp_rate: Literal["fast", "slow"] = "fast"
    hash_policy: Literal["layer2", "layer2+3", "layer3+4"] = "layer3+4"
    miimon_ms: int = Field(default=100, ge=0, le=10000)
    mtu: int = Field(default=1500, ge=576, le=9216)


class CpuLayout(Strict):
    """CPU topology, used to pin NIC queues: external on one socket, internal on the other."""

    sockets: int = Field(ge=1, le=8)
    cores_per_socket: int = Field(ge=1, le=256)
    threads_per_core: int = Field(default=1, ge=1, le=8)


class IrqPlan(Strict):
    """How NIC queue interrupts are spread over the CPUs."""

    external_socket: int = Field(default=0, ge=0, le=7, description="socket serving external NIC queues")
    internal_socket: int = Field(default=1, ge=0, le=7, description="socket serving internal NIC queues")
    queues_per_core: int = Field(default=2, ge=1, le=64)


class Ipmi(Strict):
    """The server's BMC, for power cycling a dead server."""

    address: IPv4Addr
    username: str = Field(pattern=r"^[^\x00-\x20\x7f]+$", max_length=64, description="BMC user (no spaces)")
    password: Secret


class PduOutlet(Strict):
    pdu: Name
    outlet: int = Field(ge=1, le=96)


class Server(Strict):
    """A generic PoP server: runs every service, announces anycast routes with its own weight."""

    model: Text | None = None
    rack: Text | None = None
    nics: list[Nic] = Field(min_length=1)
    bonds: list[Bond] = Field(default_factory=list)
    cpu: CpuLayout | Literal["discover"] = Field(description="CPU topology, or 'discover' to read it at run time")
    irq: IrqPlan = Field(default_factory=IrqPlan)
    ipmi: Ipmi | None = None
    pdu: PduOutlet | None = None
    anycast_weight: int = Field(default=100, description="BGP MED for its anycast routes: lowest preferred")
    services: list[Name] = Field(default_factory=list, description="anycast services this server runs")


class Control(Strict):
    """The PoP's control server: provisioning (PXE, images, call-home) and recovery."""

    mgmt_address: IPv4Addr
    lan_address_v4: IPv4Iface | None = Field(default=None, description="address/prefix on the server LAN")


KINDS = ("router", "switch", "server", "control")
KIND_GROUPS = {"router": "routers", "switch": "switches", "server": "servers", "control": "control"}
KIND_MODELS: dict[str, type[Strict]] = {
    "router": Router,
    "switch": Switch,
    "server": Server,
    "control": Control,
}


class PopVars(Strict):
    """The PoP-wide variables, kept in group_vars/all/."""

    pop: Pop
    providers: list[Provider] = Field(default_factory=list)
    anycast_services: list[AnycastService] = Field(default_factory=list)


def natural_key(text: str) -> list[int | str]:
    """Sort 'srv2' before 'srv10', as operators read them."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]
