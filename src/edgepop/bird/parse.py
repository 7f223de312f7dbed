"""Parse `birdc` output into plain data, for the verify playbook and the tests.

Only the stable, documented shape of BIRD 2's tables is relied on: a header line, then one row per
protocol with whitespace-separated columns and the free-text info last.
"""

from __future__ import annotations

from typing import Any


def protocols(text: str) -> list[dict[str, str]]:
    """Rows of `birdc show protocols`: name, proto, table, state, since, info."""
    rows: list[dict[str, str]] = []
    seen_header = False
    for line in text.splitlines():
        if not seen_header:
            seen_header = line.startswith("Name ") and "Proto" in line
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        info = parts[5].strip() if len(parts) > 5 else ""
        rows.append(
            {"name": parts[0], "proto": parts[1], "table": parts[2], "state": parts[3], "since": parts[4], "info": info}
        )
    return rows


def protocol_states(text: str) -> dict[str, str]:
    """Protocol name -> state (up, down, start) from `birdc show protocols`."""
    return {r["name"]: r["state"] for r in protocols(text)}


def bgp_not_established(text: str) -> list[str]:
    """Names of BGP protocols that are not Established (empty when all are)."""
    return [r["name"] for r in protocols(text) if r["proto"] == "BGP" and not r["info"].startswith("Established")]


def kernel_nexthops(route_json: list[dict[str, Any]]) -> list[str]:
    """Next-hop addresses of one prefix from `ip -j route show <prefix>` (single path or ECMP)."""
    hops: list[str] = []
    for route in route_json:
        if "gateway" in route:
            hops.append(str(route["gateway"]))
        for hop in route.get("nexthops", []):
            if "gateway" in hop:
                hops.append(str(hop["gateway"]))
    return sorted(set(hops))


def expected_nexthops(servers: list[dict[str, Any]], service: str, family: int = 4) -> list[str]:
    """Where the PoP's routers must send a service's traffic: the LAN addresses of the servers that
    run it with the lowest weight (several when they tie: ECMP)."""
    key = "source_v4" if family == 4 else "source_v6"
    candidates = []
    for sc in servers:
        for svc in sc.get("services", []):
            if svc["name"] == service and sc["bgp"].get(key):
                candidates.append((svc["weight"], sc["bgp"][key]))
    if not candidates:
        return []
    best = min(weight for weight, _ in candidates)
    return sorted(addr for weight, addr in candidates if weight == best)
