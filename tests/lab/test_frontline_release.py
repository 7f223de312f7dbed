"""A rolling release of the frontline proxy under steady load: one pinned single-worker NGINX per
core, replaced core by core (edgepop.frontline.release). Zero failed requests, memory never above
the steady state plus one worker, never two workers on one core; a new version that fails its health
check is rolled back on every core already done.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgepop.frontline.lab import HEALTH_BASE, FrontlineNs, Load, Sampler, nginx_conf
from edgepop.frontline.release import ProcessInstances, Release, ReleaseError, cpus_allowed

pytestmark = pytest.mark.lab

if os.geteuid() != 0 or not all(shutil.which(t) for t in ("nginx", "taskset", "curl", "ip")):
    pytest.skip("needs root, nginx, taskset, curl and iproute2", allow_module_level=True)

CORES = list(range(min(2, os.cpu_count() or 1)))


class Frontline:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        self.ns = FrontlineNs(f"epfl{os.getpid() % 100000}")
        self.instances = ProcessInstances(
            config_for=self.config, health=lambda core: f"http://127.0.0.1:{HEALTH_BASE + core}/health",
            rundir=workdir, prefix=self.ns.argv(),
        )  # fmt: skip

    def config(self, core: int, version: str) -> Path:
        path = self.workdir / f"{version}-{core}.conf"
        if version == "broken":  # starts, serves the service, but its health check answers the old version
            text = nginx_conf(self.workdir, "v1", health_port=HEALTH_BASE + core)
        else:
            text = nginx_conf(self.workdir, version, health_port=HEALTH_BASE + core)
        path.write_text(text)
        return path

    def release(self, new: str, old: str = "v1", **kw: object) -> Release:
        return Release(
            self.instances, CORES, old=old, new=new, drain_s=5,
            check=lambda url: self.ns.healthy(url, new), **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    def versions(self) -> dict[int, str]:
        out = {}
        for core in CORES:
            url = f"http://127.0.0.1:{HEALTH_BASE + core}/health"
            # an instance that has a PID but is not listening yet answers nothing (curl exits 7)
            done = (
                subprocess.run(self.ns.argv("curl", "-s", "-m", "1", url), capture_output=True, text=True, check=False)
                if self.instances.pids(core)
                else None
            )
            out[core] = done.stdout.strip() if done is not None and done.returncode == 0 else ""
        return out


@pytest.fixture
def frontline(tmp_path: Path) -> Iterator[Frontline]:
    fl = Frontline(tmp_path)
    try:
        for core in CORES:
            fl.instances.start(core, "v1")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and fl.versions() != dict.fromkeys(CORES, "v1"):
            time.sleep(0.1)
        assert fl.versions() == dict.fromkeys(CORES, "v1")
        yield fl
    finally:
        fl.instances.stop_all()
        fl.ns.delete()
        assert not Path(f"/run/netns/{fl.ns.name}").exists()


def test_rolling_release_under_load_is_flat_and_loses_nothing(frontline: Frontline) -> None:
    sampler = Sampler(frontline.ns)
    load = Load(frontline.ns, frontline.workdir, rate=100).start()
    try:
        time.sleep(1.0)
        for _ in range(20):
            sampler.sample()
            time.sleep(0.02)
        steady = max(sampler.samples)
        one_worker = max(sampler.worker_rss)
        sampler.samples.clear()
        sampler.start()
        reports = []
        for old, new in (("v1", "v2"), ("v2", "v3"), ("v3", "v4")):  # three releases back to back
            reports += frontline.release(new, old=old).run()
            time.sleep(0.5)
        time.sleep(0.5)
        sampler.stop()
    finally:
        sampler.stop()
        result = load.stop() if load.proc is not None and load.proc.poll() is None else {"failed": -1, "ok": 0}
        load.kill()
    print(f"load: {result}; steady {steady} KiB, peak {max(sampler.samples)} KiB, one worker {one_worker} KiB")
    for r in reports:
        print(f"core {r.core}: {r.total_s:.2f} s (stop {r.stop_s:.2f}, start {r.start_s:.2f}, check {r.check_s:.2f})")
    assert result["failed"] == 0, result
    assert int(result["ok"]) > 200  # type: ignore[call-overload]
    assert frontline.versions() == dict.fromkeys(CORES, "v4")
    assert len(reports) == 3 * len(CORES)
    for core in CORES:
        assert all(cpus_allowed(pid) == str(core) for pid in frontline.instances.pids(core))
    assert len(sampler.samples) > 20
    assert max(sampler.samples) <= steady + one_worker, (max(sampler.samples), steady, one_worker)
    assert sampler.shared_core_samples == 0


def test_a_version_failing_its_check_is_rolled_back_everywhere(frontline: Frontline) -> None:
    with pytest.raises(ReleaseError, match="core 0: version broken did not pass its health check"):
        frontline.release("broken", check_timeout_s=1.5).run()
    assert frontline.versions() == dict.fromkeys(CORES, "v1")
