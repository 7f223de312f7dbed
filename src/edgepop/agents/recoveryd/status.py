"""recoveryd's read-only endpoint: `/status` (JSON: every server's state, signals, backoff, counters)
and `/metrics` (Prometheus text). It serves what the loop stored last; no request touches the core."""

from __future__ import annotations

from typing import Any

from edgepop.agents.recoveryd.core import SIGNALS

Snapshot = dict[str, Any]
STATES = ("healthy", "suspect", "dead", "cycling", "wait_back", "verify", "failed")


def metrics_text(snap: Snapshot) -> str:
    lines = [
        "# HELP edgepop_recoveryd_server_state 1 for the state each server is in",
        "# TYPE edgepop_recoveryd_server_state gauge",
    ]
    servers: dict[str, Any] = snap.get("servers", {})
    for name, srv in servers.items():
        for state in STATES:
            lines.append(
                f'edgepop_recoveryd_server_state{{server="{name}",state="{state}"}} {int(srv["state"] == state)}'
            )
    lines += [
        "# HELP edgepop_recoveryd_signal_ok 1 while a probe passes, 0 while it fails (absent: unknown)",
        "# TYPE edgepop_recoveryd_signal_ok gauge",
    ]
    for name, srv in servers.items():
        for sig in (*SIGNALS, "green"):
            value = srv["signals"].get(sig)
            if value is not None:
                lines.append(f'edgepop_recoveryd_signal_ok{{server="{name}",signal="{sig}"}} {int(bool(value))}')
    for key, help_text in (
        ("attempts_total", "recoveries started (IPMI, then PDU if needed, count as one)"),
        ("failures_total", "recoveries that ended failed (alerted)"),
        ("recoveries_total", "servers verified and released after a recovery"),
    ):
        lines += [f"# HELP edgepop_recoveryd_{key} {help_text}", f"# TYPE edgepop_recoveryd_{key} counter"]
        lines += [f'edgepop_recoveryd_{key}{{server="{n}"}} {s[key]}' for n, s in servers.items()]
    lines += [
        "# HELP edgepop_recoveryd_in_flight power cycles under way",
        "# TYPE edgepop_recoveryd_in_flight gauge",
        f"edgepop_recoveryd_in_flight {snap.get('in_flight', 0)}",
        "# HELP edgepop_recoveryd_down servers counted as down",
        "# TYPE edgepop_recoveryd_down gauge",
        f"edgepop_recoveryd_down {snap.get('down', 0)}",
    ]
    return "\n".join(lines) + "\n"
