"""How long `new_pop.yml` takes on the lab, first run and re-run, per PoP size and Ansible strategy.

For each size (default 4 and 16 servers) a lab inventory is made from inventory/lab (servers added
with `edgepop inventory add-server --like srv4`), and for each strategy (Ansible's default `linear`,
and Mitogen's `mitogen_linear`) the lab is brought up fresh, `new_pop.yml` runs once on the bare
boxes and once more on the converged PoP. The baseline is the default strategy measured in the same
run; the output gives each time and the ratios. Goal: a converged 16-server PoP re-runs in under a
minute.

    sudo .venv/bin/python bench/converge.py [--sizes 4 16] [--strategies linear mitogen_linear]

Needs what the lab needs (root, podman). Takes several minutes per size on a 2-core machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT / ".venv" / "bin"
MITOGEN = "mitogen_linear"


def _run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kw)  # type: ignore[call-overload]


def make_inventory(servers: int, dest: Path) -> str:
    """inventory/lab grown to `servers` servers; returns its PoP name (unique per size)."""
    pop = f"bench{servers}"
    shutil.copytree(ROOT / "inventory" / "lab", dest)
    popfile = dest / "group_vars" / "all" / "pop.yml"
    text = popfile.read_text().replace("name: lab1", f"name: {pop}").replace("outlets: 8", "outlets: 48")
    popfile.write_text(text)
    conn = dest / "group_vars" / "lab1" / "connection.yml"
    key = ROOT / ".cache" / "lab" / pop / "id_ed25519"
    text = re.sub(r"ansible_ssh_private_key_file: .*", f"ansible_ssh_private_key_file: {key}", conn.read_text())
    conn.write_text(text.replace("edgepop-lab1-client", f"edgepop-{pop}-client"))
    mgmt = ipaddress.ip_network("203.0.113.0/26")
    for n in range(5, servers + 1):
        host = f"srv{n}"
        port = 9 + 2 * (n - 4)  # swp9 is the uplink; new servers take swp11, swp12, ...
        argv = [
            str(BIN / "edgepop"), "inventory", "add-server", str(dest), host, "--like", "srv4",
            "--mac", f"mgmt0=02:00:00:00:{n:02x}:00", "--mac", f"ext0=02:00:00:00:{n:02x}:01",
            "--mac", f"int0=02:00:00:00:{n:02x}:02",
            "--address-v4", f"mgmt0={mgmt[20 + n]}/26",
            "--address-v4", f"ext0=198.51.100.{10 + n}/27", "--address-v6", f"ext0=2001:db8:0:1::{10 + n}/64",
            "--address-v4", f"int0=198.51.100.{40 + n}/27", "--address-v6", f"int0=2001:db8:0:2::{10 + n}/64",
            "--switch-port", f"ext0=swp{port}", "--switch-port", f"int0=swp{port + 1}",
            "--ipmi-address", str(mgmt[36 + n]), "--pdu-outlet", str(n),
            "--ansible-host", str(mgmt[20 + n]), "--new-switch-ports",
        ]  # fmt: skip
        done = _run(argv)
        if done.returncode != 0:
            raise SystemExit(f"cannot add {host}: {done.stderr or done.stdout}")
    done = _run([str(BIN / "edgepop"), "validate", str(dest)])
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return pop


def playbook(inventory: Path, strategy: str) -> tuple[float, str]:
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "lab" / "vault-password"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_STRATEGY": strategy,
    }
    start = time.monotonic()
    done = _run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(ROOT / "playbooks" / "new_pop.yml")],
        env=env,
        cwd=ROOT,
        timeout=3600,
    )
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"new_pop.yml failed ({strategy}):\n{done.stdout[-3000:]}")
    changed = sum(int(m) for m in re.findall(r"changed=(\d+)", done.stdout))
    return took, f"{changed} changed"


def lab(action: str, inventory: Path) -> None:
    done = _run([str(BIN / "edgepop"), "lab", action, str(inventory)], timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"lab {action} failed: {done.stderr}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--strategies", nargs="+", default=["linear", MITOGEN])
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/converge.py needs root (it runs the lab)", file=sys.stderr)
        return 77
    results: dict[tuple[int, str], tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="edgepop-bench-") as tmp:
        for size in args.sizes:
            inventory = Path(tmp) / f"lab{size}"
            make_inventory(size, inventory)
            for strategy in args.strategies:
                lab("down", inventory)
                lab("up", inventory)
                try:
                    first, first_changed = playbook(inventory, strategy)
                    again, again_changed = playbook(inventory, strategy)
                finally:
                    lab("down", inventory)
                results[(size, strategy)] = (first, again)
                print(
                    f"{size:>3} servers  {strategy:<15} first run {first:7.1f} s ({first_changed})   "
                    f"re-run {again:6.1f} s ({again_changed})",
                    flush=True,
                )
    base = args.strategies[0]
    for size in args.sizes:
        b_first, b_again = results[(size, base)]
        for strategy in args.strategies[1:]:
            first, again = results[(size, strategy)]
            print(
                f"{size:>3} servers  {strategy} vs {base}: first run {b_first / first:.2f}x faster, "
                f"re-run {b_again / again:.2f}x faster"
            )
    largest = max(args.sizes)
    best = min(results[(largest, s)][1] for s in args.strategies)
    verdict = "met" if best < 60 else "MISSED"
    print(f"SUMMARY: converged {largest}-server PoP re-runs in {best:.1f} s (goal < 60 s: {verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
