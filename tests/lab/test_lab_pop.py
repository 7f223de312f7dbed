"""The lab PoP for real: containers, veth cabling, BIRD, the playbooks, and a clean `lab down`.

Needs root, podman, nft and the project's image (built on first use, ~35 s). Each test brings the
lab up itself and takes it down in `finally`, also when it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepop.lab.runtime import LABEL, Lab, LabError
from edgepop.validate import load_valid

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "lab"
CACHE = ROOT / ".cache"
CLIENT = "edgepop-lab1-client"

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("podman", "nft", "mmdebstrap", "nsenter")):
    pytest.skip("the lab needs root, podman, nft, nsenter and mmdebstrap", allow_module_level=True)


LAB_VETH = re.compile(r"^ep[0-9a-f]{8}[ab]$")


def _out(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def _leftovers() -> dict[str, str]:
    """Everything the lab could leave behind on this machine, per kind (empty strings: nothing)."""
    return {
        "containers": _out("podman", "ps", "-a", "--filter", f"label={LABEL}=lab1", "--format", "{{.Names}}").strip(),
        "networks": _out("podman", "network", "ls", "--filter", f"label={LABEL}=lab1", "--format", "{{.Name}}").strip(),
        "nft": _out("nft", "list", "tables").count("edgepop_lab_lab1") * "edgepop_lab_lab1",
        # the lab's own temporary cable ends: ep<8 hex digits>a|b (runtime._cable)
        "host veths": " ".join(p.name for p in Path("/sys/class/net").iterdir() if LAB_VETH.match(p.name)),
    }


@pytest.fixture
def lab() -> Iterator[Lab]:
    model = load_valid(INVENTORY)
    lab = Lab(model, CACHE, log=lambda msg: print(f"[lab] {msg}"))
    if any(_leftovers().values()):
        pytest.fail(f"a lab1 lab is already on this machine ({_leftovers()}); run `edgepop lab down` first")
    try:
        yield lab
    finally:
        lab.down()


def _playbook(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_VAULT_PASSWORD_FILE": str(ROOT / "lab" / "vault-password"),
        "ANSIBLE_NOCOLOR": "1",
    }
    return subprocess.run(
        [str(ROOT / ".venv" / "bin" / "ansible-playbook"), str(ROOT / "playbooks" / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=900,
        check=False,
    )


def _served_by(flows: int = 12) -> dict[str, int]:
    # each request is a new flow (a new ephemeral source port), so ECMP hashes them independently
    script = (
        f"for i in $(seq 1 {flows}); do "
        "curl -sS -m 2 -o /dev/null -w 'http served by %header{x-served-by}\\n' http://203.0.113.100/ 2>&1"
        " || true; done"
    )
    counts: dict[str, int] = {}
    for line in _out("podman", "exec", CLIENT, "sh", "-c", script).splitlines():
        counts[line.strip()] = counts.get(line.strip(), 0) + 1
    return counts


def test_up_cables_the_inventory_and_down_leaves_nothing(lab: Lab) -> None:
    lab.up()
    states = {node: state for node, _, state in lab.status()}
    assert states and set(states.values()) == {"running"}, states
    # cabling as the inventory says, with the inventory's MACs
    link = _out("podman", "exec", "edgepop-lab1-srv2", "ip", "-br", "link", "show", "ext0")
    assert "02:00:00:00:02:01" in link
    assert "swp3" in _out("podman", "exec", "edgepop-lab1-sw1", "ip", "-br", "link")
    # the lab's internet is up and waiting for the PoP router
    assert "pop4" in _out("podman", "exec", "edgepop-lab1-transit-a", "birdc", "show", "protocols")
    lab.down()
    assert not any(_leftovers().values()), _leftovers()
    lab.down()  # idempotent


def test_down_cleans_up_after_a_failed_up(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> None:
        raise LabError("injected failure while configuring the providers")

    monkeypatch.setattr(Lab, "_provider", broken)
    with pytest.raises(LabError, match="injected"):
        lab.up()
    assert _leftovers()["containers"], "the failure came after the containers started"
    lab.down()
    assert not any(_leftovers().values()), _leftovers()


@pytest.mark.slow
def test_new_pop_converges_verifies_is_idempotent_and_drains(lab: Lab) -> None:
    lab.up()
    first = _playbook("new_pop.yml")
    assert first.returncode == 0, first.stdout[-4000:]
    assert "from outside: http 200 served by srv1, cached on srv" in first.stdout
    assert _served_by() == {"http served by srv1": 12}

    again = _playbook("new_pop.yml")
    assert again.returncode == 0, again.stdout[-4000:]
    recap = [line for line in again.stdout.splitlines() if " ok=" in line]
    assert recap and all(" changed=0 " in line for line in recap), "\n".join(recap)

    # a failure: healthd withdraws srv1's http routes, restarts the frontline and announces them again
    subprocess.run(["podman", "exec", "edgepop-lab1-srv1", "systemctl", "stop", "edgepop-frontline.target"], check=True)
    seen: list[str] = []
    deadline = time.monotonic() + 45
    while time.monotonic() < deadline:
        answer = _out(
            "podman", "exec", CLIENT, "curl", "-s", "-m", "1", "-o", "/dev/null", "-w", "%header{x-served-by}",
            "http://203.0.113.100/",
        ).strip()  # fmt: skip
        seen.append(answer or "no answer")
        if {"srv2", "srv3"} & set(seen) and seen[-1] == "srv1":
            break
        time.sleep(0.2)
    assert {"srv2", "srv3"} & set(seen), f"traffic never moved off srv1: {seen[-10:]}"
    assert seen[-1] == "srv1", f"srv1 never came back after healthd restarted the frontline: {seen[-10:]}"
    active = _out("podman", "exec", "edgepop-lab1-srv1", "systemctl", "is-active", "edgepop-frontline.target")
    assert active.strip() == "active"

    drained = _playbook("drain.yml", "-l", "srv1")
    assert drained.returncode == 0, drained.stdout[-4000:]
    during = _served_by()
    journal = _out(
        "podman", "exec", "edgepop-lab1-srv1", "journalctl", "-u", "edgepop-healthd", "-n", "40", "--no-pager"
    )
    assert set(during) <= {"http served by srv2", "http served by srv3"}, f"{during}\n{journal}"
    status = _out("podman", "exec", "edgepop-lab1-srv1", "curl", "-s", "http://198.51.100.41:9180/status")
    assert '"drained": true' in status, status  # healthd knows of the drain: it will not undo it
    assert sum(during.values()) == 12, during

    back = _playbook("drain.yml", "-l", "srv1", "-e", "drain__state=undrained")
    assert back.returncode == 0, back.stdout[-4000:]
    assert _served_by() == {"http served by srv1": 12}
