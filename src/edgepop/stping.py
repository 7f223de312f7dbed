"""`edgepop st-ping DEST`: ping one destination over every provider and show the RTT through each.

On a server of the ARP-relay design every provider has a routing table of its own (default via the
provider) and a rule `fwmark T lookup T`; a probe sent with the socket mark T leaves through that
provider whatever BGP's best path is. The providers come from the arprelay host agent's state file
(the last mapping it applied). Probes are ICMP echo requests on a raw socket with SO_MARK, so it
needs root (CAP_NET_RAW and CAP_NET_ADMIN). Exit status 0 when some provider answered, 1 when none
did, 66 when the host has no provider next hops.
"""

from __future__ import annotations

import ipaddress
import json
import os
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_STATE = "/var/lib/edgepop/arprelay.json"
SO_MARK = getattr(socket, "SO_MARK", 36)


@dataclass(frozen=True)
class Route:
    provider: str
    address: str
    mac: str
    table: int


@dataclass
class Probe:
    route: Route
    sent: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def received(self) -> int:
        return len(self.rtts_ms)


class StPingError(Exception):
    """No providers to probe, or a destination that is not an address; the message says which."""


def routes_from_state(path: str, family: int) -> list[Route]:
    """The providers of the state file whose next hop is of the destination's family."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StPingError(f"{path}: no such file (is the arprelay host agent running?)") from None
    except (OSError, ValueError) as exc:
        raise StPingError(f"{path}: unreadable: {exc}") from None
    routes = []
    for n in doc.get("nexthops", []):
        if ipaddress.ip_address(n["address"]).version == family:
            routes.append(Route(n["provider"], n["address"], n["mac"], int(n["table"])))
    return sorted(routes, key=lambda r: (r.provider, r.table))


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(v6: bool, ident: int, seq: int, payload: bytes) -> bytes:
    kind = 128 if v6 else 8
    header = struct.pack("!BBHHH", kind, 0, 0, ident, seq)
    if v6:  # the kernel fills in the ICMPv6 checksum (it covers the IPv6 pseudo-header)
        return header + payload
    return struct.pack("!BBHHH", kind, 0, _checksum(header + payload), ident, seq) + payload


def parse_reply(v6: bool, packet: bytes) -> tuple[int, int] | None:
    """(ident, seq) of an echo reply, None for anything else. IPv4 raw sockets get the IP header."""
    if not v6:
        if len(packet) < 20:
            return None
        packet = packet[(packet[0] & 0x0F) * 4 :]
    if len(packet) < 8:
        return None
    kind, _code, _sum, ident, seq = struct.unpack("!BBHHH", packet[:8])
    if kind != (129 if v6 else 0):
        return None
    return ident, seq


def ping_over(route: Route, dest: str, count: int, timeout: float, interval: float) -> Probe:
    """`count` echo requests to `dest` marked with the provider's table; RTT of each reply."""
    v6 = ":" in dest
    probe = Probe(route)
    ident = (os.getpid() ^ route.table) & 0xFFFF
    try:
        family, proto = (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
        sock = socket.socket(family, socket.SOCK_RAW, proto)
    except PermissionError:
        raise StPingError("raw sockets need root (CAP_NET_RAW)") from None
    with sock:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_MARK, route.table)
        except PermissionError:
            raise StPingError("marking packets needs root (CAP_NET_ADMIN)") from None
        for seq in range(1, count + 1):
            sent_at = time.monotonic()
            try:
                sock.sendto(echo_request(v6, ident, seq, b"edgepop st-ping"), (dest, 0))
            except OSError as exc:
                probe.error = exc.strerror or str(exc)
                break
            probe.sent += 1
            deadline = sent_at + timeout
            while (left := deadline - time.monotonic()) > 0:
                ready, _, _ = select.select([sock], [], [], left)
                if not ready:
                    break
                if parse_reply(v6, sock.recv(4096)) == (ident, seq):
                    probe.rtts_ms.append((time.monotonic() - sent_at) * 1000)
                    break
            pause = interval - (time.monotonic() - sent_at)
            if seq < count and pause > 0:
                time.sleep(pause)
    return probe


def format_table(dest: str, probes: list[Probe]) -> str:
    rows = [["provider", "table", "next hop", "MAC", "sent", "recv", "loss", "min ms", "avg ms", "max ms"]]
    for p in probes:
        loss = "-" if not p.sent else f"{100 * (p.sent - p.received) // p.sent}%"
        if p.rtts_ms:
            stats = [f"{min(p.rtts_ms):.3f}", f"{sum(p.rtts_ms) / len(p.rtts_ms):.3f}", f"{max(p.rtts_ms):.3f}"]
        else:
            stats = ["-", "-", p.error or "-"]
        rows.append([p.route.provider, str(p.route.table), p.route.address, p.route.mac, str(p.sent),
                     str(p.received), loss, *stats])  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"st-ping {dest} over {len(probes)} provider{'s' if len(probes) != 1 else ''}"]
    for r in rows:
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines) + "\n"


def st_ping(
    dest: str,
    *,
    state_file: str = DEFAULT_STATE,
    count: int = 3,
    timeout: float = 1.0,
    interval: float = 0.2,
    providers: list[str] | None = None,
    pinger: Callable[[Route, str, int, float, float], Probe] | None = None,
) -> list[Probe]:
    probe = pinger or ping_over
    try:
        family = ipaddress.ip_address(dest).version
    except ValueError:
        raise StPingError(f"{dest!r} is not an IP address") from None
    routes = routes_from_state(state_file, family)
    if providers:
        routes = [r for r in routes if r.provider in providers]
    if not routes:
        raise StPingError(f"no IPv{family} provider next hops in {state_file}")
    return [probe(r, dest, count, timeout, interval) for r in routes]


def register(sub: Any) -> None:
    p = sub.add_parser("st-ping", help="ping one destination over every provider (ARP-relay servers)")
    p.add_argument("destination", help="IPv4 or IPv6 address")
    p.add_argument("-c", "--count", type=int, default=3, help="probes per provider (default 3)")
    p.add_argument("-W", "--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    p.add_argument("-i", "--interval", type=float, default=0.2, help="seconds between probes")
    p.add_argument("-p", "--provider", action="append", help="only this provider (repeatable)")
    p.add_argument("--state", default=DEFAULT_STATE, help=f"the arprelay host agent's state file ({DEFAULT_STATE})")
    p.set_defaults(func=_cmd)


def _cmd(args: Any) -> int:
    import sys

    if args.count < 1 or args.timeout <= 0 or args.interval < 0:
        print("st-ping: --count must be at least 1, --timeout above 0, --interval not negative", file=sys.stderr)
        return 64
    try:
        probes = st_ping(
            args.destination,
            state_file=args.state,
            count=args.count,
            timeout=args.timeout,
            interval=args.interval,
            providers=args.provider,
        )
    except StPingError as exc:
        print(f"st-ping: {exc}", file=sys.stderr)
        return 66 if "provider next hops" in str(exc) or "no such file" in str(exc) else 64
    sys.stdout.write(format_table(args.destination, probes))
    return 0 if any(p.received for p in probes) else 1
