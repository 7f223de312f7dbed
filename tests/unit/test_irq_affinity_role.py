"""The irq_affinity role on the controller itself, pointed at recorded /proc and /sys trees.

The role runs with connection local and `irq_affinity__root` set to a copy of a tree, without the
boot unit and without touching irqbalance (both would act on this machine), so what is exercised
is the preflight decision and the module as the role calls it with a host's structured config.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from playbook_run import run_play

from edgepop.derive import derive_all
from edgepop.validate import validate_inventory

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "irq"


def structured(inventory: str, host: str) -> dict[str, Any]:
    report = validate_inventory(ROOT / "inventory" / inventory)
    assert report.model is not None
    sc: dict[str, Any] = derive_all(report.model)[host]
    return sc


def play_role(tmp_path: Path, sc: dict[str, Any], root: Path, **role_vars: Any) -> dict[str, Any]:
    variables = {
        "edgepop_device": sc,
        "irq_affinity__root": str(root),
        "irq_affinity__boot": False,
        "irq_affinity__stop_irqbalance": False,
        **role_vars,
    }
    run = run_play(
        tmp_path, [{"hosts": "localhost", "gather_facts": False, "vars": variables, "roles": ["irq_affinity"]}]
    )
    return {"stats": run.stats(), "tasks": run.tasks()}


PIN = "irq_affinity : Pin each NIC queue's interrupts to one CPU of its group's socket"


def test_role_pins_the_seed_server_then_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "host"
    shutil.copytree(DATA / "seed-2s6c2t", root, symlinks=True)
    sc = structured("examples/fra1", "fra1-srv01")
    first = play_role(tmp_path, sc, root)
    assert first["stats"]["failures"] == 0, first
    pinned = first["tasks"][PIN]
    assert pinned["changed"] is True and len(pinned["changed_irqs"]) == 48
    assert (root / "proc/irq/40/smp_affinity_list").read_text().strip() == "0"  # ext0-TxRx-0
    assert (root / "proc/irq/67/smp_affinity_list").read_text().strip() == "6"  # int0-TxRx-0
    assert (root / "proc/irq/48/smp_affinity_list").read_text().strip() == "0-23"  # ext0's link vector
    second = play_role(tmp_path, sc, root)
    assert second["stats"]["changed"] == 0, second


def test_role_is_skipped_where_the_nics_have_no_interrupts(tmp_path: Path) -> None:
    """The lab's servers are containers with veths: the role says why and changes nothing."""
    root = tmp_path / "host"
    shutil.copytree(DATA / "single-1s4c2t", root, symlinks=True)
    sc = structured("lab", "srv1")  # ext0, int0: not in this tree
    out = play_role(tmp_path, sc, root)
    assert out["stats"]["failures"] == 0 and out["stats"]["changed"] == 0, out
    assert out["tasks"][PIN]["active"] is False
    assert "ext0 is not a device with interrupt vectors" in out["tasks"][PIN]["skip_reasons"]
    assert "changed_irqs" not in out["tasks"][PIN]


def test_role_forced_on_fails_with_the_modules_message(tmp_path: Path) -> None:
    root = tmp_path / "host"
    shutil.copytree(DATA / "single-1s4c2t", root, symlinks=True)
    sc = structured("lab", "srv1")
    out = play_role(tmp_path, sc, root, irq_affinity__enabled=True)
    assert out["stats"]["failures"] == 1
    assert out["tasks"][PIN]["msg"].startswith("unknown NIC ext0")


def test_role_disabled_reads_nothing_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "host"
    shutil.copytree(DATA / "seed-2s6c2t", root, symlinks=True)
    sc = structured("examples/fra1", "fra1-srv01")
    out = play_role(tmp_path, sc, root, irq_affinity__enabled=False)
    assert out["stats"]["changed"] == 0, out
    assert out["tasks"][PIN]["active"] is False and out["tasks"][PIN]["skip_reasons"] == ["disabled"]
    assert (root / "proc/irq/40/smp_affinity_list").read_text().strip() == "0-23"
