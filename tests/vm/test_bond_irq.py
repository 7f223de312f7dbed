"""Bonds and NIC queue interrupts on real kernels: the servers playbook against a qemu guest.

The host kernel has no bonding driver and no NIC queue vectors, so the proof runs in two TCG guests
booted from the project's pxe image (root in RAM):

- `srv1`, the server of tests/vm/inventory: 2 sockets x 1 CPU, two external and two internal
  virtio NICs with 4 queues each (the inventory's MACs), plus a management NIC on qemu's user
  network (restrict=on) that carries Ansible's SSH;
- `partner`, the switch side of LACP: two 802.3ad bonds (rate fast) set up at boot by networkd
  files this test writes, addresses on the server LAN.

Each server NIC is cabled point to point to a partner NIC (two taps joined by tc mirred). The real
`playbooks/servers.yml` (networkd, lacp_bond and irq_affinity roles) runs against srv1 over SSH, and
the tests check what the guests' kernels say: both bonds aggregated with the partner, pings over both,
/proc/irq as the module planned, a second run with nothing to change, and a cable pulled in the qemu
monitor (both ends) while a ping keeps flowing over the other member.

Boot ~1 min, the whole module ~3 min on a 2-core machine; at most 3 vCPUs (2 + 1).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from edgepop.derive import server_queue_plan
from edgepop.image.boot import BootArtifacts, OverlayEntry, boot_artifacts, directory, file
from edgepop.image.build import build_rootfs
from edgepop.validate import load_valid
from edgepop.vm.links import Cables
from edgepop.vm.qemu import SSH_OPTIONS, TapNic, Vm, VmSpec, mgmt_network_file

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "vm" / "inventory"
CACHE = ROOT / ".cache" / "image"
VAULT_PASSWORD = ROOT / "lab" / "vault-password"
SERVER = "srv1"
TOOLS = ("qemu-system-x86_64", "ip", "tc", "ssh", "ssh-keygen", "tar", "zstd", "cpio", "mmdebstrap")

if os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS) or not Path("/dev/net/tun").exists():
    pytest.skip(f"the VM proof needs root, /dev/net/tun and {', '.join(TOOLS)}", allow_module_level=True)

# The partner's side of each cable: its NIC name, its bond, and the server NIC at the other end.
PARTNER_NICS = {"pext0": "ext0", "pext1": "ext1", "pint0": "int0", "pint1": "int1"}
PARTNER_BONDS = {"pbond0": ("198.51.100.1/27", ["pext0", "pext1"]), "pbond1": ("198.51.100.42/27", ["pint0", "pint1"])}
SERVER_BONDS = {"bond0": ("pbond0", "198.51.100.1"), "bond1": ("pbond1", "198.51.100.42")}


def _partner_overlay() -> list[OverlayEntry]:
    """networkd files of the switch side: NIC names from MACs, two LACP bonds with addresses."""
    entries: list[OverlayEntry] = []
    for i, nic in enumerate(PARTNER_NICS, start=1):
        entries.append(
            file(f"/etc/systemd/network/10-{nic}.link", f"[Match]\nMACAddress={_pmac(i)}\n\n[Link]\nName={nic}\n")
        )
    for bond, (address, members) in PARTNER_BONDS.items():
        entries.append(
            file(
                f"/etc/systemd/network/20-{bond}.netdev",
                f"[NetDev]\nName={bond}\nKind=bond\n\n[Bond]\nMode=802.3ad\nLACPTransmitRate=fast\n"
                "TransmitHashPolicy=layer3+4\nMIIMonitorSec=100ms\n",
            )
        )
        entries.append(
            file(f"/etc/systemd/network/40-{bond}.network", f"[Match]\nName={bond}\n\n[Network]\nAddress={address}\n")
        )
        for nic in members:
            entries.append(
                file(f"/etc/systemd/network/30-{nic}.network", f"[Match]\nName={nic}\n\n[Network]\nBond={bond}\n")
            )
    return entries


def _pmac(i: int) -> str:
    return f"52:54:00:e9:02:{i:02x}"


def _common_overlay(hostname: str, public_key: str, mgmt_mac: str) -> list[OverlayEntry]:
    return [
        file("/etc/hostname", f"{hostname}\n"),
        directory("/root/.ssh", 0o700),
        file("/root/.ssh/authorized_keys", public_key, 0o600),
        mgmt_network_file(mgmt_mac),
    ]


@dataclass
class Pop:
    """The running proof: both guests, the cables, and the first playbook run's result."""

    server: Vm
    partner: Vm
    workdir: Path
    extra_vars: Path
    first_run: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def _ansible_env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(VAULT_PASSWORD),
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_NOCOLOR": "1",
        # one SSH connection per run, its socket in the test's directory (gone with it)
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=60s -o ControlPath={workdir}/cp-%C",
    }


def _json_out(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        start = proc.stdout.index("{")
        # the JSON document, then whatever other callbacks print (the play's timer)
        return dict(json.JSONDecoder().raw_decode(proc.stdout[start:])[0])
    except ValueError as exc:
        raise AssertionError(
            f"no JSON from ansible (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        ) from exc


def run_playbook(pop: Pop) -> dict[str, Any]:
    """playbooks/servers.yml, network and IRQ parts, against srv1; the JSON callback's document."""
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"),
        "-i",
        str(INVENTORY),
        str(ROOT / "playbooks" / "servers.yml"),
        "--limit",
        SERVER,
        "--tags",
        "servers::network,servers::irq",
        "-e",
        f"@{pop.extra_vars}",
    ]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_ansible_env(pop.workdir), cwd=ROOT, timeout=600, check=False
    )
    runs = len(list(pop.workdir.glob("playbook-*.json")))
    (pop.workdir / f"playbook-{runs + 1}.json").write_text(proc.stdout + proc.stderr)  # for a post-mortem
    out = _json_out(proc)
    stats = out["stats"][SERVER]
    if proc.returncode != 0 or stats["failures"] or stats["unreachable"]:
        failed = [
            f"{t['task']['name']}: {r.get('msg')}"
            for play in out["plays"]
            for t in play["tasks"]
            for h, r in t["hosts"].items()
            if h == SERVER and r.get("failed")
        ]
        raise AssertionError(f"playbook failed (exit {proc.returncode}): {failed or proc.stderr[-2000:]}")
    return out


def task_result(run: dict[str, Any], name: str) -> dict[str, Any]:
    """The server's result of the task called `name` in a playbook run."""
    for play in run["plays"]:
        for task in play["tasks"]:
            # a role's tasks are named "<role> : <name>"
            if task["task"]["name"].split(" : ")[-1] == name and SERVER in task["hosts"]:
                return dict(task["hosts"][SERVER])
    raise AssertionError(f"task {name!r} did not run on {SERVER}")


def bond_facts(pop: Pop) -> dict[str, Any]:
    """The bond_facts module, ad hoc against srv1: its `bond_facts` fact."""
    argv = [str(ROOT / ".venv" / "bin" / "ansible"), "-i", str(INVENTORY), SERVER, "-m", "bond_facts"]
    argv += ["-a", json.dumps({"names": ["bond0", "bond1"]}), "-e", f"@{pop.extra_vars}"]
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=_ansible_env(pop.workdir), cwd=ROOT, timeout=300, check=False
    )
    out = _json_out(proc)
    result = out["plays"][0]["tasks"][0]["hosts"][SERVER]
    assert not result.get("failed"), result
    return dict(result["ansible_facts"]["bond_facts"])


@pytest.fixture(scope="module")
def pop(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Pop]:
    started = time.monotonic()
    model = load_valid(INVENTORY)  # the inventory the roles read must be valid first
    nics = model.servers[SERVER].nics
    workdir = tmp_path_factory.mktemp("vm")
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    public = (workdir / "id_ed25519.pub").read_text()

    artifacts: BootArtifacts = boot_artifacts(build_rootfs("pxe", CACHE), CACHE)
    prefix = f"epvm{os.getpid() % 100000}"
    server_mgmt, partner_mgmt = "52:54:00:e9:01:00", "52:54:00:e9:02:00"
    server_nics = [TapNic(n.name, f"{prefix}s{i}", n.mac) for i, n in enumerate(nics)]
    partner_nics = [TapNic(name, f"{prefix}p{i}", _pmac(i + 1)) for i, name in enumerate(PARTNER_NICS)]
    server = Vm(
        VmSpec(
            SERVER,
            "2,sockets=2,cores=1,threads=1",
            1024,
            server_mgmt,
            server_nics,
            _common_overlay(SERVER, public, server_mgmt),
        ),
        artifacts,
        workdir,
        key,
    )
    partner_overlay = _common_overlay("partner", public, partner_mgmt) + _partner_overlay()
    partner = Vm(VmSpec("partner", "1", 1024, partner_mgmt, partner_nics, partner_overlay), artifacts, workdir, key)
    extra = workdir / "extra-vars.json"
    extra.write_text(
        json.dumps(
            {
                "ansible_port": server.ssh_port,
                "ansible_user": "root",
                "ansible_python_interpreter": "/usr/bin/python3",
                "ansible_ssh_private_key_file": str(key),
                "ansible_ssh_common_args": " ".join(SSH_OPTIONS),
                "irq_affinity__enabled": True,
            }
        )
    )
    cables = Cables()
    proof = Pop(server, partner, workdir, extra)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    try:
        for snic, pnic in zip(server_nics, partner_nics, strict=True):
            assert PARTNER_NICS[pnic.netdev] == snic.netdev
            cables.cable(cables.tap(snic.tap), cables.tap(pnic.tap))
        proof.timings["prepare"] = time.monotonic() - started
        mark = time.monotonic()
        server.start()
        partner.start()
        server.wait_ssh()
        partner.wait_ssh()
        proof.timings["boot to SSH"] = time.monotonic() - mark
        mark = time.monotonic()
        proof.first_run = run_playbook(proof)
        proof.timings["first run"] = time.monotonic() - mark
        yield proof
    finally:
        server.stop()
        partner.stop()
        errors = cables.delete()
        proof.timings["total"] = time.monotonic() - started
        summary = ", ".join(f"{k} {v:.0f} s" for k, v in proof.timings.items())
        with capture.global_and_fixture_disabled():  # shown with -q too: the duration is part of the proof
            print(f"\n[vm] {summary} (console logs in {workdir})")
        assert not errors, errors
        assert all(vm.process is None or vm.process.poll() is not None for vm in (server, partner))


def _ssh(vm: Vm, command: str) -> str:
    return vm.ssh(command).stdout


def test_bonds_aggregated_with_the_partner(pop: Pop) -> None:
    # the guest booted with kernel NIC names: the first run named them from the inventory's MACs
    assert task_result(pop.first_run, "Give the NICs their inventory names now")["changed"] is True
    verified = task_result(pop.first_run, "Check that every LACP bond has aggregated")
    assert verified["ok"] is True and verified["problems"] == {}
    facts = bond_facts(pop)
    for bond, (partner_bond, _) in SERVER_BONDS.items():
        partner_mac = _ssh(pop.partner, f"cat /sys/class/net/{partner_bond}/address").strip()
        state = facts[bond]
        assert state["ok"], state["problems"]
        assert state["mode"] == "802.3ad" and state["lacp_rate"] == "fast"
        assert state["partner_mac"] == partner_mac
        members = {n.removeprefix("p") for n in PARTNER_BONDS[partner_bond][1]}
        assert set(state["slaves"]) == members
        # one aggregator: every port in the bond's active one, with the partner's LACP in sync
        assert {s["aggregator_id"] for s in state["slaves"].values()} == {state["aggregator_id"]}
        assert all(s["partner_mac"] == partner_mac and s["mii_status"] == "up" for s in state["slaves"].values())


def test_ping_over_each_bond(pop: Pop) -> None:
    for bond, (_, address) in SERVER_BONDS.items():
        out = _ssh(pop.server, f"ping -c 3 -i 0.2 -W 2 -I {bond} {address}")
        assert " 0% packet loss" in out, out


def test_irq_affinity_matches_the_plan(pop: Pop) -> None:
    pinned = task_result(pop.first_run, "Pin each NIC queue's interrupts to one CPU of its group's socket")
    assert pinned["active"] is True
    plan = pinned["plan"]
    # every queue vector of the four NICs: 4 queues x (input + output)
    assert sorted((p["nic"], p["queue"]) for p in plan) == sorted(
        (n, q) for n in ("ext0", "ext1", "int0", "int1") for q in range(4) for _ in (0, 1)
    )
    packages = {
        int(cpu): int(pkg)
        for cpu, pkg in re.findall(
            r"cpu(\d+)/topology/physical_package_id:(\d+)",
            _ssh(pop.server, "grep . /sys/devices/system/cpu/cpu*/topology/physical_package_id"),
        )
    }
    assert sorted(set(packages.values())) == [0, 1]
    for p in plan:
        assert packages[p["cpu"]] == (0 if p["group"] == "external" else 1), p
    # the same placement `edgepop render` writes offline (irq-plan.yml), slot by slot
    offline = server_queue_plan(load_valid(INVENTORY).servers[SERVER])
    assert [p["slot"] for p in plan] == [offline[p["nic"]][p["queue"]] for p in plan]
    # read back from the kernel
    found = dict(
        re.findall(r"/proc/irq/(\d+)/smp_affinity_list:(\S+)", _ssh(pop.server, "grep . /proc/irq/*/smp_affinity_list"))
    )
    wrong = [
        (p["irq"], p["name"], found.get(str(p["irq"])), p["cpu"])
        for p in plan
        if found.get(str(p["irq"])) != str(p["cpu"])
    ]
    assert not wrong, f"IRQs not where the plan puts them (irq, name, kernel, plan): {wrong}"
    # the boot-time unit that re-applies the plan is installed and enabled
    assert _ssh(pop.server, "systemctl is-enabled edgepop-irq-affinity.service").strip() == "enabled"


def test_second_run_changes_nothing(pop: Pop) -> None:
    second = run_playbook(pop)
    changed = [
        t["task"]["name"]
        for play in second["plays"]
        for t in play["tasks"]
        if t["hosts"].get(SERVER, {}).get("changed")
    ]
    assert second["stats"][SERVER]["changed"] == 0, changed
    assert task_result(second, "Pin each NIC queue's interrupts to one CPU of its group's socket")["changed_irqs"] == []


def _tx_packets(vm: Vm, nics: list[str]) -> dict[str, int]:
    out = _ssh(vm, " ".join(f"cat /sys/class/net/{n}/statistics/tx_packets;" for n in nics))
    return dict(zip(nics, map(int, out.split()), strict=True))


def test_link_cut_keeps_traffic_flowing(pop: Pop) -> None:
    """Pull the cable of the external member that carries a running ping, on both ends.

    layer3+4 hashing puts one ping (one ICMP id) on one member, but which one only shows while it
    runs: the member whose transmit counter moves during the first replies is the one cut.
    """
    members = ["ext0", "ext1"]
    count = 200
    tx_before = _tx_packets(pop.server, members)
    ping = subprocess.Popen(
        pop.server.ssh_argv(f"stdbuf -oL ping -c {count} -i 0.05 -W 1 -I bond0 198.51.100.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    replies: list[int] = []
    try:
        assert ping.stdout is not None
        for line in ping.stdout:  # traffic flows before the cut
            if m := re.search(r"icmp_seq=(\d+)", line):
                replies.append(int(m.group(1)))
                if len(replies) == 10:
                    break
        tx_cut = _tx_packets(pop.server, members)
        busy = max(members, key=lambda n: tx_cut[n] - tx_before[n])
        spare = next(n for n in members if n != busy)
        pop.server.set_link(busy, up=False)
        pop.partner.set_link(f"p{busy}", up=False)
        rest, err = ping.communicate(timeout=120)
    finally:
        if ping.poll() is None:
            ping.kill()
            ping.wait()
    tx_after = _tx_packets(pop.server, members)
    cut_at = replies[-1] if replies else 0
    replies += [int(s) for s in re.findall(r"icmp_seq=(\d+)", rest)]
    summary = re.search(r"(\d+) packets transmitted, (\d+) received", rest)
    assert summary, rest + err
    sent, received = map(int, summary.groups())
    lost = sent - received
    stats = f"{busy} cut after icmp_seq {cut_at}: {received}/{sent} answered, {lost} lost; "
    stats += f"tx {tx_before} -> {tx_cut} -> {tx_after}"
    print(f"link cut: {stats}")
    assert len(replies) >= 10 and cut_at > 0, stats
    # the cut member carried the ping before the cut (well above one LACPDU a second) ...
    assert tx_cut[busy] - tx_before[busy] >= 10, stats
    # ... and the other member carried it after: most of the remaining requests, and the last ones
    assert tx_after[spare] - tx_cut[spare] >= (count - cut_at) // 2, stats
    assert max(replies) >= count - 5, f"traffic stopped after the cut: {stats}"
    assert lost <= count // 4, stats

    facts = bond_facts(pop)["bond0"]
    assert facts["slaves"][busy]["mii_status"] == "down"
    assert facts["slaves"][spare]["mii_status"] == "up"
    assert facts["slaves"][spare]["aggregator_id"] == facts["aggregator_id"]
