"""Pull the image a PoP must serve from the first reachable PoP of its `nearest_pops` list.

The manifest and its signature come first and are checked (key, and the manifest hash the
inventory pins) before a single artifact byte is fetched, so a wrong or stale image costs two small
requests. Artifacts download into `<images>/.incoming-<version>/`, which survives a failed attempt:
the next attempt (or the next PoP) continues each file with an HTTP Range request from the byte it
has. Only when every artifact has its manifest size and sha256 does the store switch `current` to
the new release (atomically); until then, and after any refusal, the last good release is served.
"""

from __future__ import annotations

import http.client
import logging
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from edgepop.agents.provisiond.config import NearestPop, Plan
from edgepop.agents.provisiond.store import ImageStore
from edgepop.image.release import MANIFEST, SIGNATURE, ImageVerifyError, Manifest, check_artifact, verify_manifest

log = logging.getLogger("provisiond.sync")
_CHUNK: Final = 1 << 20
ATTEMPTS_PER_FILE: Final = 4


class SyncError(RuntimeError):
    """No nearest PoP gave a good image; the message has one line per PoP tried."""


def _get(url: str, timeout: float, start: int = 0) -> Any:
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    return urllib.request.urlopen(request, timeout=timeout)


def _small(url: str, timeout: float) -> bytes:
    with _get(url, timeout) as response:
        return bytes(response.read(1 << 20))


def download(url: str, target: Path, size: int, timeout: float) -> int:
    """Fetch `url` into `target` until it has `size` bytes, resuming with Range from what is there.

    Returns the bytes transferred. A connection that breaks mid-way is resumed up to
    ATTEMPTS_PER_FILE times; a source that has fewer bytes than the manifest says leaves `target`
    short, and the caller's size check names it as truncated.
    """
    moved = 0
    for _ in range(ATTEMPTS_PER_FILE):
        have = target.stat().st_size if target.exists() else 0
        if have > size:
            target.unlink()
            have = 0
        if have == size:
            return moved
        try:
            with _get(url, timeout, have) as response:
                resumed = response.status == 206
                if have and not resumed:
                    log.info("%s: the server ignored the Range request; starting over", url)
                with target.open("ab" if resumed else "wb") as out:
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        moved += len(chunk)
        except urllib.error.HTTPError as exc:
            if exc.code == 416:  # nothing past what we have: the source itself is short
                return moved
            raise
        except (OSError, http.client.HTTPException) as exc:
            log.info("%s: transfer broke after %d bytes (%s); resuming", url, moved, exc)
            continue
    return moved


def pull(pop: NearestPop, plan: Plan, store: ImageStore, timeout: float) -> Manifest:
    version = plan.image.version
    base = f"{pop.url.rstrip('/')}/image/{version}/"
    raw = _small(base + MANIFEST, timeout)
    sig = _small(base + SIGNATURE, timeout)
    where = f"{pop.name} {base.rstrip('/')}"
    manifest = verify_manifest(raw, sig, store.trusted_key, where)
    pinned = plan.image.pinned_sha256
    if pinned and manifest.sha256 != pinned:
        raise ImageVerifyError(
            f"{where}/{MANIFEST}: sha256 {manifest.sha256}, the inventory pins {pinned}: refusing the image"
        )
    if manifest.version != version:
        raise ImageVerifyError(f"{where}: the manifest is of version {manifest.version}, expected {version}")
    staging = store.root / f".incoming-{version}"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / MANIFEST).write_bytes(raw)
    (staging / SIGNATURE).write_bytes(sig)
    for name, entry in sorted(manifest.artifacts.items()):
        target = staging / name
        moved = download(base + name, target, int(entry["size"]), timeout)
        log.info("%s: %s: %d bytes fetched", pop.name, name, moved)
        try:
            check_artifact(manifest, name, target, where)
        except ImageVerifyError:
            if target.exists() and target.stat().st_size >= int(entry["size"]):
                target.unlink()  # wrong content: never resume from it
            raise
    return store.activate(staging)


def sync_image(plan: Plan, store: ImageStore, *, timeout: float = 30.0) -> Manifest:
    """The plan's image, pulled and made current unless it is being served already."""
    served = store.served
    if served is not None and served.version == plan.image.version:
        return served
    if not plan.nearest_pops:
        raise SyncError(f"image {plan.image.version}: the inventory lists no nearest_pops to pull it from")
    failures: list[str] = []
    for pop in plan.nearest_pops:
        try:
            manifest = pull(pop, plan, store, timeout)
        except ImageVerifyError as exc:
            failures.append(f"{pop.name}: {exc}")
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{pop.name} ({pop.url}): unreachable: {getattr(exc, 'reason', exc)}")
        else:
            shutil.rmtree(store.root / f".incoming-{plan.image.version}", ignore_errors=True)
            log.info("image %s pulled from %s and verified", manifest.version, pop.name)
            return manifest
    keeping = f"still serving {served.version}" if served else "no image is served"
    raise SyncError(f"image {plan.image.version} not pulled ({keeping}):\n  " + "\n  ".join(failures))


class Syncer:
    """Keeps pulling until the plan's image is served: a new PoP whose WAN comes up late, or a new
    version in a reloaded plan (`wake()`), needs no restart. One attempt per `retry_s` at most."""

    def __init__(self, ctx_plan: Callable[[], Plan], store: ImageStore, retry_s: float = 60.0) -> None:
        self.plan = ctx_plan
        self.store = store
        self.retry_s = retry_s
        self.attempts = 0
        self._wake = threading.Event()
        self._stop = threading.Event()

    def wanted(self) -> bool:
        served = self.store.served
        return served is None or served.version != self.plan().image.version

    def run(self) -> None:
        told = False
        while not self._stop.is_set():
            if self.wanted() and not self.plan().nearest_pops:
                if not told:  # the first PoP: its image is published to it (playbooks/image.yml)
                    log.warning(
                        "image %s is not served and no nearest_pops are listed to pull it from; "
                        "waiting for it to be published",
                        self.plan().image.version,
                    )
                    told = True
            elif self.wanted():
                self.attempts += 1
                try:
                    sync_image(self.plan(), self.store)
                except SyncError as exc:
                    log.error("image sync failed (next attempt in %.0f s): %s", self.retry_s, exc)
            self._wake.wait(self.retry_s)
            self._wake.clear()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
