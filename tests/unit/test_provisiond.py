"""provisiond: the call-home decision, the HTTP API on loopback, the pending queue and adopt."""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.callhome import BadRequest, RateLimiter, box_secret, decide, parse_request, secret_ok
from edgepop.agents.provisiond.cli import main as provisiond_main
from edgepop.agents.provisiond.config import ConfigError, Plan, load_plan
from edgepop.agents.provisiond.server import Context, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.cli import main
from edgepop.derive import derive_provisioning
from edgepop.image.release import ImageVerifyError, generate_key, load_private_key, write_release
from edgepop.render import ipxe_scripts
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"
TOKEN = "lab-callhome-token-0123456789"
SRV1_MACS = ["02:00:00:00:01:00", "02:00:00:00:01:01", "02:00:00:00:01:02"]
UNKNOWN = ["02:99:00:00:00:01", "02:99:00:00:00:02"]


def lab_plan(**changes: Any) -> dict[str, Any]:
    model = load_valid(LAB)
    doc = derive_provisioning(model, "ctl1")
    doc["callhome_token"] = TOKEN
    doc.update(changes)
    return doc


def test_rendered_plan_loads_and_names_a_placeholder_token(tmp_path: Path) -> None:
    path = tmp_path / "provisiond.json"
    path.write_text(json.dumps(lab_plan(callhome_token="<vault:vault_callhome_token>")))
    with pytest.raises(ConfigError, match="callhome_token: still a <vault:vault_callhome_token> placeholder"):
        load_plan(path)
    path.write_text(json.dumps(lab_plan(listen_port=0, extra=1)))
    with pytest.raises(ConfigError) as caught:
        load_plan(path)
    assert any("listen_port" in e for e in caught.value.errors) and any("extra" in e for e in caught.value.errors)
    path.write_text(json.dumps(lab_plan()))
    assert provisiond_main(["--plan", str(path), "--check-config"]) == 0
    assert TOKEN not in repr(load_plan(path))


def test_decide_known_pending_conflict() -> None:
    plan = Plan.model_validate(lab_plan())
    known = decide(plan, SRV1_MACS[0], [*SRV1_MACS, "02:99:00:00:00:09"])
    assert known.status == "known" and known.host == "srv1"
    assert known.unlisted == ["02:99:00:00:00:09"]
    assert known.identity is not None and known.identity["hostname"] == "srv1"
    assert decide(plan, UNKNOWN[0], UNKNOWN).status == "pending"
    conflict = decide(plan, "02:00:00:00:01:00", ["02:00:00:00:01:00", "02:00:00:00:02:00"])
    assert conflict.status == "conflict" and conflict.hosts == ["srv1", "srv2"]
    # a secret for an unknown MAC is easy to get: it never buys the identity of the MACs beside it
    borrowed = decide(plan, "02:99:00:00:00:09", [*SRV1_MACS, "02:99:00:00:00:09"])
    assert borrowed.status == "unlisted_boot" and borrowed.identity is None and borrowed.host == "srv1"


def test_identity_carries_network_keys_and_irq_inputs() -> None:
    plan = Plan.model_validate(lab_plan())
    identity = decide(plan, SRV1_MACS[0], SRV1_MACS).identity
    assert identity is not None
    nics = {n["name"]: n["mac"] for n in identity["nics"]}
    assert nics == dict(zip(["mgmt0", "ext0", "int0"], SRV1_MACS, strict=True))
    assert {"nic": "mgmt0", "address_v4": "203.0.113.11/26", "address_v6": None} in identity["addresses"]
    irq = identity["irq_plan_inputs"]
    assert sorted(irq) == ["channels", "expect_cpu", "groups", "queues_per_core", "rps", "xps"]
    assert irq["groups"] == [
        {"name": "external", "socket": 0, "nics": ["ext0"]},
        {"name": "internal", "socket": 1, "nics": ["int0"]},
    ]


def test_parse_request() -> None:
    doc = {"mac": "02:AA:00:00:00:01", "macs": ["02:AA:00:00:00:01", "02:aa:00:00:00:01"]}
    assert parse_request(doc) == ("02:aa:00:00:00:01", ["02:aa:00:00:00:01"])
    one = "02:aa:00:00:00:01"
    for bad, why in (
        ({}, "expected a JSON object"),
        ({"mac": one, "macs": []}, "expected 1 to 64 MACs, got 0"),
        ({"mac": one, "macs": ["nope"]}, "'nope' is not a MAC address"),
        ({"mac": one, "macs": one}, "expected a JSON object"),
        ([1], "expected a JSON object"),
        ({"macs": [one]}, '"mac" is missing'),
        ({"mac": "02:aa:00:00:00:02", "macs": [one]}, '"mac" 02:aa:00:00:00:02 is not one of "macs"'),
        ({"mac": 7, "macs": [one]}, "'int' is not a MAC address"),
        ({"mac": one, "macs": [one] * 65}, "expected 1 to 64 MACs, got 65"),
    ):
        with pytest.raises(BadRequest, match=re.escape(why)):
            parse_request(bad)


def test_box_secret_is_per_mac_and_hides_the_token() -> None:
    secret = box_secret(TOKEN, "02:00:00:00:01:00")
    assert secret == box_secret(TOKEN, "02-00-00-00-01-00") == box_secret(TOKEN, "02:00:00:00:01:00".upper())
    assert len(secret) == 64 and TOKEN not in secret
    assert secret != box_secret(TOKEN, "02:00:00:00:01:01") != box_secret("another-pop-token-0123456789", "x")
    assert secret_ok(secret, TOKEN, "02:00:00:00:01:00")
    assert not secret_ok(secret, TOKEN, "02:00:00:00:01:01") and not secret_ok(None, TOKEN, "02:00:00:00:01:00")
    assert not secret_ok(TOKEN, TOKEN, "02:00:00:00:01:00")  # the PoP token itself is no secret of any box


def test_rate_limit() -> None:
    now = [0.0]
    limiter = RateLimiter(burst=2, per_minute=60, clock=lambda: now[0])
    assert [limiter.allow("a")[0] for _ in range(3)] == [True, True, False]
    assert limiter.allow("b")[0]  # per client
    allowed, retry = limiter.allow("a")
    assert not allowed and 0 < retry <= 1.0
    now[0] = 1.0
    assert limiter.allow("a")[0]


def test_rate_limit_holds_under_concurrent_requests() -> None:
    limiter = RateLimiter(burst=5, per_minute=0.001, clock=lambda: 100.0)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(limiter.allow("a")[0])) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(results) == 40 and results.count(True) == 5


# --- the HTTP server on loopback ------------------------------------------------------------------


@dataclass
class Running:
    url: str
    ctx: Context
    state: Path


LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]


def start(
    tmp_path: Path, plan: Plan, *, burst: int = 50, store: ImageStore | None = None, **options: Any
) -> Iterator[Running]:
    state = tmp_path / "state"
    ipxe = tmp_path / "ipxe"
    ipxe.mkdir(exist_ok=True)
    sc = {"hostname": "ctl1", "provisioning": plan.model_dump(mode="json")}
    for rel, text in ipxe_scripts(sc).items():
        (tmp_path / rel).write_text(text)
    ctx = Context(
        plan=plan,
        store=store or ImageStore(state / "images", plan.image),
        ipxe_dir=ipxe,
        pending_file=state / "pending.json",
        log_file=state / "requests.log",
        limiter=RateLimiter(burst, 6),
        **{"boot_networks": LOOPBACK, **options},
    )
    state.mkdir(exist_ok=True)
    server = make_server(ctx, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Running(f"http://127.0.0.1:{server.server_address[1]}", ctx, state)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    yield from start(tmp_path, Plan.model_validate(lab_plan()))


def call(
    url: str, macs: list[str], secret: str | None = None, boot: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """POST /callhome as the image's client does: the boot MAC (the first) proven by its secret."""
    boot = boot or macs[0]
    secret = box_secret(TOKEN, boot) if secret is None else secret
    headers = {"Content-Type": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    body = json.dumps({"mac": boot, "macs": macs}).encode()
    request = urllib.request.Request(f"{url}/callhome", body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def log_lines(run: Running) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run.state / "requests.log").read_text().splitlines()]


def test_known_mac_gets_its_identity(running: Running) -> None:
    status, body, _ = call(running.url, SRV1_MACS)
    assert status == 200 and body["status"] == "known"
    assert body["identity"]["hostname"] == "srv1" and body["identity"]["role"] == "server"
    assert not (running.state / "pending.json").exists()
    line = log_lines(running)[-1]
    assert line["result"] == "known" and line["host"] == "srv1" and line["status"] == 200
    assert line["client"] == "127.0.0.1" and line["macs"] == SRV1_MACS


def test_unknown_mac_gets_nothing_and_is_queued(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        status, body, _ = call(running.url, UNKNOWN)
        assert status == 202 and body == {"status": "pending"}
    entries = pending.read(running.state / "pending.json")
    (entry,) = entries.values()
    assert entry["macs"] == UNKNOWN and entry["calls"] == 2
    assert main(["provisioning", "pending", "--state-dir", str(running.state)]) == 0
    out = capsys.readouterr().out
    assert "02:99:00:00:00:01 02:99:00:00:00:02" in out and "calls 2" in out


def test_bad_secret_is_refused_and_logged(running: Running) -> None:
    wrong = [
        box_secret(TOKEN, SRV1_MACS[1]),  # another MAC's secret
        box_secret("another-pops-token-0123456789", SRV1_MACS[0]),
        TOKEN,  # the PoP token is not a box's secret
        "",
    ]
    for secret in wrong:
        status, body, _ = call(running.url, SRV1_MACS, secret)
        assert status == 401 and body == {"error": "bad or missing secret for this MAC"}
    assert [line["result"] for line in log_lines(running)] == ["bad_secret"] * 4
    assert not (running.state / "pending.json").exists()


def test_bad_body_is_refused(running: Running) -> None:
    status, body, _ = call(running.url, ["not-a-mac"])
    assert status == 400 and body == {"error": "'not-a-mac' is not a MAC address"}


def test_unknown_boot_mac_beside_known_ones_gets_no_identity(running: Running) -> None:
    stranger = "02:99:00:00:00:09"
    status, body, _ = call(running.url, [*SRV1_MACS, stranger], boot=stranger)
    assert status == 403 and body["status"] == "refused" and "identity" not in body
    line = log_lines(running)[-1]
    assert line["result"] == "unlisted_boot" and line["host"] == "srv1" and line["mac"] == stranger


def test_too_many_requests(tmp_path: Path) -> None:
    for run in start(tmp_path, Plan.model_validate(lab_plan()), burst=3):
        codes = [call(run.url, SRV1_MACS)[0] for _ in range(3)]
        status, _, headers = call(run.url, SRV1_MACS)
        # a client over its limit is refused before its secret is even looked at
        bad_token = call(run.url, SRV1_MACS, "nope")[0]
        assert codes == [200, 200, 200] and status == 429 and bad_token == 429
        assert int(headers["Retry-After"]) >= 1
        assert [line["result"] for line in log_lines(run)][-2:] == ["rate_limited", "rate_limited"]


def test_ipxe_scripts_per_mac_and_default(running: Running) -> None:
    with urllib.request.urlopen(f"{running.url}/ipxe/02-00-00-00-01-00.ipxe", timeout=5) as response:
        own = response.read().decode()
    with urllib.request.urlopen(f"{running.url}/ipxe/02-99-00-00-00-01.ipxe", timeout=5) as response:
        default = response.read().decode()
    assert own.startswith("#!ipxe\n") and "edgepop.host=srv1" in own
    assert default.startswith("#!ipxe\n") and "edgepop.host" not in default
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{running.url}/ipxe/..%2Fprovisiond.json", timeout=5)
    assert caught.value.code == 404


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_callhome_overlay_holds_the_macs_secret_never_the_token(running: Running) -> None:
    status, data = fetch(f"{running.url}/callhome/02-99-00-00-00-01.cpio")  # unknown MAC, boot network
    assert status == 200 and data.startswith(b"070701") and b"TRAILER!!!" in data
    assert b"etc/edgepop/callhome.json" in data and TOKEN.encode() not in data
    start_ = data.index(b"{")
    doc = json.loads(data[start_ : data.index(b"\n", start_)])
    assert doc == {
        "url": "http://203.0.113.5:8080/callhome",
        "pop": "lab1",
        "mac": "02:99:00:00:00:01",
        "secret": box_secret(TOKEN, "02:99:00:00:00:01"),
    }
    # the DHCP-on-every-port file comes with it: only netbooted boxes have it, never the image itself
    assert b"etc/systemd/network/zz-edgepop-boot.network" in data and b"DHCP=ipv4" in data
    # the old PoP-wide archive is gone
    assert fetch(f"{running.url}/callhome.cpio")[0] == 404


def test_known_macs_settings_only_at_its_leased_address(tmp_path: Path) -> None:
    """srv1's boot NIC is leased 203.0.113.11: the loopback client is not that box."""
    for run in start(tmp_path, Plan.model_validate(lab_plan())):
        status, data = fetch(f"{run.url}/callhome/02-00-00-00-01-00.cpio")
        assert status == 403 and box_secret(TOKEN, SRV1_MACS[0]).encode() not in data
        assert json.loads(data)["error"].startswith("this MAC's call-home settings are served only to the address")
        assert log_lines(run)[-1]["result"] == "settings_refused"
    doc = lab_plan()
    for host in doc["dhcp_hosts"]:
        if host["hostname"] == "srv1":
            host["address_v4"] = "127.0.0.1"
    (tmp_path / "leased").mkdir()
    for run in start(tmp_path / "leased", Plan.model_validate(doc)):
        status, data = fetch(f"{run.url}/callhome/02-00-00-00-01-00.cpio")
        assert status == 200 and box_secret(TOKEN, SRV1_MACS[0]).encode() in data


def test_unknown_macs_settings_only_on_the_boot_network(tmp_path: Path) -> None:
    """An unknown MAC's settings go to the boot network only (the plan's network_v4 by default)."""
    for run in start(tmp_path, Plan.model_validate(lab_plan()), boot_networks=None):
        status, data = fetch(f"{run.url}/callhome/02-99-00-00-00-01.cpio")
        assert status == 403 and json.loads(data) == {"error": "call-home settings are served only on the boot network"}


# --- serving a release ------------------------------------------------------------------------------


def make_release(tmp_path: Path, version: str = "v1") -> tuple[Path, str]:
    key = tmp_path / "signing.pem"
    public = generate_key(key) if not key.exists() else ""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "vmlinuz").write_bytes(b"k" * 3000)
    (src / "initramfs.cpio.zst").write_bytes(bytes(range(256)) * 1000)
    release = write_release(
        tmp_path / "out",
        version,
        f"inputs-{version}",
        {"vmlinuz": src / "vmlinuz", "initramfs.cpio.zst": src / "initramfs.cpio.zst"},
        {},
        load_private_key(key),
    )
    return release.directory, public


def test_serves_only_the_verified_release_with_ranges(tmp_path: Path) -> None:
    release, public = make_release(tmp_path)
    plan = Plan.model_validate(lab_plan(image={"version": "v1", "sha256": "0" * 64, "public_key": public}))
    store = ImageStore(tmp_path / "state" / "images", plan.image)
    shutil.copytree(release, tmp_path / "staged")
    store.activate(tmp_path / "staged")
    for run in start(tmp_path, plan, store=store):
        with urllib.request.urlopen(f"{run.url}/image/current/initramfs.cpio.zst", timeout=5) as response:
            assert response.read() == bytes(range(256)) * 1000
        ranged = urllib.request.Request(f"{run.url}/image/v1/initramfs.cpio.zst", headers={"Range": "bytes=1000-"})
        with urllib.request.urlopen(ranged, timeout=5) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == "bytes 1000-255999/256000"
            assert response.read() == (bytes(range(256)) * 1000)[1000:]
        for path in ("/image/v2/vmlinuz", "/image/current/signing.pem", "/image/current/..."):
            with pytest.raises(urllib.error.HTTPError) as caught:
                urllib.request.urlopen(run.url + path, timeout=5)
            assert caught.value.code == 404


def test_no_public_key_no_image(tmp_path: Path) -> None:
    release, _ = make_release(tmp_path)
    plan = Plan.model_validate(lab_plan())
    store = ImageStore(tmp_path / "images", plan.image)
    with pytest.raises(ImageVerifyError, match=r"no pop\.provisioning\.image_public_key"):
        store.activate(release)
    assert store.served is None and store.current_dir() is None


# --- adopt ------------------------------------------------------------------------------------------


def test_adopt_from_the_pending_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inventory = tmp_path / "lab"
    shutil.copytree(LAB, inventory)
    state = tmp_path / "state"
    queue = state / "pending.json"
    box = ["02:00:00:00:05:02", "02:00:00:00:05:00", "02:00:00:00:05:01"]
    pending.record(queue, box, "203.0.113.30")
    argv = ["inventory", "adopt", str(inventory), "--pending", str(state), "--mac", "02:00:00:00:05:01"]
    argv += ["--as", "srv5", "--like", "srv4", "--ansible-host", "203.0.113.15", "--new-switch-ports"]
    argv += ["--address-v4", "mgmt0=203.0.113.15", "ext0=198.51.100.15", "int0=198.51.100.45"]
    argv += ["--address-v6", "ext0=2001:db8:0:1::15", "int0=2001:db8:0:2::15"]
    argv += ["--switch-port", "ext0=swp19", "int0=swp20", "--ipmi-address", "203.0.113.25", "--pdu-outlet", "5"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "removed 02:00:00:00:05:00" in capsys.readouterr().out
    assert pending.read(queue) == {}
    model = load_valid(inventory)
    assert sorted(n.mac for n in model.servers["srv5"].nics) == sorted(box)
    plan = Plan.model_validate({**derive_provisioning(model, "ctl1"), "callhome_token": TOKEN})
    assert decide(plan, box[0], box).host == "srv5"
    assert main(argv) == 65  # nothing waits with that MAC any more


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--port", "0"], "argument --port: '0' is out of range: a TCP port from 1 to 65535"),
        (["--port", "65536"], "argument --port: '65536' is out of range: a TCP port from 1 to 65535"),
        (["--port", "http"], "argument --port: 'http' is not a TCP port from 1 to 65535"),
        (["--burst", "0"], "argument --burst: '0' is out of range: a whole number from 1 to 10000"),
        (["--per-minute", "nan"], "argument --per-minute: 'nan' is out of range"),
        (["--http-per-minute", "-1"], "argument --http-per-minute: '-1' is out of range"),
        (["--boot-network", "lan"], "argument --boot-network: 'lan' is not an address prefix"),
    ],
)
def test_command_line_numbers_are_checked(argv: list[str], why: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        provisiond_main(["--check-config", *argv])
    assert caught.value.code == 64
    assert f"provisiond: {why}" in capsys.readouterr().err
