"""Zero-touch provisioning on a real kernel: a diskless qemu guest that has nothing but a MAC.

The control server of tests/vm/ztp is a network namespace with a bridge on the server LAN, the real
dnsmasq (rendered `dnsmasq-pxe.conf`) and provisiond (rendered plan) serving a signed release of
the project's pxe image. The guest netboots with qemu's iPXE ROM (`-boot n`): DHCP gives it srv1's
address and boot.ipxe, provisiond its per-MAC script, the kernel and the rootfs initramfs; in RAM,
the image's call-home client reports its MAC, gets srv1's identity, renames its NIC, brings up
bond0 with srv1's address, installs the operator's key and the IRQ plan inputs. `ansible -m ping`
then reaches it at the inventory's address from inside the namespace.

provisiond's plan is the rendered one with what the role fills in from the vault and the release
(the token, the release's version, manifest hash and public key) and this run's SSH key.

Then a second bare box with a MAC the inventory does not know: it gets a pool address and no role,
waits in the pending queue, is adopted with `edgepop inventory adopt --pending` and becomes srv2.

At most two guests of 1 vCPU; about 4 minutes under TCG on a 2-core machine.
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

from edgepop.agents.provisiond.callhome import box_secret
from edgepop.agents.provisiond.config import ImageSpec
from edgepop.agents.provisiond.store import ImageStore
from edgepop.cli import main as edgepop_main
from edgepop.derive import derive_control
from edgepop.image.boot import INITRAMFS_NAME
from edgepop.image.release import ImageVerifyError, Manifest, generate_key
from edgepop.image.stateless import build_release
from edgepop.validate import load_valid
from edgepop.vm.pxe import Guest, PxeNet
from edgepop.vm.qemu import SSH_OPTIONS

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "tests" / "vm" / "ztp"
CACHE = ROOT / ".cache" / "image"
SERVER, MAC, ADDRESS = "srv1", "52:54:00:e9:10:01", "198.51.100.11"
STRANGER, STRANGER_ADDRESS = "52:54:00:e9:10:99", "198.51.100.12"
CONTROL = "198.51.100.5"
TOKEN = "ztp-proof-token-0123456789abcdef"
TOOLS = ("qemu-system-x86_64", "ip", "ssh", "ssh-keygen", "dnsmasq", "curl", "tar", "zstd", "cpio", "mmdebstrap")

if os.geteuid() != 0 or not all(shutil.which(t) for t in TOOLS) or not Path("/dev/net/tun").exists():
    pytest.skip(f"the ZTP proof needs root, /dev/net/tun and {', '.join(TOOLS)}", allow_module_level=True)


def signed_release(workdir: Path) -> tuple[Path, Manifest, str]:
    """The project's stateless release (kernel, rootfs, agents), signed with a key made for this run."""
    public = generate_key(workdir / "signing.pem")
    made = build_release(workdir / "built", "ztp", workdir / "signing.pem", CACHE)
    return made.release.directory, made.release.manifest, public


@dataclass
class Proof:
    net: PxeNet
    guest: Guest
    key: Path
    release: Path
    manifest: Manifest
    public: str
    timings: dict[str, float] = field(default_factory=dict)

    def ssh(self, command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", *SSH_OPTIONS, "-i", str(self.key), f"root@{ADDRESS}", command]
        return self.net.run(*argv, timeout=timeout, check=False)

    def curl_callhome(self, macs: list[str], secret: str) -> tuple[int, dict[str, Any]]:
        """POST /callhome from the control server's namespace, the first MAC as the boot MAC."""
        argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--max-time", "10", "-X", "POST"]
        argv += ["-H", f"Authorization: Bearer {secret}", "-d", json.dumps({"mac": macs[0], "macs": macs})]
        out = self.net.run(*argv, f"http://{CONTROL}:8080/callhome").stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body)

    def curl_get(self, path: str) -> int:
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]
        return int(self.net.run(*argv, f"http://{CONTROL}:8080{path}", check=False).stdout or 0)


def ansible_ping(net: PxeNet, key: Path, workdir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        "ANSIBLE_SSH_ARGS": f"-o ControlMaster=auto -o ControlPersist=30s -o ControlPath={workdir}/cp-%C",
    }
    argv = ["env", *(f"{k}={v}" for k, v in env.items()), str(ROOT / ".venv" / "bin" / "ansible")]
    argv += ["-i", f"{ADDRESS},", "all", "-m", "ansible.builtin.ping", "-u", "root", "--private-key", str(key)]
    argv += ["-e", "ansible_python_interpreter=/usr/bin/python3", f"--ssh-common-args={' '.join(SSH_OPTIONS)}"]
    return net.run(*argv, timeout=300, check=False)


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    workdir = tmp_path_factory.mktemp("ztp")
    started = time.monotonic()
    release, manifest, public = signed_release(workdir)
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    operator_key = (workdir / "id_ed25519.pub").read_text().strip()

    def fill_in(plan: dict[str, Any]) -> None:
        plan["image"] = {"version": manifest.version, "sha256": manifest.sha256, "public_key": public}
        for host in plan["hosts"]:
            host["identity"]["ssh_authorized_keys"] = [operator_key]

    model = load_valid(INVENTORY)
    tag = os.getpid() % 10000
    net = PxeNet(
        f"epz{tag}",
        derive_control(model, "ctl1"),
        f"{CONTROL}/27",
        workdir,
        TOKEN,
        str(ROOT / ".venv" / "bin" / "python"),
        ROOT / "src",
        fill_in,
    )
    store = ImageStore(net.state / "images", ImageSpec(version="ztp", sha256=manifest.sha256, public_key=public))
    shutil.copytree(release, workdir / "staged")
    store.activate(workdir / "staged")
    timings = {"prepare": time.monotonic() - started}
    try:
        net.start()
        mark = time.monotonic()
        guest = net.guest(SERVER, MAC)
        made = Proof(net, guest, key, release, manifest, public, timings)

        def called_home() -> bool:
            return any(r.get("result") == "known" for r in net.requests())

        timings["bare to call-home"] = guest.wait("call-home", called_home, 600)
        guest.wait("SSH at the inventory address", lambda: made.ssh("true", 20).returncode == 0, 300)
        timings["bare to SSH"] = time.monotonic() - mark
        yield made
    finally:
        errors = net.close()
        (workdir / "timings.json").write_text(json.dumps(timings, indent=1))
        print(f"\nZTP timings: {json.dumps(timings)}; image {manifest.size / 1e6:.1f} MB")
    assert not errors, errors
    assert f"epz{tag}ns" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_ansible_reaches_the_box_at_its_inventory_address(proof: Proof) -> None:
    mark = time.monotonic()
    done = ansible_ping(proof.net, proof.key, proof.net.workdir)
    proof.timings["ansible ping"] = time.monotonic() - mark
    # the project's callback prints YAML (`ping: pong`); the default one JSON (`"ping": "pong"`)
    assert done.returncode == 0 and f"{ADDRESS} | SUCCESS" in done.stdout, done.stdout + done.stderr
    assert re.search(r'"?ping"?: "?pong"?', done.stdout), done.stdout


def test_it_became_its_inventory_host(proof: Proof) -> None:
    out = proof.ssh("hostname; cat /run/edgepop/identity.json").stdout
    hostname, _, identity = out.partition("\n")
    assert hostname == SERVER
    doc = json.loads(identity)
    assert doc["status"] == "known" and doc["identity"]["hostname"] == SERVER
    bonding = proof.ssh("cat /proc/net/bonding/bond0").stdout
    assert "IEEE 802.3ad Dynamic link aggregation" in bonding and "Slave Interface: ext0" in bonding
    addr = proof.ssh("ip -4 -o addr show dev bond0").stdout
    assert f"{ADDRESS}/27" in addr
    # a bond member carries the bond's MAC; its own is kept as the permanent one
    assert proof.ssh("cat /sys/class/net/ext0/bonding_slave/perm_hwaddr").stdout.strip() == MAC


def test_the_agents_came_with_the_image(proof: Proof) -> None:
    code = "import edgepop.agents.healthd, edgepop.agents.provisiond.server, pydantic, cryptography; print('ok')"
    done = proof.ssh(f'PYTHONPATH=/opt/edgepop/lib python3 -c "{code}"')
    assert done.stdout.strip() == "ok", done.stderr


def test_irq_plan_inputs_delivered_and_applied_at_boot(proof: Proof) -> None:
    inputs = json.loads(proof.ssh("cat /etc/edgepop/irq-affinity.json").stdout)
    assert inputs["groups"] == [{"name": "external", "socket": 0, "nics": ["ext0"]}]
    state = proof.ssh("systemctl show -p ActiveState -p Result edgepop-irq-affinity.service").stdout
    assert "ActiveState=active" in state and "Result=success" in state, state
    log = proof.ssh("journalctl -b -u edgepop-irq-affinity.service --no-pager -o cat").stdout
    assert '"changed_irqs"' in log, log


def test_the_boot_went_through_provisiond(proof: Proof) -> None:
    seen = {(r["method"], r["path"], r["status"]) for r in proof.net.requests()}
    for expected in (
        ("GET", "/ipxe/52-54-00-e9-10-01.ipxe", 200),
        ("GET", "/image/current/vmlinuz", 200),
        ("GET", "/image/current/initramfs.cpio.zst", 200),
        ("GET", "/image/current/agents.cpio.gz", 200),
        ("GET", "/callhome/52-54-00-e9-10-01.cpio", 200),
        ("POST", "/callhome", 200),
    ):
        assert expected in seen, sorted(seen)
    leases = (proof.net.workdir / "leases").read_text()
    assert f"{MAC} {ADDRESS} {SERVER}" in leases


def test_unknown_mac_gets_no_role_and_a_bad_secret_is_refused(proof: Proof) -> None:
    code, body = proof.curl_callhome(["52:54:00:e9:99:01"], box_secret(TOKEN, "52:54:00:e9:99:01"))
    assert code == 202 and body == {"status": "pending"}
    for wrong in ("not-this-boxs-secret", TOKEN, box_secret(TOKEN, "52:54:00:e9:99:01")):
        code, body = proof.curl_callhome([MAC], wrong)
        assert code == 401 and "identity" not in body
    # srv1's settings go only to the address its lease gives it, not to the control server's
    assert proof.curl_get("/callhome/52-54-00-e9-10-01.cpio") == 403
    assert proof.curl_get("/callhome.cpio") == 404


def test_an_unknown_box_waits_until_adopted(proof: Proof, tmp_path: Path) -> None:
    """A second bare box whose MAC the inventory does not know: a lease from the pool, the default
    script, call-home answered `pending` and nothing else; then the operator adopts it from the queue
    and the box, still calling home, becomes srv2 at its new address. Two guests: 2 vCPUs."""
    queue = proof.net.state / "pending.json"
    stranger = proof.net.guest("stranger", STRANGER)
    try:
        mark = time.monotonic()
        stranger.wait(
            "the stranger in the pending queue", lambda: queue.is_file() and STRANGER in queue.read_text(), 600
        )
        proof.timings["unknown: bare to pending"] = time.monotonic() - mark
        calls = [r for r in proof.net.requests() if r["path"] == "/callhome" and STRANGER in r.get("macs", [])]
        assert calls and {r["result"] for r in calls} == {"pending"}
        script = [r for r in proof.net.requests() if r["path"] == "/ipxe/52-54-00-e9-10-99.ipxe"]
        assert script and script[0]["known"] is False  # served default.ipxe
        lease = next(line for line in (proof.net.workdir / "leases").read_text().splitlines() if STRANGER in line)
        assert lease.split()[2].startswith("198.51.100.2")  # from dhcp_pool 198.51.100.20-29

        inventory = tmp_path / "ztp"
        shutil.copytree(INVENTORY, inventory)
        argv = ["inventory", "adopt", str(inventory), "--pending", str(proof.net.state), "--mac", STRANGER]
        argv += ["--as", "srv2", "--like", SERVER, "--address-v4", f"bond0={STRANGER_ADDRESS}"]
        argv += ["--switch-port", "ext0=swp2", "--new-switch-ports", "--ansible-host", STRANGER_ADDRESS]
        assert edgepop_main(argv) == 0
        assert STRANGER not in queue.read_text()
        proof.net.replan(derive_control(load_valid(inventory), "ctl1"))
        mark = time.monotonic()

        def adopted() -> bool:
            argv = ["ssh", *SSH_OPTIONS, "-i", str(proof.key), f"root@{STRANGER_ADDRESS}", "hostname"]
            return proof.net.run(*argv, timeout=20, check=False).stdout.strip() == "srv2"

        stranger.wait("the adopted box as srv2", adopted, 300)
        proof.timings["unknown: adopted to ready"] = time.monotonic() - mark
    finally:
        proof.net.stop_guest(stranger)


def test_a_tampered_image_is_refused(proof: Proof, tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(proof.release, copy)
    with (copy / INITRAMFS_NAME).open("r+b") as handle:
        handle.seek(1 << 20)
        byte = handle.read(1)
        handle.seek(1 << 20)
        handle.write(bytes([byte[0] ^ 0xFF]))
    store = ImageStore(tmp_path / "images", ImageSpec(version="ztp", sha256="0" * 64, public_key=proof.public))
    with pytest.raises(ImageVerifyError, match=r"initramfs.cpio.zst: sha256 .* \(tampered\)"):
        store.activate(copy)
    assert store.served is None


def test_bare_to_ready_is_recorded(proof: Proof) -> None:
    assert 5 < proof.timings["bare to call-home"] < proof.timings["bare to SSH"] < 900
    assert proof.manifest.size > 10e6
