"""irq_affinity: plans and writes against recorded /proc and /sys trees (tests/data/irq/).

The planning code is plugins/module_utils/edgepop_irq.py (imported here as edgepop.irq_plan, the same
file); the module itself runs in-process with Ansible's module-args patch, on a private copy of a tree.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.testing import patch_module_args
from playbook_run import run_play

from edgepop import irq_plan
from edgepop.derive import derive_all
from edgepop.irq_plan import IrqPlanError, apply_plan, parse_cpulist
from edgepop.render import render_pop
from edgepop.validate import validate_inventory

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "irq"
MODULE = ROOT / "plugins" / "modules" / "irq_affinity.py"

SEED_GROUPS = [
    {"name": "external", "socket": 0, "nics": ["ext0", "ext1", "ext2"]},
    {"name": "internal", "socket": 1, "nics": ["int0", "int1", "int2"]},
]
ONE_SOCKET_GROUPS = [
    {"name": "external", "socket": 0, "nics": ["eth0"]},
    {"name": "internal", "socket": 0, "nics": ["eth1"]},
]


def tree(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(DATA / name, target, symlinks=True)
    return target


def affinity(root: Path, irq: int) -> str:
    return (root / f"proc/irq/{irq}/smp_affinity_list").read_text().strip()


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def run_module(args: dict[str, Any], *, check: bool = False, diff: bool = False) -> dict[str, Any]:
    """Run plugins/modules/irq_affinity.py's main() as Ansible would; return its JSON result."""
    sys.modules["ansible.module_utils.edgepop_irq"] = irq_plan
    spec = importlib.util.spec_from_file_location("irq_affinity_under_test", MODULE)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    payload = {**args, "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(payload), contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        module.main()
    result: dict[str, Any] = json.loads(out.getvalue())
    return result


# --- the plan -------------------------------------------------------------------------------------


def test_seed_server_external_on_socket_0_internal_on_socket_1_two_per_cpu() -> None:
    out = apply_plan({"groups": SEED_GROUPS, "queues_per_core": 2}, root=str(DATA / "seed-2s6c2t"), check=True)
    assert out.topology == {"sockets": 2, "cores_per_socket": 6, "threads_per_core": 2, "cpus": 24}
    socket0 = {*range(0, 6), *range(12, 18)}  # recorded physical_package_id 0
    socket1 = {*range(6, 12), *range(18, 24)}
    assert len(out.plan) == 48
    ext = [p for p in out.plan if p["group"] == "external"]
    internal = [p for p in out.plan if p["group"] == "internal"]
    assert {p["nic"] for p in ext} == {"ext0", "ext1", "ext2"} and len(ext) == 24
    assert {p["cpu"] for p in ext} == socket0
    assert {p["cpu"] for p in internal} == socket1
    per_cpu: dict[int, int] = {}
    for p in out.plan:
        per_cpu[p["cpu"]] = per_cpu.get(p["cpu"], 0) + 1
    assert set(per_cpu.values()) == {2} and len(per_cpu) == 24
    # the misc (link) vector of every port stays where it is
    assert sorted(s["name"] for s in out.skipped_irqs) == ["ext0", "ext1", "ext2", "int0", "int1", "int2"]
    assert not {s["irq"] for s in out.skipped_irqs} & {p["irq"] for p in out.plan}


def test_smt_siblings_are_used_only_after_every_physical_core() -> None:
    out = apply_plan({"groups": SEED_GROUPS}, root=str(DATA / "seed-2s6c2t"), check=True)
    ext0 = [p for p in out.plan if p["nic"] == "ext0"]
    # the first six queues of ext0 go to six different physical cores (cpu0-5, thread 0), only then
    # to the second threads (cpu12, cpu13: the siblings of cpu0, cpu1)
    assert [p["cpu"] for p in ext0] == [0, 1, 2, 3, 4, 5, 12, 13]
    assert [p["slot"] for p in ext0][:7] == ["0/0/0", "0/1/0", "0/2/0", "0/3/0", "0/4/0", "0/5/0", "0/0/1"]


def test_one_socket_box_shares_the_round_and_core_ids_with_gaps() -> None:
    out = apply_plan({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1}, root=str(DATA / "single-1s4c2t"), check=True)
    assert out.topology == {"sockets": 1, "cores_per_socket": 4, "threads_per_core": 2, "cpus": 8}
    assert [(p["name"], p["cpu"]) for p in out.plan] == [
        ("i40e-eth0-TxRx-0", 0),
        ("i40e-eth0-TxRx-1", 1),
        ("i40e-eth0-TxRx-2", 2),
        ("i40e-eth0-TxRx-3", 3),
        ("i40e-eth1-TxRx-0", 4),
        ("i40e-eth1-TxRx-1", 5),
        ("i40e-eth1-TxRx-2", 6),
        ("i40e-eth1-TxRx-3", 7),
    ]
    assert {s["name"] for s in out.skipped_irqs} == {"i40e-0000:3b:00.0:misc", "i40e-0000:3b:00.1:misc"}


def test_virtio_input_and_output_vectors_of_a_queue_go_to_the_same_cpu() -> None:
    out = apply_plan({"groups": ONE_SOCKET_GROUPS}, root=str(DATA / "virtio-1s4c"), check=True)
    by_queue: dict[tuple[str, int], set[int]] = {}
    for p in out.plan:
        by_queue.setdefault((p["nic"], p["queue"]), set()).add(p["cpu"])
    assert len(by_queue) == 8 and all(len(cpus) == 1 for cpus in by_queue.values())
    assert [p["name"] for p in out.plan[:2]] == ["virtio0-input.0", "virtio0-output.0"]
    assert by_queue[("eth0", 0)] == by_queue[("eth1", 0)] == {0}  # 8 queues on 4 CPUs: two rounds
    assert {s["name"] for s in out.skipped_irqs} == {
        "virtio0-config",
        "virtio0-control",
        "virtio1-config",
        "virtio1-control",
    }


def test_offline_render_and_module_agree_on_the_seed_server() -> None:
    """fra1-srv01 is the seed server (2 x 6 x 2, ext0-2/int0-2 with 8 queues): `edgepop render`'s
    irq-plan.yml and the module on the recorded host place every queue on the same slot."""
    report = validate_inventory(ROOT / "inventory" / "examples" / "fra1")
    assert report.model is not None
    rendered = yaml.safe_load(render_pop(report.model)["fra1-srv01/irq-plan.yml"])
    sc = derive_all(report.model)["fra1-srv01"]
    out = apply_plan(
        {
            "groups": sc["irq"]["groups"],
            "queues_per_core": sc["irq"]["queues_per_core"],
            "expect_cpu": sc["irq"]["cpu"],
        },
        root=str(DATA / "seed-2s6c2t"),
        check=True,
    )
    on_host: dict[str, list[str]] = {}
    for p in out.plan:
        on_host.setdefault(p["nic"], []).append(p["slot"])
    assert rendered["queues"] == on_host
    assert len(on_host) == 6 and all(len(v) == 8 for v in on_host.values())


# --- impossible plans -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"groups": SEED_GROUPS, "queues_per_core": 1}, "impossible plan: socket 0 has 12 CPUs x 1 queues per core"),
        (
            {"groups": [{"name": "external", "socket": 0, "nics": []}, SEED_GROUPS[1]]},
            "group external has no NICs",
        ),
        ({"groups": [{"name": "external", "socket": 0, "nics": ["ext9"]}]}, "unknown NIC ext9"),
        ({"groups": [{"name": "internal", "socket": 2, "nics": ["int0"]}]}, "wants socket 2, but this host has 2"),
        (
            {"groups": SEED_GROUPS, "expect_cpu": {"sockets": 2, "cores_per_socket": 8, "threads_per_core": 2}},
            "is not this host's",
        ),
        (
            {"groups": [{"name": "a", "socket": 0, "nics": ["ext0"]}, {"name": "b", "socket": 1, "nics": ["ext0"]}]},
            "NIC ext0 is in group a and in group b",
        ),
    ],
)
def test_impossible_plans_fail_naming_the_input(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    root = tree(tmp_path, "seed-2s6c2t")
    before = snapshot(root)
    with pytest.raises(IrqPlanError, match=message.replace("(", r"\(")):
        apply_plan(spec, root=str(root))
    assert snapshot(root) == before


def test_a_nic_without_queue_irqs_fails() -> None:
    with pytest.raises(IrqPlanError, match=r"NIC veth0 has no queue IRQs: no device/msi_irqs"):
        apply_plan({"groups": [{"name": "external", "socket": 0, "nics": ["veth0"]}]}, root=str(DATA / "single-1s4c2t"))


# --- applying, through the module -----------------------------------------------------------------


def test_apply_writes_exactly_the_wrong_ones_then_nothing(tmp_path: Path) -> None:
    root = tree(tmp_path, "single-1s4c2t")
    args = {"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1, "root": str(root)}
    first = run_module(args)
    assert first["changed"] is True
    assert first["changed_irqs"] == [61, 62, 63, 70, 71, 72, 73]  # 60 was already on cpu 0
    assert [affinity(root, irq) for irq in (60, 61, 62, 63, 70, 71, 72, 73)] == list("01234567")
    assert affinity(root, 58) == affinity(root, 68) == "0-7"  # misc vectors untouched
    second = run_module(args)
    assert second["changed"] is False and second["changed_irqs"] == []


def test_check_mode_writes_nothing_and_diff_shows_each_irq(tmp_path: Path) -> None:
    root = tree(tmp_path, "seed-2s6c2t")
    before = snapshot(root)
    out = run_module({"groups": SEED_GROUPS, "root": str(root), "xps": True}, check=True, diff=True)
    assert out["changed"] is True and len(out["changed_irqs"]) == 48
    assert len(out["changed_queues"]) == 48
    assert snapshot(root) == before
    assert "irq 40 ext0-TxRx-0 0-23\n" in out["diff"]["before"]
    assert "irq 40 ext0-TxRx-0 0\n" in out["diff"]["after"]
    assert "ext0/queues/tx-6/xps_cpus 1000\n" in out["diff"]["after"]  # cpu 12


def test_rps_and_xps_masks(tmp_path: Path) -> None:
    root = tree(tmp_path, "seed-2s6c2t")
    args = {"groups": SEED_GROUPS, "root": str(root), "rps": True, "xps": True}
    first = run_module(args)
    assert len(first["changed_queues"]) == 96
    rps = (root / "sys/class/net/int1/queues/rx-3/rps_cpus").read_text().strip()
    assert irq_plan.parse_mask(rps) == {*range(6, 12), *range(18, 24)}  # socket 1's CPUs
    xps = (root / "sys/class/net/ext0/queues/tx-7/xps_cpus").read_text().strip()
    assert irq_plan.parse_mask(xps) == {13}
    assert run_module(args)["changed"] is False


def test_module_reports_an_impossible_plan_as_a_failure(tmp_path: Path) -> None:
    root = tree(tmp_path, "virtio-1s4c")
    out = run_module({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1, "root": str(root)})
    assert out["failed"] is True
    assert out["msg"].startswith("impossible plan: socket 0 has 4 CPUs x 1 queues per core = 4 queues")
    assert "external 4, internal 4" in out["msg"]


def test_an_unreadable_irq_fails_before_any_write(tmp_path: Path) -> None:
    root = tree(tmp_path, "single-1s4c2t")
    blocker = root / "proc/irq/71/smp_affinity_list"
    blocker.unlink()
    blocker.mkdir()  # reading a directory fails
    (root / "proc/irq/71/smp_affinity_list/x").write_text("")
    with pytest.raises(IrqPlanError, match="cannot read the affinity of IRQ 71"):
        apply_plan({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1}, root=str(root))
    assert affinity(root, 61) == "0-7"  # nothing written: the read pass failed first


def test_a_failing_write_mid_way_rolls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tree(tmp_path, "single-1s4c2t")
    real_open = open
    target = str(root / "proc/irq/71/smp_affinity_list")

    def failing_open(path: Any, mode: str = "r", *a: Any, **kw: Any) -> Any:
        if str(path) == target and "w" in mode:
            raise OSError(5, "Input/output error")
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(IrqPlanError, match=r"cannot write 5 to .*/proc/irq/71/smp_affinity_list"):
        apply_plan({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1}, root=str(root))
    monkeypatch.undo()
    assert [affinity(root, irq) for irq in (61, 62, 63, 70)] == ["0-7"] * 4


def test_channels_are_set_first_with_the_exact_command(tmp_path: Path) -> None:
    root = tree(tmp_path, "virtio-1s4c")
    calls: list[list[str]] = []
    listing = (
        "Channel parameters for {nic}:\nPre-set maximums:\nCombined:\t8\nCurrent hardware settings:\nCombined:\t{n}\n"
    )

    def run(argv: list[str]) -> tuple[int, str, str]:
        calls.append(argv)
        if argv[1] == "-l":
            return 0, listing.format(nic=argv[2], n=4 if argv[2] == "eth0" else 2), ""
        return 0, "", ""

    out = apply_plan({"groups": ONE_SOCKET_GROUPS, "channels": 4}, root=str(root), run=run, ethtool="/sbin/ethtool")
    assert calls == [
        ["/sbin/ethtool", "-l", "eth0"],
        ["/sbin/ethtool", "-l", "eth1"],
        ["/sbin/ethtool", "-L", "eth1", "combined", "4"],
    ]
    assert out.changed_channels == ["eth1"]


def test_boot_script_applies_the_plan_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tree(tmp_path, "virtio-1s4c")
    plan = tmp_path / "irq-affinity.json"
    plan.write_text(json.dumps({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 2, "root": str(root)}))
    assert irq_plan.main(["apply", str(plan)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is True
    assert parse_cpulist(affinity(root, 26)) == {0}  # virtio0-output.0
    assert irq_plan.main(["apply", str(plan)]) == 0
    assert json.loads(capsys.readouterr().out)["changed"] is False
    plan.write_text(json.dumps({"groups": ONE_SOCKET_GROUPS, "queues_per_core": 1, "root": str(root)}))
    assert irq_plan.main(["apply", str(plan)]) == 1
    assert "impossible plan" in capsys.readouterr().err


def test_cpulists_and_masks_round_trip() -> None:
    assert irq_plan.format_cpulist({0, 1, 2, 3, 8, 10, 11}) == "0-3,8,10-11"
    assert parse_cpulist("0-3,8,10-11") == {0, 1, 2, 3, 8, 10, 11}
    assert irq_plan.format_mask(range(40)) == "ff,ffffffff"
    assert irq_plan.format_mask({33}) == "2,00000000"
    assert irq_plan.parse_mask("00000000,00000fff") == set(range(12))


def test_inventory_with_an_impossible_plan_is_invalid(tmp_path: Path) -> None:
    inv = tmp_path / "fra1"
    shutil.copytree(ROOT / "inventory" / "examples" / "fra1", inv)
    host = inv / "host_vars" / "fra1-srv01.yml"
    host.write_text(host.read_text().replace("queues_per_core: 2 }", "queues_per_core: 1 }"))
    report = validate_inventory(inv)
    assert report.model is None
    text = report.format()
    assert "fra1-srv01" in text and "server.irq.queues_per_core" in text
    assert "impossible plan: socket 0 has 12 CPUs x 1 queues per core = 12 queues" in text


def test_module_runs_through_ansible_with_its_module_utils(tmp_path: Path) -> None:
    """The module and edgepop_irq.py travel to the host as Ansible ships them (ansible.cfg's module_utils)."""
    root = tree(tmp_path, "seed-2s6c2t")
    before = snapshot(root)
    task = {"irq_affinity": {"groups": SEED_GROUPS, "root": str(root)}, "register": "out"}
    result = run_play(tmp_path, [{"hosts": "localhost", "gather_facts": False, "tasks": [task]}], "--check").first()
    assert result["changed"] is True and len(result["changed_irqs"]) == 48, result
    assert snapshot(root) == before
