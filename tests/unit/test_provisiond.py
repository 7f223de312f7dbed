"""provisiond: the call-home decision, the HTTP API on loopback, the pending queue and adopt."""

from __future__ import annotations

import json
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
from edgepop.agents.provisiond.callhome import BadRequest, RateLimiter, decide, parse_request, token_ok
from edgepop.agents.provisiond.cli import main as provisiond_main
from edgepop.agents.provisiond.config import ConfigError, Plan, load_plan
from edgepop.agents.provisiond.server import Context, callhome_overlay, make_server
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
    known = decide(plan, [*SRV1_MACS, "02:99:00:00:00:09"])
    assert known.status == "known" and known.host == "srv1"
    assert known.unlisted == ["02:99:00:00:00:09"]
    assert known.identity is not None and known.identity["hostname"] == "srv1"
    assert decide(plan, UNKNOWN).status == "pending"
    conflict = decide(plan, ["02:00:00:00:01:00", "02:00:00:00:02:00"])
    assert conflict.status == "conflict" and conflict.hosts == ["srv1", "srv2"]


def test_identity_carries_network_keys_and_irq_inputs() -> None:
    plan = Plan.model_validate(lab_plan())
    identity = decide(plan, SRV1_MACS).identity
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
    assert parse_request({"macs": ["02:AA:00:00:00:01", "02:aa:00:00:00:01"]}) == ["02:aa:00:00:00:01"]
    for bad in ({}, {"macs": []}, {"macs": ["nope"]}, {"macs": "02:aa:00:00:00:01"}, [1]):
        with pytest.raises(BadRequest):
            parse_request(bad)


def test_token_and_rate_limit() -> None:
    assert token_ok(TOKEN, TOKEN) and not token_ok(TOKEN[:-1], TOKEN) and not token_ok(None, TOKEN)
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


def start(tmp_path: Path, plan: Plan, *, burst: int = 50, store: ImageStore | None = None) -> Iterator[Running]:
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
        overlay=callhome_overlay(plan),
        lock=threading.Lock(),
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


def call(url: str, body: Any, token: str | None = TOKEN) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{url}/callhome", json.dumps(body).encode(), headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def log_lines(run: Running) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run.state / "requests.log").read_text().splitlines()]


def test_known_mac_gets_its_identity(running: Running) -> None:
    status, body, _ = call(running.url, {"macs": SRV1_MACS})
    assert status == 200 and body["status"] == "known"
    assert body["identity"]["hostname"] == "srv1" and body["identity"]["role"] == "server"
    assert not (running.state / "pending.json").exists()
    line = log_lines(running)[-1]
    assert line["result"] == "known" and line["host"] == "srv1" and line["status"] == 200
    assert line["client"] == "127.0.0.1" and line["macs"] == SRV1_MACS


def test_unknown_mac_gets_nothing_and_is_queued(running: Running, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        status, body, _ = call(running.url, {"macs": UNKNOWN})
        assert status == 202 and body == {"status": "pending"}
    entries = pending.read(running.state / "pending.json")
    (entry,) = entries.values()
    assert entry["macs"] == UNKNOWN and entry["calls"] == 2
    assert main(["provisioning", "pending", "--state-dir", str(running.state)]) == 0
    out = capsys.readouterr().out
    assert "02:99:00:00:00:01 02:99:00:00:00:02" in out and "calls 2" in out


def test_bad_token_is_refused_and_logged(running: Running) -> None:
    for token in ("wrong-token-of-the-same-length-xx", None):
        status, body, _ = call(running.url, {"macs": SRV1_MACS}, token)
        assert status == 401 and "identity" not in body
    assert [line["result"] for line in log_lines(running)] == ["bad_token", "bad_token"]
    assert not (running.state / "pending.json").exists()


def test_bad_body_is_refused(running: Running) -> None:
    status, body, _ = call(running.url, {"macs": ["not-a-mac"]})
    assert status == 400 and "not a MAC" in body["error"]


def test_too_many_requests(tmp_path: Path) -> None:
    for run in start(tmp_path, Plan.model_validate(lab_plan()), burst=3):
        codes = [call(run.url, {"macs": SRV1_MACS})[0] for _ in range(3)]
        status, _, headers = call(run.url, {"macs": SRV1_MACS})
        # a client over its limit is refused before its token is even looked at
        bad_token = call(run.url, {"macs": SRV1_MACS}, "nope")[0]
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


def test_callhome_overlay_holds_the_token(running: Running) -> None:
    with urllib.request.urlopen(f"{running.url}/callhome.cpio", timeout=5) as response:
        data = response.read()
    assert data.startswith(b"070701") and b"etc/edgepop/callhome.json" in data
    assert json.dumps(TOKEN).encode() in data and b"TRAILER!!!" in data
    # the DHCP-on-every-port file comes with it: only netbooted boxes have it, never the image itself
    assert b"etc/systemd/network/zz-edgepop-boot.network" in data and b"DHCP=ipv4" in data


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
    assert decide(plan, box).host == "srv5"
    assert main(argv) == 65  # nothing waits with that MAC any more
