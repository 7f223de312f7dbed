"""Frontline release: edgepop's per-core release against NGINX's stock binary upgrade, same load.

Both run in a network namespace on this machine with one worker per core (two cores here) under the
same steady load (new connection per request). The baseline is NGINX's own upgrade: USR2 to the
master (a second master and a second set of workers start), WINCH to the old master (its workers
finish and exit), QUIT to the old master. edgepop's release (edgepop.frontline.release) replaces
the single-worker instance of one core at a time. Printed for each: failed requests, peak resident
memory of all NGINX processes against the steady state, samples where two workers could run on the
same core, and the ratios.

    sudo .venv/bin/python bench/upgrade.py [--rate 100] [--releases 3]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgepop.frontline.lab import HEALTH_BASE, FrontlineNs, Load, Sampler, nginx_conf
from edgepop.frontline.release import ProcessInstances, Release

CORES = list(range(min(2, os.cpu_count() or 1)))


def steady(sampler: Sampler) -> int:
    for _ in range(25):
        sampler.sample()
        time.sleep(0.02)
    value = max(sampler.samples)
    sampler.samples.clear()
    return value


def wait_for(what: str, predicate: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def stock(workdir: Path, rate: float, releases: int) -> dict[str, float]:
    ns = FrontlineNs(f"epbup{os.getpid() % 100000}")
    load: Load | None = None
    try:
        conf = workdir / "stock.conf"
        affinity = " ".join(format(1 << c, "b").zfill(len(CORES)) for c in CORES)
        conf.write_text(nginx_conf(workdir, "v1", workers=len(CORES), health_port=None, affinity=affinity, daemon=True))
        pidfile = workdir / "stock.pid"
        # daemonized: NGINX ignores USR2 in a master whose parent is still the one that started it
        subprocess.run(ns.argv("/usr/sbin/nginx", "-c", str(conf), "-g", f"pid {pidfile};"), check=True)
        wait_for("NGINX", lambda: len(ns.nginx_pids()) == 1 + len(CORES))
        sampler = Sampler(ns)
        load = Load(ns, workdir, rate=rate).start()
        time.sleep(1.0)
        base = steady(sampler)
        sampler.start()
        for _ in range(releases):
            old = int(pidfile.read_text())
            os.kill(old, signal.SIGUSR2)  # a second master and workers, same binary and config
            wait_for("the new master", lambda: Path(f"{pidfile}.oldbin").exists() and pidfile.exists())
            wait_for("the new workers", lambda: len(ns.nginx_pids()) == 2 * (1 + len(CORES)))
            os.kill(old, signal.SIGWINCH)  # the old workers finish and exit
            wait_for("the old workers to exit", lambda: len(ns.nginx_pids()) == 2 + len(CORES))
            os.kill(old, signal.SIGQUIT)
            wait_for("the old master to exit", lambda: len(ns.nginx_pids()) == 1 + len(CORES))
            time.sleep(0.5)
        time.sleep(0.5)
        sampler.stop()
        result = load.stop()
        os.kill(int(pidfile.read_text()), signal.SIGQUIT)
        return {
            "failed": float(result["failed"]),  # type: ignore[arg-type]
            "ok": float(result["ok"]),  # type: ignore[arg-type]
            "steady_kib": base,
            "peak_kib": max(sampler.samples),
            "shared_core_samples": sampler.shared_core_samples,
        }
    finally:
        if load is not None:
            load.kill()  # a run cut short must not leave its client behind
        ns.delete()


def per_core(workdir: Path, rate: float, releases: int) -> dict[str, float]:
    ns = FrontlineNs(f"epbpc{os.getpid() % 100000}")
    load: Load | None = None
    instances = ProcessInstances(
        config_for=lambda core, version: _write(workdir / f"{version}-{core}.conf",
                                                nginx_conf(workdir, version, health_port=HEALTH_BASE + core)),
        health=lambda core: f"http://127.0.0.1:{HEALTH_BASE + core}/health",
        rundir=workdir, prefix=ns.argv(),
    )  # fmt: skip
    try:
        for core in CORES:
            instances.start(core, "v1")
        wait_for("NGINX", lambda: len(ns.nginx_pids()) == 2 * len(CORES))
        sampler = Sampler(ns)
        load = Load(ns, workdir, rate=rate).start()
        time.sleep(1.0)
        base = steady(sampler)
        sampler.start()
        for n in range(releases):
            old, new = f"v{n + 1}", f"v{n + 2}"
            Release(instances, CORES, old=old, new=new, drain_s=5, check=lambda url, v=new: ns.healthy(url, v),
                    log=lambda msg: None).run()  # fmt: skip
            time.sleep(0.5)
        time.sleep(0.5)
        sampler.stop()
        result = load.stop()
        return {
            "failed": float(result["failed"]),  # type: ignore[arg-type]
            "ok": float(result["ok"]),  # type: ignore[arg-type]
            "steady_kib": base,
            "peak_kib": max(sampler.samples),
            "shared_core_samples": sampler.shared_core_samples,
        }
    finally:
        if load is not None:
            load.kill()
        instances.stop_all()
        ns.delete()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    parser.add_argument("--releases", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/upgrade.py needs root (network namespaces)", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory(prefix="edgepop-upgrade-") as tmp:
        (Path(tmp) / "tmp").mkdir()
        base = stock(Path(tmp), args.rate, args.releases)
        ours = per_core(Path(tmp), args.rate, args.releases)
    for name, r in (("nginx binary upgrade", base), ("edgepop per-core", ours)):
        print(
            f"  {name:22} requests {r['ok']:6.0f} ok {r['failed']:4.0f} failed"
            f"   steady {r['steady_kib'] / 1024:6.1f} MiB"
            f"   peak {r['peak_kib'] / 1024:6.1f} MiB ({r['peak_kib'] / r['steady_kib']:.2f}x steady)"
            f"   samples with two workers on a core: {r['shared_core_samples']:.0f}"
        )
    ratio = (base["peak_kib"] / base["steady_kib"]) / (ours["peak_kib"] / ours["steady_kib"])
    print(f"peak memory over steady: binary upgrade {base['peak_kib'] / base['steady_kib']:.2f}x, "
          f"per-core {ours['peak_kib'] / ours['steady_kib']:.2f}x (ratio {ratio:.2f}); "
          f"failed requests {base['failed']:.0f} vs {ours['failed']:.0f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
