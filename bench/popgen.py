"""Generate a production-shaped PoP inventory of N servers (Ansible inventory format).

The shape is the one inventory/examples/fra1 shows, which this module produced:

- two Junos routers (MX204-style ports); each holds one transit session, the first also a private
  peering (PNI); the server LAN is `ae0`, one member port per switch;
- Arista EOS switches in MLAG pairs, one pair per rack: `Ethernet1`-`Ethernet48` at 1 GbE for
  servers, `Ethernet49/1`/`Ethernet50/1` up to the two routers, `Ethernet51/1`-`Ethernet52/1` as the
  MLAG peer-link; 15 servers per pair (45 ports), the rest reserved for the control server or spare;
- servers with six 1 GbE NICs, three external (bond0) and three internal (bond1). Each server uses
  the same three port numbers on both switches of its pair: odd servers put ext0, int0, ext2 on the
  first switch and ext1, int1, int2 on the second, even servers the other way round, so the external
  load is balanced across the pair, each bond survives the loss of either switch, and a bond's
  port-channel gets the same number on both MLAG peers;
- two PDUs per rack, odd servers on the first, even on the second; every sixth server is a warm
  standby (anycast weight 200, the rest 100).

Address plans. Up to 40 servers the inventory uses only the documentation ranges 198.51.100.0/24,
203.0.113.0/24 and 2001:db8::/32 (plan "doc-a", fra1's; "doc-b" is a second, smaller PoP's plan that
does not overlap it). Those ranges hold nothing bigger, so above 40 servers (the benchmark's 1,000)
the "bench" plan takes IPv4 from the RFC 2544 benchmarking range 198.18.0.0/15 and IPv6 from
2001:db8::/32. Such inventories are only ever validated and rendered offline, never brought up:
nothing is configured from them and no traffic is ever sent to their addresses.

Secrets are `{{ vault_* }}` references to group_vars/all/vault.yml, encrypted with the vault password
`example-only` (an example; never use it for anything real).

    python bench/popgen.py --servers 12 --out inventory/examples/fra1 --name fra1
    python bench/popgen.py --servers 6 --out inventory/examples/vie1 --name vie1 --plan doc-b \\
        --nearest fra1=https://images.fra1.pops.example.net/ --nearest ams1=https://images.ams1.pops.example.net/
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import shutil
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SERVERS_PER_PAIR = 15
SERVER_PORTS = 48
EXAMPLE_VAULT_PASSWORD = "example-only"
DEFAULT_NEAREST = (
    ("ams1", "https://images.ams1.pops.example.net/"),
    ("cdg1", "https://images.cdg1.pops.example.net/"),
)


@dataclass(frozen=True)
class AddressPlan:
    """Where every address of a generated PoP comes from.

    Host addresses are `network + offset`; the `*_base` fields are the offsets each kind of device
    starts at, so an operator can read a server's number off any of its addresses.
    """

    name: str
    doc_only: bool  # True: only 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32
    max_servers: int
    mac_prefix: str  # first three octets, locally administered (02:...)
    lan_v4: str
    internal_v4: str
    management_v4: str
    loopback_v4: str
    links_v4: str  # provider /31s, carved in order
    mlag_v4: str  # one /31 per MLAG pair for its peer VLAN, carved in order
    anycast_v4: str
    site_v6: str  # the PoP's /48: ::1:0:0:0/64 LAN, ::2: internal, ::ff: loopbacks, ::f0+i: links
    anycast_v6: str
    # offsets inside lan_v4 / internal_v4
    lan_router_base: int = 1
    lan_control: int = 5
    lan_server_base: int = 10
    # offsets inside management_v4
    mgmt_router_base: int = 2
    mgmt_control: int = 10
    mgmt_switch_base: int = 16
    mgmt_pdu_base: int = 32
    mgmt_ipmi_base: int = 64
    # service host routes inside the anycast ranges (offsets)
    anycast_dns: int = 1
    anycast_http: int = 8


PLANS: dict[str, AddressPlan] = {
    # fra1: 198.51.100.0/25 + 203.0.113.0/25 and .128/27, anycast shared by every PoP
    "doc-a": AddressPlan(
        name="doc-a",
        doc_only=True,
        max_servers=40,
        mac_prefix="02:00:01",
        lan_v4="198.51.100.0/26",
        internal_v4="198.51.100.64/26",
        management_v4="203.0.113.0/25",
        loopback_v4="203.0.113.128/28",
        links_v4="203.0.113.144/28",
        mlag_v4="203.0.113.160/29",
        anycast_v4="203.0.113.192/27",
        site_v6="2001:db8:1::/48",
        anycast_v6="2001:db8:ac::/48",
    ),
    # a second, small PoP beside fra1 without overlapping it (vie1): the remaining /27s and /28s
    "doc-b": AddressPlan(
        name="doc-b",
        doc_only=True,
        max_servers=6,
        mac_prefix="02:00:02",
        lan_v4="198.51.100.128/27",
        internal_v4="198.51.100.160/27",
        management_v4="203.0.113.160/28",
        loopback_v4="203.0.113.176/29",
        links_v4="203.0.113.184/29",
        mlag_v4="198.51.100.252/30",
        anycast_v4="203.0.113.192/27",
        site_v6="2001:db8:2::/48",
        anycast_v6="2001:db8:ac::/48",
        mgmt_router_base=2,
        mgmt_control=4,
        mgmt_switch_base=5,
        mgmt_pdu_base=7,
        mgmt_ipmi_base=8,
    ),
    # RFC 2544 benchmarking range: offline rendering only, never brought up
    "bench": AddressPlan(
        name="bench",
        doc_only=False,
        max_servers=1800,
        mac_prefix="02:00:be",
        lan_v4="198.18.0.0/20",
        internal_v4="198.18.16.0/20",
        management_v4="198.18.32.0/20",
        loopback_v4="198.18.48.0/24",
        links_v4="198.18.49.0/24",
        mlag_v4="198.18.50.0/24",
        anycast_v4="198.19.0.0/24",
        site_v6="2001:db8:be::/48",
        anycast_v6="2001:db8:ac::/48",
        mgmt_pdu_base=512,
        mgmt_ipmi_base=1024,
        anycast_dns=53,
        anycast_http=80,
    ),
}


def plan_for(servers: int, name: str = "auto") -> AddressPlan:
    """The plan to use: doc-a up to 40 servers, the benchmarking plan above."""
    if name == "auto":
        name = "doc-a" if servers <= PLANS["doc-a"].max_servers else "bench"
    plan = PLANS[name]
    if servers > plan.max_servers:
        raise ValueError(f"plan {plan.name!r} holds at most {plan.max_servers} servers, not {servers}")
    return plan


# --- addressing --------------------------------------------------------------------------------


def _host(net: str, offset: int) -> str:
    """network + offset, refusing the network and broadcast addresses and anything outside."""
    network = ipaddress.ip_network(net)
    if not 0 < offset < network.num_addresses - (1 if network.version == 4 else 0):
        raise ValueError(f"offset {offset} does not fit in {net}")
    return str(network.network_address + offset)


def _v6_host(net: str, number: int) -> str:
    """IPv6 host whose last group reads like the IPv4 offset: 10 -> ::10 (0x10), as operators expect."""
    return str(ipaddress.ip_network(net).network_address + int(str(number), 16))


def _subnet64(site: str, index: int) -> str:
    base = ipaddress.ip_network(site)
    return str(ipaddress.ip_network((int(base.network_address) + (index << 64), 64)))


@dataclass
class Layout:
    """Names and numbers of one generated PoP, computed once and shared by every file writer."""

    name: str
    servers: int
    routers: int
    plan: AddressPlan
    nearest: list[tuple[str, str]]
    command: str = ""
    width: int = field(init=False)
    pairs: int = field(init=False)

    def __post_init__(self) -> None:
        self.width = max(2, len(str(self.servers)))
        self.pairs = max(1, -(-self.servers // SERVERS_PER_PAIR))

    # names
    def router(self, i: int) -> str:
        return f"{self.name}-rtr{i:02d}"

    def switch(self, j: int) -> str:
        return f"{self.name}-sw{j:0{max(2, len(str(2 * self.pairs)))}d}"

    def server(self, k: int) -> str:
        return f"{self.name}-srv{k:0{self.width}d}"

    def pdu(self, j: int) -> str:
        return f"{self.name}-pdu{j:0{max(2, len(str(2 * self.pairs)))}d}"

    @property
    def control(self) -> str:
        return f"{self.name}-ctl01"

    # v6 subnets of the site /48
    @property
    def lan_v6(self) -> str:
        return _subnet64(self.plan.site_v6, 1)

    @property
    def internal_v6(self) -> str:
        return _subnet64(self.plan.site_v6, 2)

    @property
    def loopback_v6(self) -> str:
        return _subnet64(self.plan.site_v6, 0xFF)

    def link_v6(self, i: int) -> str:
        return _subnet64(self.plan.site_v6, 0xF0 + i)

    # router ports
    def router_member_port(self, j: int) -> str:
        """ae0 member toward switch j (0-based): MX204 SFP+ ports while they last, then line cards."""
        if 2 * self.pairs <= 6:
            return f"xe-0/1/{j}"
        return f"xe-{1 + j // 48}/{(j // 12) % 4}/{j % 12}"

    @property
    def router_model(self) -> str:
        return "MX204" if 2 * self.pairs <= 6 else "MX10008"

    # servers
    def pair_of(self, k: int) -> int:
        return (k - 1) // SERVERS_PER_PAIR

    def cabling(self, k: int) -> dict[str, tuple[str, str]]:
        """NIC -> (switch, port) for server k (1-based); see the module docstring for the pattern."""
        pair = self.pair_of(k)
        base = 3 * ((k - 1) % SERVERS_PER_PAIR)
        first, second = self.switch(2 * pair + 1), self.switch(2 * pair + 2)
        if k % 2 == 0:
            first, second = second, first
        return {
            "ext0": (first, f"Ethernet{base + 1}"),
            "ext1": (second, f"Ethernet{base + 1}"),
            "ext2": (first, f"Ethernet{base + 3}"),
            "int0": (first, f"Ethernet{base + 2}"),
            "int1": (second, f"Ethernet{base + 2}"),
            "int2": (second, f"Ethernet{base + 3}"),
        }

    def weight(self, k: int) -> int:
        return 200 if k % 6 == 0 else 100

    def providers(self) -> list[ProviderSpec]:
        """Two transits on different routers (both on rtr01 if there is only one), a PNI on rtr01."""
        second = 2 if self.routers > 1 else 1
        return [
            ProviderSpec(
                "transit-a", "transit", 64501, 1, "et-0/0/0", 1200000, 300000, 100, "transit A (full table), 100G"
            ),
            ProviderSpec(
                "transit-b",
                "transit",
                65537,
                second,
                "et-0/0/0" if second == 2 else "et-0/0/1",
                1200000,
                300000,
                100,
                "transit B (full table), 100G",
            ),
            ProviderSpec(
                "pni-isp-a", "peer", 64502, 1, "xe-0/1/7", 2000, 500, 200, "private peering with an eyeball ISP, 10G"
            ),
        ]

    def link_v4(self, n: int) -> tuple[str, str]:
        """(router, provider) addresses of the n-th provider /31."""
        net = ipaddress.ip_network(self.plan.links_v4)
        if 2 * n + 1 >= net.num_addresses:
            raise ValueError(f"no room for provider link {n} in {net}")
        return str(net.network_address + 2 * n), str(net.network_address + 2 * n + 1)


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    kind: str
    asn: int
    router: int  # 1-based router number
    port: str
    limit_v4: int
    limit_v6: int
    local_preference: int
    what: str

    @property
    def vault_var(self) -> str:
        return "vault_bgp_" + self.name.replace("-", "_")


# --- writers -----------------------------------------------------------------------------------

HEADER = "# Generated by bench/popgen.py (the command is in hosts.yml); edited by hand from here on.\n"


def _command_header(args: str) -> str:
    """The full generating command, wrapped as a shell command an operator can paste."""
    lines = textwrap.wrap(f"python bench/popgen.py {args}", width=110, break_on_hyphens=False)
    body = " \\\n#     ".join(lines)
    return f"# Generated by bench/popgen.py, then reviewed; edited by hand from here on:\n#   {body}\n"


def _hosts_yml(lay: Layout, header: str) -> str:
    p = lay.plan
    out = ["---", _command_header(lay.command).rstrip("\n")]
    out += [
        f"# {lay.name}: {lay.routers} routers, {2 * lay.pairs} switches ({lay.pairs} MLAG pair"
        f"{'s' if lay.pairs > 1 else ''}), {lay.servers} servers and the control server.",
        "# Routers, switches, PDUs and BMCs are reached over the out-of-band management network",
        f"# ({p.management_v4}). Servers have no management port (all six NICs carry traffic): Ansible",
        f"# reaches them over the server LAN from {lay.control}, which sits on it.",
        "all:",
        "  vars:",
        "    ansible_user: edgepop",
        "  children:",
        "    routers:",
        "      hosts:",
    ]
    for i in range(1, lay.routers + 1):
        address = _host(p.management_v4, p.mgmt_router_base + i - 1)
        out += [f"        {lay.router(i)}:", f"          ansible_host: {address}"]
    out += ["    switches:", "      hosts:"]
    for j in range(1, 2 * lay.pairs + 1):
        address = _host(p.management_v4, p.mgmt_switch_base + j - 1)
        out += [f"        {lay.switch(j)}:", f"          ansible_host: {address}"]
    out += ["    servers:", "      vars:", "        ansible_become: true", "      hosts:"]
    for k in range(1, lay.servers + 1):
        out += [f"        {lay.server(k)}:", f"          ansible_host: {_host(p.lan_v4, p.lan_server_base + k)}"]
    out += [
        "    control:",
        "      vars:",
        "        ansible_become: true",
        "      hosts:",
        f"        {lay.control}:",
        f"          ansible_host: {_host(p.management_v4, p.mgmt_control)}",
    ]
    return "\n".join(out) + "\n"


def _pop_yml(lay: Layout, header: str) -> str:
    p = lay.plan
    image_version = "2025.06.1"
    image_sha = hashlib.sha256(f"edgepop example image {image_version}".encode()).hexdigest()
    lines = [
        "---",
        header.rstrip("\n"),
        "# The PoP itself: identity, address plan and what every device shares.",
        "pop:",
        f"  name: {lay.name}",
        f"  description: {_description(lay.name)}",
        "  # The CDN's public AS (the same at every PoP) and the private AS all servers share toward",
        "  # the routers.",
        "  asn: 64496",
        "  server_asn: 4200000001",
        "  ranges:",
    ]
    if p.doc_only:
        lines += [
            "    # Documentation ranges only (198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32). IPv4 is tight,",
            f"    # so each range is sized for this plan's ceiling of {p.max_servers} servers, and no larger.",
        ]
    else:
        lines += [
            "    # IPv4 from the RFC 2544 benchmarking range 198.18.0.0/15: this inventory is only ever",
            "    # validated and rendered offline (bench/), never brought up, and no traffic goes to it.",
        ]
    lines += [
        f"    lan_v4: {p.lan_v4} # routers +{p.lan_router_base}, control +{p.lan_control}, "
        f"server N +{p.lan_server_base}+N (bond0)",
        f'    lan_v6: "{lay.lan_v6}"',
        f"    internal_v4: {p.internal_v4} # server <-> server (bond1), server N +{p.lan_server_base}+N",
        f'    internal_v6: "{lay.internal_v6}"',
        f"    loopback_v4: {p.loopback_v4} # routers first, then switches",
        f'    loopback_v6: "{lay.loopback_v6}"',
        "    # Out of band: device management ports, BMCs (IPMI) and PDUs.",
        f"    # routers +{p.mgmt_router_base}, control +{p.mgmt_control}, switches +{p.mgmt_switch_base}, "
        f"PDUs +{p.mgmt_pdu_base}, BMC of server N +{p.mgmt_ipmi_base}+N",
        f"    management_v4: {p.management_v4}",
        f"    # Provider links are /31s from {p.links_v4} and /127s from {_subnet64(p.site_v6, 0xF0)},",
        "    # the next /64 per link; the model has no range for them, so they sit outside these.",
        "    # The anycast aggregates are the same at every PoP; that is what makes them anycast.",
        f"    anycast_v4: [{p.anycast_v4}]",
        f'    anycast_v6: ["{p.anycast_v6}"]',
        "  bgp:",
        "    # BFD 100 ms x 3 pulls a dead server's routes in ~0.3 s; 20 ms flaps on loaded servers.",
        "    bfd_interval_ms: 100",
        "    bfd_multiplier: 3",
        "    hold_time: 9",
        "    keepalive: 3",
        "  # Anycast weights are the MED of a server's routes: lowest wins, equal ones share (ECMP).",
        "  weight_min: 1",
        "  weight_max: 1000",
        "  # Bare servers boot this image; it is pulled once from the first reachable PoP below,",
        "  # checked against image_sha256, and then served locally by the control server.",
        "  nearest_pops:",
    ]
    for name, url in lay.nearest:
        lines.append(f'    - {{ name: {name}, url: "{url}" }}')
    ctl_lan = _host(p.lan_v4, p.lan_control)
    lines += [
        "  provisioning:",
        f'    image_version: "{image_version}"',
        f'    image_sha256: "{image_sha}" # sha256 of the image manifest',
        "    # Servers call home over the server LAN: they have no management port.",
        f"    callhome_url: http://{ctl_lan}:8080/callhome",
        '    callhome_token: "{{ vault_callhome_token }}"',
        "  # Switched PDUs, two per rack; recoveryd cycles a server's outlet when IPMI cannot help.",
        "  pdus:",
    ]
    for j in range(1, 2 * lay.pairs + 1):
        lines += [
            f"    - name: {lay.pdu(j)}",
            f"      address: {_host(p.management_v4, p.mgmt_pdu_base + j - 1)}",
            "      outlets: 24",
            '      snmp_community: "{{ vault_pdu_community }}"',
        ]
    return "\n".join(lines) + "\n"


def _description(name: str) -> str:
    cities = {"fra": "Frankfurt", "vie": "Vienna", "ams": "Amsterdam", "cdg": "Paris"}
    city = cities.get(name[:3])
    return f"{city} ({name})" if city else f"Generated PoP {name}"


def _providers_yml(lay: Layout, header: str) -> str:
    lines = [
        "---",
        header.rstrip("\n"),
        "# Transit providers and peers: one eBGP session per address family, each on its own router",
        "# port. Transits send full tables (hence the limits); the peer only its own routes, and wins",
        "# over transit by local preference.",
        "providers:",
    ]
    for i, prov in enumerate(lay.providers()):
        v4_router, v4_peer = lay.link_v4(i)
        v6_peer = ipaddress.ip_network(lay.link_v6(i)).network_address + 1
        lines += [
            f"  # {prov.what}; link {v4_router}/31",
            f"  - name: {prov.name}",
            f"    kind: {prov.kind}",
            f"    asn: {prov.asn}",
            f"    router: {lay.router(prov.router)}",
            f"    port: {prov.port}",
            f"    address_v4: {v4_peer}",
            f'    address_v6: "{v6_peer}"',
            f'    password: "{{{{ {prov.vault_var} }}}}"',
            f"    prefix_limit: {{ v4: {prov.limit_v4}, v6: {prov.limit_v6} }}",
            f"    local_preference: {prov.local_preference}",
        ]
    return "\n".join(lines) + "\n"


def _services_yml(lay: Layout, header: str) -> str:
    p = lay.plan
    any6 = ipaddress.ip_network(p.anycast_v6).network_address
    dns4 = _host(p.anycast_v4, p.anycast_dns)
    http4 = _host(p.anycast_v4, p.anycast_http)
    return f"""---
{header.rstrip()}
# Anycast services: every server that runs one announces its host routes with its own weight;
# healthd withdraws them when the check fails `fall` times and re-announces after `rise` passes.
anycast_services:
  - name: dns
    description: Authoritative DNS for the CDN's zones
    prefixes: [{dns4}/32, "{any6 + 0x53}/128"]
    unit: knot.service
    check:
      # An SOA question for a zone the servers are authoritative for, on the anycast address itself.
      type: dns
      port: 53
      query: cdn.example.net
      qtype: SOA
      expect_rcode: NOERROR
      interval_s: 2.0
      timeout_s: 1.0
      rise: 3
      fall: 2
  - name: http
    description: Frontline HTTP proxy and cache
    prefixes: [{http4}/32, "{any6 + 0x80}/128"]
    unit: nginx.service
    check:
      # The proxy answers /healthz itself (no origin fetch), so a slow origin never withdraws a PoP.
      type: http
      port: 80
      path: /healthz
      host: health.cdn.example.net
      expect_status: 200
      interval_s: 2.0
      timeout_s: 1.0
      rise: 3
      fall: 2
"""


VAULT_VARS = ("callhome_token", "ipmi_password", "pdu_community", "bgp_transit_a", "bgp_transit_b", "bgp_pni_isp_a")


def _encrypt(values: dict[str, str], password: str) -> dict[str, str]:
    """Ciphertext as `ansible-vault encrypt_string` writes it (ansible is a dependency of the project)."""
    from ansible.constants import DEFAULT_VAULT_ID_MATCH  # type: ignore[import-untyped]
    from ansible.parsing.vault import VaultLib, VaultSecret  # type: ignore[import-untyped]

    vault = VaultLib([(DEFAULT_VAULT_ID_MATCH, VaultSecret(password.encode()))])
    return {k: vault.encrypt(v.encode()).decode() for k, v in values.items()}


def _vault_yml(lay: Layout, header: str) -> str:
    values = {f"vault_{v}": f"example-only-{lay.name}-{v.replace('_', '-')}" for v in VAULT_VARS}
    lines = [
        "---",
        header.rstrip("\n"),
        "# Secrets, each an inline vault value the model's '{{ vault_* }}' references point at.",
        f"# The vault password of this example is `{EXAMPLE_VAULT_PASSWORD}`: it exists only so the example",
        "# decrypts; never use it, or these values, for anything real. A real PoP keeps its vault",
        "# password out of the repository. To change one value:",
        "#   ansible-vault encrypt_string --vault-password-file FILE --name vault_ipmi_password 'VALUE'",
    ]
    for name, text in _encrypt(values, EXAMPLE_VAULT_PASSWORD).items():
        lines.append(f"{name}: !vault |")
        lines += [f"  {line}" for line in text.splitlines()]
    return "\n".join(lines) + "\n"


def _router_yml(lay: Layout, i: int, header: str) -> str:
    p = lay.plan
    name = lay.router(i)
    provs = [(n, prov) for n, prov in enumerate(lay.providers()) if prov.router == i]
    lines = [
        "---",
        header.rstrip("\n"),
        f"# {name}: eBGP to its providers, BGP to every server on the LAN (ae0).",
        "router:",
        "  platform: junos",
        f"  model: {lay.router_model}",
        f"  mgmt_address: {_host(p.management_v4, p.mgmt_router_base + i - 1)} # fxp0, out of band",
        f"  loopback_v4: {_host(p.loopback_v4, i)}",
        f'  loopback_v6: "{_v6_host(lay.loopback_v6, i)}"',
        "  interfaces:",
    ]
    for n, prov in provs:
        v4, _ = lay.link_v4(n)
        v6 = ipaddress.ip_network(lay.link_v6(n)).network_address
        lines += [
            f"    - name: {prov.port}",
            f"      description: {prov.name} AS{prov.asn}",
            f"      address_v4: {v4}/31",
            f'      address_v6: "{v6}/127"',
        ]
    lines += [
        "    # ae0 (802.3ad toward the MLAG pairs) has one member port per switch. The model has no LAG",
        "    # membership field yet: it is recorded here in the descriptions and in the switches' uplinks.",
    ]
    for j in range(1, 2 * lay.pairs + 1):
        port = "Ethernet49/1" if i == 1 else "Ethernet50/1"
        lines += [
            f"    - name: {lay.router_member_port(j - 1)}",
            f"      description: ae0 member, {lay.switch(j)} {port}",
        ]
    lines += [
        "    - name: ae0",
        "      description: server LAN (external VLAN of every switch pair)",
        "      lan: true",
        f"      address_v4: {_host(p.lan_v4, p.lan_router_base + i - 1)}/{ipaddress.ip_network(p.lan_v4).prefixlen}",
        f'      address_v6: "{_v6_host(lay.lan_v6, p.lan_router_base + i - 1)}/64"',
    ]
    return "\n".join(lines) + "\n"


def _switch_yml(lay: Layout, j: int, header: str) -> str:
    p = lay.plan
    name = lay.switch(j)
    pair = (j - 1) // 2
    peer = lay.switch(j + 1 if j % 2 else j - 1)
    mlag_net = ipaddress.ip_network(p.mlag_v4)
    if 2 * pair + 1 >= mlag_net.num_addresses:
        raise ValueError(f"no room for the peer VLAN of MLAG pair {pair + 1} in {mlag_net}")
    mlag_net = ipaddress.ip_network(f"{mlag_net.network_address + 2 * pair}/31")
    mlag_address = f"{mlag_net.network_address + (j - 1) % 2}/31"
    cabled: dict[str, str] = {}
    first_server = pair * SERVERS_PER_PAIR + 1
    for k in range(first_server, min(lay.servers, first_server + SERVERS_PER_PAIR - 1) + 1):
        for nic, (sw, port) in lay.cabling(k).items():
            if sw == name:
                cabled[port] = f"{lay.server(k)}:{nic}"
    lines = [
        "---",
        header.rstrip("\n"),
        f"# {name}: MLAG with {peer} (rack r{pair + 1:02d}). Server bonds span the pair; the port-channel",
        "# number of a bond is the port number of its first member, the same on both switches.",
        "switch:",
        "  platform: eos",
        "  model: DCS-7050TX-64",
        f"  mgmt_address: {_host(p.management_v4, p.mgmt_switch_base + j - 1)} # Management1, out of band",
        f"  loopback_v4: {_host(p.loopback_v4, lay.routers + j)}",
        f"  mlag_peer: {peer}",
        f"  # MLAG domain: the peer link on 51/1-52/1, the peer VLAN 4094 on {mlag_net} (outside the PoP's",
        "  # ranges: it never leaves the pair)",
        "  mlag:",
        f"    domain_id: {lay.name}-mlag{'' if pair == 0 else pair + 1}",
        "    peer_link: [Ethernet51/1, Ethernet52/1]",
        f"    address: {mlag_address}",
        "  vlans: { external: 100, internal: 200 }",
        "  ports:",
        "    # 10GBASE-T ports running at 1 GbE to the servers; peer is checked against the servers' cabling",
    ]
    for n in range(1, SERVER_PORTS + 1):
        port = f"Ethernet{n}"
        if port in cabled:
            lines.append(f'    - {{ name: {port}, speed: 1000, peer: "{cabled[port]}" }}')
        elif pair == 0 and n == 3 * SERVERS_PER_PAIR + 1:
            lines.append(f"    - {{ name: {port}, speed: 1000, description: {lay.control} LAN }}")
        else:
            lines.append(f"    - {{ name: {port}, speed: 1000, description: spare }}")
    lines += [
        "    # QSFP+ ports: lane 1 of 49 and 50 (4x10G breakout) up to the routers, 51-52 the MLAG peer-link",
        f"    - {{ name: Ethernet49/1, speed: 10000, description: {lay.router(1)} {lay.router_member_port(j - 1)} }}",
    ]
    if lay.routers > 1:
        member = lay.router_member_port(j - 1)
        lines.append(f"    - {{ name: Ethernet50/1, speed: 10000, description: {lay.router(2)} {member} }}")
    lines += [
        f"    - {{ name: Ethernet51/1, speed: 40000, description: MLAG peer-link to {peer} }}",
        f"    - {{ name: Ethernet52/1, speed: 40000, description: MLAG peer-link to {peer} }}",
        "  uplinks:",
        f"    - {{ port: Ethernet49/1, router: {lay.router(1)}, router_port: {lay.router_member_port(j - 1)} }}",
    ]
    if lay.routers > 1:
        lines.append(
            f"    - {{ port: Ethernet50/1, router: {lay.router(2)}, router_port: {lay.router_member_port(j - 1)} }}"
        )
    return "\n".join(lines) + "\n"


def _server_yml(lay: Layout, k: int, header: str) -> str:
    p = lay.plan
    host = p.lan_server_base + k
    prefix = f"{p.mac_prefix}:{k >> 8:02x}:{k & 0xFF:02x}"
    cab = lay.cabling(k)
    lan_len = ipaddress.ip_network(p.lan_v4).prefixlen
    int_len = ipaddress.ip_network(p.internal_v4).prefixlen
    pair = lay.pair_of(k)
    pdu = lay.pdu(2 * pair + 1 + (k + 1) % 2)
    outlet = ((k - 1) % SERVERS_PER_PAIR) // 2 + 1
    weight = lay.weight(k)
    lines = [
        "---",
        header.rstrip("\n"),
        "server:",
        '  model: "2U, 2x Xeon E5-2630, 6x 1GbE"',
        f"  rack: r{pair + 1:02d}",
        "  # Six 1 GbE ports: three external (bond0, toward the routers), three internal (bond1,",
        "  # server to server). Names are pinned to the MACs by the image at boot.",
        "  nics:",
    ]
    for n, nic in enumerate(("ext0", "ext1", "ext2", "int0", "int1", "int2")):
        group = "external" if nic.startswith("ext") else "internal"
        sw, port = cab[nic]
        lines.append(
            f'    - {{ name: {nic}, mac: "{prefix}:{n:02x}", group: {group}, speed: 1000, queues: 8, '
            f"switch: {sw}, switch_port: {port} }}"
        )
    lines += [
        "  bonds:",
        "    - name: bond0",
        "      group: external",
        "      members: [ext0, ext1, ext2]",
        f"      address_v4: {_host(p.lan_v4, host)}/{lan_len}",
        f'      address_v6: "{_v6_host(lay.lan_v6, host)}/64"',
        "    - name: bond1",
        "      group: internal",
        "      members: [int0, int1, int2]",
        f"      address_v4: {_host(p.internal_v4, host)}/{int_len}",
        f'      address_v6: "{_v6_host(lay.internal_v6, host)}/64"',
        "  # 2 sockets x 6 cores x 2 threads: external queues (3 x 8) on socket 0, internal on socket 1.",
        "  cpu: { sockets: 2, cores_per_socket: 6, threads_per_core: 2 }",
        "  irq: { external_socket: 0, internal_socket: 1, queues_per_core: 2 }",
        "  ipmi:",
        f"    address: {_host(p.management_v4, p.mgmt_ipmi_base + k)}",
        "    username: recovery",
        '    password: "{{ vault_ipmi_password }}"',
        f"  pdu: {{ pdu: {pdu}, outlet: {outlet} }}",
    ]
    if weight != 100:
        lines.append("  # Warm standby: MED 200 loses to the 100s, so it serves only when they withdraw.")
    lines += [f"  anycast_weight: {weight}", "  services: [dns, http]"]
    return "\n".join(lines) + "\n"


def _control_yml(lay: Layout, header: str) -> str:
    p = lay.plan
    return (
        f"---\n{header}"
        f"# {lay.control}: PXE/iPXE and image server, call-home endpoint, recoveryd (IPMI, then PDU).\n"
        f"# Cabled to {lay.switch(1)} and {lay.switch(2)} {f'Ethernet{3 * SERVERS_PER_PAIR + 1}'} (see their port "
        "descriptions) and to the management network.\n"
        "control:\n"
        f"  mgmt_address: {_host(p.management_v4, p.mgmt_control)}\n"
        f"  lan_address_v4: {_host(p.lan_v4, p.lan_control)}/{ipaddress.ip_network(p.lan_v4).prefixlen}\n"
    )


def generate(
    out: Path,
    servers: int,
    name: str = "fra1",
    *,
    plan: str = "auto",
    routers: int = 2,
    nearest: Sequence[tuple[str, str]] = DEFAULT_NEAREST,
    command: str | None = None,
) -> Path:
    """Write a complete inventory for `servers` servers into `out` (replacing what is there)."""
    if servers < 1:
        raise ValueError("a PoP needs at least one server")
    if routers not in (1, 2):
        raise ValueError("a generated PoP has one or two routers")
    lay = Layout(name=name, servers=servers, routers=routers, plan=plan_for(servers, plan), nearest=list(nearest))
    lay.command = command or f"--servers {servers} --name {name} --out {out}"
    header = HEADER
    if out.exists():
        shutil.rmtree(out)
    gv = out / "group_vars" / "all"
    hv = out / "host_vars"
    gv.mkdir(parents=True)
    hv.mkdir()
    (out / "hosts.yml").write_text(_hosts_yml(lay, header))
    (gv / "pop.yml").write_text(_pop_yml(lay, header))
    (gv / "providers.yml").write_text(_providers_yml(lay, header))
    (gv / "services.yml").write_text(_services_yml(lay, header))
    (gv / "vault.yml").write_text(_vault_yml(lay, header))
    for i in range(1, routers + 1):
        (hv / f"{lay.router(i)}.yml").write_text(_router_yml(lay, i, header))
    for j in range(1, 2 * lay.pairs + 1):
        (hv / f"{lay.switch(j)}.yml").write_text(_switch_yml(lay, j, header))
    for k in range(1, servers + 1):
        (hv / f"{lay.server(k)}.yml").write_text(_server_yml(lay, k, header))
    (hv / f"{lay.control}.yml").write_text(_control_yml(lay, header))
    return out


def _nearest(text: str) -> tuple[str, str]:
    name, sep, url = text.partition("=")
    if not sep or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected NAME=URL, got {text!r}")
    return name, url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate a production-shaped PoP inventory of N servers.")
    parser.add_argument("--servers", type=int, required=True, help="number of servers")
    parser.add_argument("--out", type=Path, required=True, help="inventory directory to (re)write")
    parser.add_argument("--name", default="fra1", help="PoP name (default fra1)")
    parser.add_argument(
        "--plan",
        choices=["auto", *PLANS],
        default="auto",
        help="address plan (auto: doc-a up to 40 servers, else bench)",
    )
    parser.add_argument("--routers", type=int, choices=[1, 2], default=2)
    parser.add_argument(
        "--nearest",
        type=_nearest,
        action="append",
        help="NAME=URL of a PoP to pull the image from, nearest first (repeatable)",
    )
    args = parser.parse_args(argv)
    shown = " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    try:
        generate(
            args.out,
            args.servers,
            args.name,
            plan=args.plan,
            routers=args.routers,
            nearest=args.nearest or DEFAULT_NEAREST,
            command=shown,
        )
    except ValueError as exc:
        print(f"popgen: {exc}", file=sys.stderr)
        return 64
    print(f"popgen: wrote {args.out} ({args.servers} servers)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
