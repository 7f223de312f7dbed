"""Image sync between two provisiond instances on loopback: the nearest PoP that answers, a resumed
transfer, and tampered or truncated images refused while the last good one keeps being served."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents.provisiond.callhome import RateLimiter
from edgepop.agents.provisiond.config import ImageSpec, Plan
from edgepop.agents.provisiond.server import Context, Handler, make_server
from edgepop.agents.provisiond.store import ImageStore
from edgepop.agents.provisiond.sync import Syncer, SyncError, sync_image
from edgepop.derive import derive_provisioning
from edgepop.image.release import ImageVerifyError, generate_key, load_private_key, write_release
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
INITRAMFS = bytes(range(256)) * 4096  # 1 MiB


def _plan(version: str, public: str, nearest: list[dict[str, str]], sha256: str = "0" * 64) -> Plan:
    doc = derive_provisioning(load_valid(ROOT / "inventory" / "lab"), "ctl1")
    doc.update(
        callhome_token="lab-callhome-token-0123456789",
        image={"version": version, "sha256": sha256, "public_key": public},
        nearest_pops=nearest,
    )
    return Plan.model_validate(doc)


def _release(tmp_path: Path, key: Path, version: str, initramfs: bytes = INITRAMFS) -> Path:
    src = tmp_path / f"src-{version}"
    src.mkdir()
    (src / "vmlinuz").write_bytes(b"kernel-" + version.encode())
    (src / "initramfs.cpio.zst").write_bytes(initramfs)
    arts = {"vmlinuz": src / "vmlinuz", "initramfs.cpio.zst": src / "initramfs.cpio.zst"}
    return write_release(tmp_path / "built", version, f"in-{version}", arts, {}, load_private_key(key)).directory


class Source:
    """A provisiond serving one release; `cut_after` makes the next artifact transfers break mid-way."""

    def __init__(self, tmp_path: Path, plan: Plan, release: Path) -> None:
        self.store = ImageStore(tmp_path / "images", plan.image)
        shutil.copytree(release, tmp_path / "staged")
        self.store.activate(tmp_path / "staged")
        self.cut_after: list[int] = []
        self.ranges: list[str | None] = []  # the Range header of each artifact request
        source = self

        class Flaky(Handler):
            def _copy(self, src: Any, start: int, length: int) -> int:
                if "/manifest." in self.path:
                    return super()._copy(src, start, length)
                source.ranges.append(self.headers.get("Range"))
                if source.cut_after:
                    limit = source.cut_after.pop(0)
                    src.seek(start)
                    self.wfile.write(src.read(limit))
                    self.close_connection = True
                    return limit
                return super()._copy(src, start, length)

        self.ctx = Context(
            plan=plan,
            store=self.store,
            ipxe_dir=tmp_path,
            pending_file=tmp_path / "pending.json",
            log_file=tmp_path / "requests.log",
            limiter=RateLimiter(10, 10),
        )
        self.server = make_server(self.ctx, "127.0.0.1", 0)
        self.server.RequestHandlerClass = type("Bound", (Flaky,), {"ctx": self.ctx})
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def pki(tmp_path: Path) -> tuple[Path, str]:
    key = tmp_path / "signing.pem"
    return key, generate_key(key)


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A loopback port nothing listens on: the nearest PoP that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield f"http://127.0.0.1:{port}/"


@pytest.fixture
def source(tmp_path: Path, pki: tuple[Path, str]) -> Iterator[Source]:
    release = _release(tmp_path, pki[0], "v2")
    (tmp_path / "a").mkdir()
    src = Source(tmp_path / "a", _plan("v2", pki[1], []), release)
    yield src
    src.close()


def _target(tmp_path: Path, pki: tuple[Path, str], nearest: list[dict[str, str]], **kw: Any) -> ImageStore:
    plan = _plan("v2", pki[1], nearest, **kw)
    store = ImageStore(tmp_path / "b" / "images", plan.image)
    return store


def test_first_reachable_pop_wins_and_transfer_resumes(
    tmp_path: Path, pki: tuple[Path, str], source: Source, dead_url: str
) -> None:
    nearest = [{"name": "down1", "url": dead_url}, {"name": "up1", "url": source.url}]
    plan = _plan("v2", pki[1], nearest)
    store = ImageStore(tmp_path / "b" / "images", plan.image)
    source.cut_after = [300000, 200000]  # the initramfs breaks twice, then completes
    started = time.monotonic()
    manifest = sync_image(plan, store, timeout=5)
    assert time.monotonic() - started < 10
    assert manifest.version == "v2" and store.served == manifest
    assert (store.root / "current" / "initramfs.cpio.zst").read_bytes() == INITRAMFS
    # sorted artifacts: initramfs first (cut at 300000, then resumed at 300000 and cut again), then the kernel
    assert source.ranges[:3] == [None, "bytes=300000-", "bytes=500000-"]
    assert not any(p.name.startswith(".incoming") for p in store.root.iterdir())
    # nothing to do the second time
    assert sync_image(plan, store, timeout=5) == manifest


def test_a_partial_file_from_an_earlier_run_is_resumed(tmp_path: Path, pki: tuple[Path, str], source: Source) -> None:
    plan = _plan("v2", pki[1], [{"name": "up1", "url": source.url}])
    store = ImageStore(tmp_path / "b" / "images", plan.image)
    incoming = store.root / ".incoming-v2"
    incoming.mkdir(parents=True)
    (incoming / "initramfs.cpio.zst").write_bytes(INITRAMFS[:123456])
    sync_image(plan, store, timeout=5)
    assert "bytes=123456-" in source.ranges
    assert (store.root / "v2" / "initramfs.cpio.zst").read_bytes() == INITRAMFS


def _good_v1(tmp_path: Path, pki: tuple[Path, str], nearest: list[dict[str, str]]) -> tuple[Plan, ImageStore]:
    """A target already serving v1, about to pull v2."""
    old = _release(tmp_path, pki[0], "v1")
    store = ImageStore(tmp_path / "b" / "images", _plan("v1", pki[1], []).image)
    shutil.copytree(old, tmp_path / "b-staged")
    store.activate(tmp_path / "b-staged")
    plan = _plan("v2", pki[1], nearest)
    store.spec = plan.image
    return plan, store


def test_tampered_image_is_refused_and_the_last_good_one_served(
    tmp_path: Path, pki: tuple[Path, str], source: Source
) -> None:
    plan, store = _good_v1(tmp_path, pki, [{"name": "up1", "url": source.url}])
    served = source.store.root / "v2" / "initramfs.cpio.zst"
    data = bytearray(served.read_bytes())
    data[4242] ^= 0x01
    served.write_bytes(bytes(data))
    with pytest.raises(SyncError) as caught:
        sync_image(plan, store, timeout=5)
    message = str(caught.value)
    assert "still serving v1" in message and "up1:" in message
    assert "initramfs.cpio.zst: sha256" in message and "(tampered)" in message
    assert store.served is not None and store.served.version == "v1"
    assert (store.root / "current").resolve().name == "v1"
    assert not (store.root / ".incoming-v2" / "initramfs.cpio.zst").exists()  # never resumed from


def test_truncated_image_is_refused(tmp_path: Path, pki: tuple[Path, str], source: Source) -> None:
    plan, store = _good_v1(tmp_path, pki, [{"name": "up1", "url": source.url}])
    served = source.store.root / "v2" / "initramfs.cpio.zst"
    served.write_bytes(served.read_bytes()[:700000])
    with pytest.raises(SyncError, match=r"truncated: 700000 of 1048576 bytes") as caught:
        sync_image(plan, store, timeout=5)
    assert "still serving v1" in str(caught.value)
    assert (store.root / "current").resolve().name == "v1"


def test_manifest_signed_with_another_key_is_refused_before_any_download(
    tmp_path: Path, pki: tuple[Path, str], source: Source
) -> None:
    other = generate_key(tmp_path / "other.pem")
    plan = _plan("v2", other, [{"name": "up1", "url": source.url}])
    store = ImageStore(tmp_path / "b" / "images", plan.image)
    with pytest.raises(SyncError, match=r"wrong key") as caught:
        sync_image(plan, store, timeout=5)
    assert "no image is served" in str(caught.value)
    assert source.ranges == []  # no artifact was requested


def test_manifest_hash_pinned_by_the_inventory(tmp_path: Path, pki: tuple[Path, str], source: Source) -> None:
    plan = _plan("v2", pki[1], [{"name": "up1", "url": source.url}], sha256="ab" * 32)
    store = ImageStore(tmp_path / "b" / "images", plan.image)
    with pytest.raises(SyncError, match="the inventory pins abab"):
        sync_image(plan, store, timeout=5)
    manifest = json.loads((source.store.root / "v2" / "manifest.json").read_text())
    assert manifest["version"] == "v2" and source.ranges == []


def test_every_pop_down(tmp_path: Path, pki: tuple[Path, str], dead_url: str) -> None:
    plan = _plan("v2", pki[1], [{"name": "down1", "url": dead_url}, {"name": "down2", "url": dead_url}])
    store = ImageStore(tmp_path / "images", plan.image)
    with pytest.raises(SyncError) as caught:
        sync_image(plan, store, timeout=2)
    lines = str(caught.value).splitlines()
    assert "no image is served" in lines[0]
    assert lines[1].strip().startswith("down1") and "unreachable" in lines[1]
    assert lines[2].strip().startswith("down2")


def _until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_syncer_keeps_trying_and_a_new_plan_wakes_it(
    tmp_path: Path, pki: tuple[Path, str], source: Source, dead_url: str
) -> None:
    plans = [_plan("v2", pki[1], [{"name": "down1", "url": dead_url}])]
    store = ImageStore(tmp_path / "b" / "images", plans[0].image)
    syncer = Syncer(lambda: plans[-1], store, retry_s=60)
    thread = threading.Thread(target=syncer.run, daemon=True)
    thread.start()
    try:
        assert _until(lambda: syncer.attempts == 1)
        assert store.served is None
        # the WAN to the second PoP comes up; the reloaded plan wakes the syncer long before its retry
        plans.append(_plan("v2", pki[1], [{"name": "down1", "url": dead_url}, {"name": "up1", "url": source.url}]))
        syncer.wake()
        assert _until(lambda: store.served is not None and store.served.version == "v2")
        assert syncer.attempts == 2
    finally:
        syncer.stop()
        thread.join(5)
    assert not thread.is_alive()


def test_a_reloaded_plan_keeps_the_last_good_image_served(
    tmp_path: Path, pki: tuple[Path, str], source: Source
) -> None:
    plan, store = _good_v1(tmp_path, pki, [{"name": "up1", "url": source.url}])
    pinned = json.loads(json.dumps(plan.image.model_dump()))
    pinned["sha256"] = hashlib.sha256((source.store.root / "v2" / "manifest.json").read_bytes()).hexdigest()
    store.spec = ImageSpec.model_validate(pinned)  # the plan now pins v2, which is not here yet
    assert store.load() is not None and store.served is not None and store.served.version == "v1"
    (store.root / "v1" / "vmlinuz").write_bytes(b"tampered")  # but v1 must still be intact
    with pytest.raises(ImageVerifyError, match="vmlinuz"):
        store.load()
    assert store.served is None
