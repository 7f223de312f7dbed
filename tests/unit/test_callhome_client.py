"""The image's call-home client: MACs from sysfs, the answer against a real provisiond on loopback,
and the files it writes (networkd, SSH keys, IRQ plan inputs); the hook that puts it in the image."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents.provisiond.callhome import RateLimiter, box_secret
from edgepop.agents.provisiond.config import Plan
from edgepop.agents.provisiond.server import Context, callhome_overlay, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.derive import derive_provisioning
from edgepop.image import callhome_client as client
from edgepop.image.hook import CALLHOME_SCRIPT, IRQ_INPUTS, IRQ_SCRIPT, customize_hook
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "vm-callhome-token-0123456789"
FRA1_SRV01 = [f"02:00:01:00:01:0{i}" for i in range(6)]
SECRET = box_secret(TOKEN, FRA1_SRV01[0])


def _sysfs(tmp_path: Path, nics: dict[str, tuple[str, str, bool]]) -> Path:
    """name -> (mac, type, has a device)"""
    net = tmp_path / "sys-class-net"
    for name, (mac, kind, physical) in nics.items():
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
        (net / name / "type").write_text(kind + "\n")
        if physical:
            (net / name / "device").mkdir()
    return net


def test_physical_macs_skip_virtual_and_non_ethernet(tmp_path: Path) -> None:
    net = _sysfs(
        tmp_path,
        {
            "ens3": ("52:54:00:AA:00:01", "1", True),
            "ens4": ("52:54:00:aa:00:02", "1", True),
            "lo": ("00:00:00:00:00:00", "772", False),
            "bond0": ("52:54:00:aa:00:01", "1", False),
            "ib0": ("80:00:00:00:00:00", "32", True),
        },
    )
    assert client.physical_macs(net) == {"ens3": "52:54:00:aa:00:01", "ens4": "52:54:00:aa:00:02"}


@pytest.fixture
def provisiond(tmp_path: Path) -> Iterator[str]:
    doc = derive_provisioning(load_valid(ROOT / "inventory" / "examples" / "fra1"), "fra1-ctl01")
    plan = Plan.model_validate({**doc, "callhome_token": TOKEN})
    ctx = Context(
        plan=plan,
        store=ImageStore(tmp_path / "images", plan.image),
        ipxe_dir=tmp_path,
        pending_file=tmp_path / "pending.json",
        log_file=tmp_path / "requests.log",
        limiter=RateLimiter(2, 1),
    )
    server = make_server(ctx, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/callhome"
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_ask_and_write_what_the_answer_says(provisiond: str, tmp_path: Path) -> None:
    status, body, _ = client.ask(provisiond, SECRET, FRA1_SRV01[0], FRA1_SRV01)
    assert status == 200
    identity: dict[str, Any] = body["identity"]
    root = tmp_path / "box"
    written = client.write_identity(identity, root)
    assert (root / "etc/hostname").read_text() == "fra1-srv01\n"
    bond = (root / "etc/systemd/network/20-bond0.netdev").read_text()
    assert "Mode=802.3ad" in bond and "LACPTransmitRate=fast" in bond
    assert "Address=198.51.100.11/26" in (root / "etc/systemd/network/40-bond0.network").read_text()
    assert (root / "etc/systemd/network/10-ext0.link").read_text().startswith("[Match]\nMACAddress=02:00:01:00:01:00")
    keys = root / "root/.ssh/authorized_keys"
    assert keys.read_text().startswith("ssh-ed25519 ") and keys.stat().st_mode & 0o777 == 0o600
    irq = json.loads((root / IRQ_INPUTS.lstrip("/")).read_text())
    assert irq["groups"][0] == {"name": "external", "socket": 0, "nics": ["ext0", "ext1", "ext2"]}
    assert irq["expect_cpu"] == {"sockets": 2, "cores_per_socket": 6, "threads_per_core": 2}
    assert root / "etc/hostname" in written
    # what the irq_affinity role writes on a box with a disk: the same keys
    role_vars = (ROOT / "roles/irq_affinity/vars/main.yml").read_text()
    for key in irq:
        assert f"  {key}:" in role_vars


def test_pending_then_rate_limited(provisiond: str) -> None:
    stranger = "02:99:00:00:00:01"
    status, body, retry = client.ask(provisiond, box_secret(TOKEN, stranger), stranger, [])
    assert (status, body) == (202, {"status": "pending"}) and retry == 0
    assert client.ask(provisiond, SECRET, FRA1_SRV01[0], FRA1_SRV01)[0] == 200
    status, _, retry = client.ask(provisiond, SECRET, FRA1_SRV01[0], FRA1_SRV01)  # burst 2, 1 a minute
    assert status == 429 and retry >= 1


def test_bad_secret(provisiond: str) -> None:
    for wrong in ("wrong-secret", TOKEN, box_secret(TOKEN, FRA1_SRV01[1])):
        status, body, _ = client.ask(provisiond, wrong, FRA1_SRV01[0], FRA1_SRV01)
        assert status == 401 and body == {"error": "bad or missing secret for this MAC"}
        break  # burst 2: one refusal is enough here; test_provisiond covers every kind


def test_config_from_the_overlay(tmp_path: Path) -> None:
    """The settings provisiond serves for a MAC are what the client reads, and nothing older."""
    doc = derive_provisioning(load_valid(ROOT / "inventory" / "examples" / "fra1"), "fra1-ctl01")
    plan = Plan.model_validate({**doc, "callhome_token": TOKEN})
    data = callhome_overlay(plan, FRA1_SRV01[0])
    start = data.index(b"{")
    path = tmp_path / "callhome.json"
    path.write_bytes(data[start : data.index(b"\n", start)])
    config = client.read_config(path)
    assert config["mac"] == FRA1_SRV01[0] and config["secret"] == SECRET and config["url"] == plan.callhome_url
    path.write_text(json.dumps({"url": plan.callhome_url, "token": TOKEN, "pop": "fra1"}))
    with pytest.raises(ValueError, match=r"callhome.json: missing mac, secret \(settings of an older provisiond\?\)"):
        client.read_config(path)
    path.write_bytes(b"\xff{")
    with pytest.raises(ValueError, match=r"callhome\.json: unreadable"):
        client.read_config(path)


def test_refuses_files_outside_networkd() -> None:
    with pytest.raises(ValueError, match="not a systemd-networkd file"):
        client.write_identity({"hostname": "x", "networkd_files": [{"path": "/etc/shadow", "content": ""}]}, Path("/"))


def test_renames_only_what_differs() -> None:
    identity = {"nics": [{"name": "ext0", "mac": "52:54:00:aa:00:01"}, {"name": "ext1", "mac": "52:54:00:aa:00:02"}]}
    current = {"ens3": "52:54:00:aa:00:01", "ext1": "52:54:00:aa:00:02", "ens9": "52:54:00:aa:00:09"}
    assert client.renames(identity, current) == [("ens3", "ext0")]


def test_pxe_image_carries_the_client_the_irq_script_and_their_units() -> None:
    pxe = customize_hook("pxe")
    assert f'cat > "$root{CALLHOME_SCRIPT}"' in pxe and f'cat > "$root{IRQ_SCRIPT}"' in pxe
    assert "systemctl enable edgepop-callhome.service edgepop-irq-affinity.service" in pxe
    assert f"ConditionPathExists={IRQ_INPUTS}" in pxe and "After=systemd-networkd.service edgepop-callhome" in pxe
    assert (ROOT / "src/edgepop/image/callhome_client.py").read_text() in pxe
    assert "ConditionVirtualization=!container" in pxe  # the lab's containers share this rootfs
    assert "zz-edgepop-boot.network" not in pxe  # DHCP on every port comes with call-home only
    # the hook is valid sh, here-documents included
    assert subprocess.run(["sh", "-n"], input=pxe, text=True, check=False).returncode == 0
