"""provisiond and the real dnsmasq in a network namespace, a bare box played by a second namespace.

The control server's namespace runs dnsmasq with the configuration rendered from inventory/lab
(DHCP + TFTP) and provisiond with the rendered plan; the box's namespace has one veth with srv1's
management MAC and uses busybox's udhcpc and tftp, then curl, the way the image's boot chain does:
a lease with the inventory's hostname and address, the iPXE boot file, boot.ipxe over TFTP, its own
iPXE script over HTTP and its call-home settings (its MAC's secret, served only at its leased
address), then call-home with a known MAC, an unknown MAC, a bad secret and too many requests.
Nothing leaves the two namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepop.agents.provisiond.callhome import box_secret
from edgepop.derive import derive_control
from edgepop.render import render_device
from edgepop.validate import load_valid

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"
CONTROL = "203.0.113.5"
SRV1_MAC = "02:00:00:00:01:00"
SRV1_MACS = [SRV1_MAC, "02:00:00:00:01:01", "02:00:00:00:01:02"]
TOKEN = "lab-callhome-token-0123456789"


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool, package in (("dnsmasq", "dnsmasq-base"), ("busybox", "busybox"), ("curl", "curl"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install {package})"
    return None


if reason := _skip_reason():
    pytest.skip(reason, allow_module_level=True)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src")}


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check, env=ENV)


@dataclass
class Lab:
    server_ns: str
    box_ns: str
    box_if: str
    workdir: Path
    state: Path

    def box(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.box_ns, *argv, check=check, timeout=timeout)

    def requests(self) -> list[dict[str, object]]:
        return [json.loads(x) for x in (self.state / "requests.log").read_text().splitlines()]

    def dhcp(self, mac: str) -> dict[str, str] | None:
        """udhcpc on the box's NIC with this MAC: the lease's variables, or None without a lease."""
        self.box("ip", "link", "set", self.box_if, "down")
        self.box("ip", "addr", "flush", "dev", self.box_if)
        self.box("ip", "link", "set", self.box_if, "address", mac)
        self.box("ip", "link", "set", self.box_if, "up")
        out = self.workdir / "lease.env"
        out.unlink(missing_ok=True)
        argv = ["busybox", "udhcpc", "-i", self.box_if, "-f", "-q", "-n", "-t", "3", "-T", "1"]
        argv += ["-O", "hostname", "-s", str(self.workdir / "udhcpc.sh")]
        self.box(*argv, check=False, timeout=20)
        if not out.is_file():
            return None
        return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)

    def callhome(self, macs: list[str], secret: str | None = None) -> tuple[int, dict[str, object]]:
        """POST /callhome as the image's client: the first MAC is the boot MAC, proven by its secret."""
        secret = box_secret(TOKEN, macs[0]) if secret is None else secret
        argv = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "--max-time", "10"]
        argv += ["-H", f"Authorization: Bearer {secret}"]
        body = json.dumps({"mac": macs[0], "macs": macs})
        argv += ["-H", "Content-Type: application/json", "-d", body]
        out = self.box(*argv, f"http://{CONTROL}:8080/callhome").stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body)


def _render(workdir: Path) -> tuple[Path, Path, Path]:
    """The control server's files from inventory/lab, the token swapped in as the role does."""
    files = render_device(derive_control(load_valid(LAB), "ctl1"))
    tftp = workdir / "tftp"
    ipxe = workdir / "ipxe"
    tftp.mkdir()
    ipxe.mkdir()
    (tftp / "boot.ipxe").write_text(files["boot.ipxe"])
    (tftp / "boot.ipxe").chmod(0o644)
    for rel, text in files.items():
        if rel.startswith("ipxe/"):
            (workdir / rel).write_text(text)
    plan = workdir / "provisiond.json"
    plan.write_text(files["provisiond.json"].replace("<vault:vault_callhome_token>", TOKEN))
    conf = workdir / "dnsmasq.conf"
    conf.write_text(files["dnsmasq-pxe.conf"])
    return conf, tftp, plan


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tag = os.getpid() % 100000
    server_ns, box_ns = f"epztps{tag}", f"epztpc{tag}"
    workdir = tmp_path_factory.mktemp("provisioning")
    state = workdir / "state"
    conf, tftp, plan = _render(workdir)
    (workdir / "udhcpc.sh").write_text(
        f'#!/bin/sh\n[ "$1" = bound ] || exit 0\nenv > {workdir}/lease.env\nip addr add "$ip/$mask" dev "$interface"\n'
    )
    (workdir / "udhcpc.sh").chmod(0o755)
    procs: list[subprocess.Popen[bytes]] = []
    made: list[str] = []
    try:
        for ns in (server_ns, box_ns):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", "epztpv0", "netns", server_ns, "type", "veth", "peer", "epztpv1", "netns", box_ns)
        sh("ip", "-n", server_ns, "addr", "add", f"{CONTROL}/26", "dev", "epztpv0")
        for ns, link in ((server_ns, "epztpv0"), (server_ns, "lo"), (box_ns, "lo")):
            sh("ip", "-n", ns, "link", "set", link, "up")
        dnsmasq = [
            *("ip", "netns", "exec", server_ns, "dnsmasq", "--keep-in-foreground", "--log-facility=-"),
            *(f"--conf-file={conf}", "--interface=epztpv0", "--bind-interfaces", "--no-ping", "--user=root"),
            *(f"--dhcp-leasefile={workdir}/leases", f"--pid-file={workdir}/dnsmasq.pid", f"--tftp-root={tftp}"),
        ]
        with (workdir / "dnsmasq.log").open("wb") as log:
            procs.append(subprocess.Popen(dnsmasq, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        provisiond = [
            *("ip", "netns", "exec", server_ns, str(ROOT / ".venv" / "bin" / "python"), "-m"),
            *("edgepop.agents.provisiond", "--plan", str(plan), "--ipxe-dir", str(workdir / "ipxe")),
            *("--state-dir", str(state), "--listen", CONTROL, "--burst", "4", "--per-minute", "1"),
        ]
        with (workdir / "provisiond.log").open("wb") as log:
            procs.append(
                subprocess.Popen(provisiond, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=ENV)
            )
        wait_for("provisiond to listen", lambda: b"listening on" in (workdir / "provisiond.log").read_bytes())
        assert all(p.poll() is None for p in procs), (workdir / "dnsmasq.log").read_text()
        yield Lab(server_ns, box_ns, "epztpv1", workdir, state)
    finally:
        for proc in procs:
            _stop(proc)
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)
    assert not any(ns in sh("ip", "netns", "list").stdout for ns in made)


def test_known_mac_gets_its_lease_boot_file_and_scripts(lab: Lab) -> None:
    started = time.monotonic()
    lease = lab.dhcp(SRV1_MAC)
    took = time.monotonic() - started
    assert lease is not None, (lab.workdir / "dnsmasq.log").read_text()[-2000:]
    assert lease["ip"] == "203.0.113.11" and lease["hostname"] == "srv1" and lease["mask"] == "26"
    assert lease["boot_file"] == "undionly.kpxe" and lease["siaddr"] == CONTROL  # plain PXE: iPXE first
    assert took < 10
    lab.box("busybox", "tftp", "-g", "-r", "boot.ipxe", "-l", str(lab.workdir / "got.ipxe"), CONTROL)
    assert (lab.workdir / "got.ipxe").read_text().startswith("#!ipxe\n")
    script = lab.box("curl", "-sf", f"http://{CONTROL}:8080/ipxe/02-00-00-00-01-00.ipxe").stdout
    assert "edgepop.host=srv1" in script and f"http://{CONTROL}:8080/image/current/vmlinuz" in script
    assert f"initrd http://{CONTROL}:8080/callhome/02-00-00-00-01-00.cpio" in script
    # the settings the script loads: this MAC's secret, at the address the lease gave, never the token
    settings = lab.workdir / "callhome.cpio"
    lab.box("curl", "-sf", "-o", str(settings), f"http://{CONTROL}:8080/callhome/02-00-00-00-01-00.cpio")
    data = settings.read_bytes()
    assert box_secret(TOKEN, SRV1_MAC).encode() in data and TOKEN.encode() not in data
    # another box of the same network asking for srv1's settings is refused
    lab.box("ip", "addr", "add", "203.0.113.40/26", "dev", lab.box_if)
    try:
        argv = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", "203.0.113.40"]
        code = lab.box(*argv, f"http://{CONTROL}:8080/callhome/02-00-00-00-01-00.cpio").stdout
        assert code == "403"
        # while an unknown MAC's settings go to anyone on the boot network (it may only be queued)
        code = lab.box(*argv, f"http://{CONTROL}:8080/callhome/02-99-00-00-00-01.cpio").stdout
        assert code == "200"
    finally:
        lab.box("ip", "addr", "del", "203.0.113.40/26", "dev", lab.box_if)
    refused = [x for x in lab.requests() if x["path"] == "/callhome/02-00-00-00-01-00.cpio"]
    assert [(x["client"], x["status"]) for x in refused] == [("203.0.113.11", 200), ("203.0.113.40", 403)]


def test_unknown_mac_gets_no_lease(lab: Lab) -> None:
    assert lab.dhcp("02:99:00:00:00:01") is None  # the lab has no pool for unknown MACs
    assert "no address available" in (lab.workdir / "dnsmasq.log").read_text()


def test_callhome_known_unknown_bad_secret_and_too_many(lab: Lab) -> None:
    assert lab.dhcp(SRV1_MAC) is not None
    code, body = lab.callhome(SRV1_MACS)
    assert code == 200 and body["status"] == "known"
    identity = body["identity"]
    assert isinstance(identity, dict) and identity["hostname"] == "srv1"
    code, body = lab.callhome(["02:99:00:00:00:01", "02:99:00:00:00:02"])
    assert code == 202 and body == {"status": "pending"}
    code, body = lab.callhome(SRV1_MACS, secret=TOKEN)  # the PoP token is no box's secret
    assert code == 401 and "identity" not in body
    code, _ = lab.callhome(SRV1_MACS)  # the fourth: the bucket (burst 4) is empty now
    assert code == 200
    code, body = lab.callhome(SRV1_MACS)
    assert code == 429 and body == {"error": "too many requests"}
    lines = [json.loads(x) for x in (lab.state / "requests.log").read_text().splitlines()]
    calls = [x for x in lines if x["path"] == "/callhome"]
    assert [x["result"] for x in calls] == ["known", "pending", "bad_secret", "known", "rate_limited"]
    assert {x["client"] for x in calls} == {"203.0.113.11"}
    pending = lab.box(
        str(ROOT / ".venv" / "bin" / "edgepop"), "provisioning", "pending", "--state-dir", str(lab.state)
    ).stdout
    assert "02:99:00:00:00:01 02:99:00:00:00:02" in pending
