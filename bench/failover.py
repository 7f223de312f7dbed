"""How fast a dead service leaves the router's FIB: healthd against anycast-healthchecker.

In one anycast fabric (edgepop.lab.fabric: the lab PoP's rendered router and server BIRD configs in
network namespaces, srv1 preferred), the HTTP service of srv1 is killed, and the time from the kill
to the router's kernel FIB no longer pointing at srv1 is measured, for:

- healthd with its defaults (the data model's check defaults, the healthd role's defaults; flap
  damping off, since back-to-back kills are flaps by design);
- anycast-healthchecker 0.9.10 from PyPI with its defaults (a check every 10 s, 2 failures);
- anycast-healthchecker tuned to a 1 s interval.

Both run the same check (an HTTP GET of /healthz on the anycast address) against the same BIRD; the
difference is the agents. anycast-healthchecker withdraws by rewriting a BIRD include and running
`birdc configure`, so for it srv1's rendered config gets that include and one line in its export
filter. The kills are spread over the check interval (a random wait before each), so the medians
include where in its cycle a check finds the failure, as in production.

Then a graceful drain: SIGTERM to srv1's healthd while a client requests the anycast address every
20 ms, each request a new connection; every request must be answered.

    sudo .venv/bin/python bench/failover.py [--trials 15] [--ahc-trials 3] [--ahc-tuned-trials 6]

Goal: healthd p50 <= 0.3 s and at least 10x faster than anycast-healthchecker's defaults, with zero
failed requests during the drain. Needs root, bird2, busybox and curl; about 4 minutes.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ahc  # bench/ahc.py, beside this file

from edgepop.lab.fabric import Fabric
from edgepop.model.schema import CheckBase

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "inventory" / "lab"
SERVERS = ["srv1", "srv2", "srv3"]
HTTP = "203.0.113.100"


def log(msg: str) -> None:
    print(msg, flush=True)


def model_check_defaults() -> dict[str, Any]:
    """The data model's defaults for a check: what a service gets when the inventory says nothing."""
    return {name: CheckBase.model_fields[name].default for name in ("interval_s", "timeout_s", "rise", "fall")}


def up(fab: Fabric) -> None:
    fab.up()
    fab.wait("every server session", lambda: len(fab.established()) == 2 * len(SERVERS), 30)
    fab.wait("srv1 preferred", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)


def measure(
    fab: Fabric, trials: int, spread_s: float, ready: Callable[[], bool], restore: Callable[[], None]
) -> list[float]:
    """Kill srv1's service `trials` times; seconds from each kill until the FIB leaves srv1."""
    times: list[float] = []
    for n in range(trials):
        fab.wait("srv1 serving and its agent ready", lambda: fab.servers_at(HTTP) == {"srv1"} and ready(), 120)
        time.sleep(random.uniform(0, spread_s))
        start = time.monotonic()
        fab.kill_service("srv1")
        while "srv1" in fab.servers_at(HTTP):
            if time.monotonic() - start > 120:
                raise SystemExit("srv1 never left the FIB: the agent did not act")
            time.sleep(0.005)
        took = time.monotonic() - start
        times.append(took)
        log(f"  trial {n + 1}/{trials}: {took:.3f} s")
        restore()
    return times


def bench_healthd(workdir: Path, trials: int) -> tuple[list[float], dict[str, int], float]:
    defaults = model_check_defaults()
    log(f"healthd, defaults: check every {defaults['interval_s']} s, fall {defaults['fall']}, rise {defaults['rise']}")
    # Flap damping off: back-to-back kills are flaps by design, and damping would rightly keep srv1
    # out after the third; it delays announcing, not withdrawing, so the times are the same.
    fab = Fabric(
        INVENTORY,
        workdir / "healthd",
        servers=SERVERS,
        check_overrides=defaults,
        healthd_settings={"damping": {"enabled": False}},
        tag="epbench",
    )
    try:
        up(fab)

        def ready() -> bool:
            svc = fab.status("srv1")["services"]["http"]
            return bool(svc["health"] == "up" and svc["announced"])

        # healthd restarts the service itself; waiting for srv1 in the FIB again is the restore
        times = measure(fab, trials, float(defaults["interval_s"]), ready, lambda: None)

        log("graceful drain: SIGTERM to srv1's healthd, a client requesting every 20 ms")
        fab.wait("srv1 back", lambda: fab.servers_at(HTTP) == {"srv1"} and ready(), 120)
        poller = fab.poller(interval_s=0.02)
        try:
            fab.wait("the client answered by srv1", lambda: "srv1" in poller.lines(), 10)
            start = time.monotonic()
            fab.servers["srv1"].procs["healthd"].send_signal(signal.SIGTERM)
            fab.wait("srv1 drained", lambda: "srv1" not in fab.servers_at(HTTP), 10)
            drain_s = time.monotonic() - start
            mark = len(poller.lines())
            fab.wait("50 more answers", lambda: len(poller.lines()) > mark + 50, 15)
        finally:
            counts = poller.stop()
        return times, counts, drain_s
    finally:
        fab.down()


def ahc_bird_config(fab: Fabric, include: Path) -> str:
    """srv1's rendered config, with the anycast-healthchecker include deciding the HTTP route."""
    text = fab.bird_config(fab.servers["srv1"], fab.configs["srv1"])
    head = f'include "{include}";  # anycast-healthchecker\'s prefix list\n'
    hook = "filter export_anycast_v4 {\n"
    assert hook in text, "the rendered server config changed: update the bench"
    gate = f"  if net = {HTTP}/32 && !(net ~ {ahc.VARIABLE}) then reject;\n"
    return head + text.replace(hook, hook + gate, 1)


def _ahc_hooks(fab: Fabric, agent_log: Path) -> tuple[Callable[[], bool], Callable[[], None]]:
    """`ready`: the agent has seen the service come up once more than it was restored; `restore`:
    start the service again (anycast-healthchecker does not restart anything)."""
    restored = [0]

    def ready() -> bool:
        return agent_log.read_text(errors="replace").count("changed to UP") > restored[0]

    def restore() -> None:
        restored[0] += 1
        fab.start_service("srv1")

    return ready, restore


def bench_ahc(workdir: Path, runs: list[tuple[str, dict[str, Any], int]]) -> dict[str, list[float]]:
    exe = ahc.ensure_installed(log)
    fab = Fabric(INVENTORY, workdir / "ahc", servers=SERVERS, healthd=False, tag="epbench")
    results: dict[str, list[float]] = {}
    try:
        up(fab)
        srv1 = fab.servers["srv1"]
        include = srv1.workdir / "ahc-prefixes.conf"
        include.write_text(ahc.initial_include(f"{HTTP}/32"))
        fab.install_bird_config("srv1", ahc_bird_config(fab, include))
        fab.wait("srv1 preferred under the include", lambda: fab.servers_at(HTTP) == {"srv1"}, 15)
        for label, settings, trials in runs:
            agent_dir = srv1.workdir / f"ahc-{len(results)}"
            config = ahc.write_config(
                agent_dir,
                bird_socket=srv1.bird_socket,
                birdc=shutil.which("birdc") or "birdc",
                bird_conf=include,
                prefix=f"{HTTP}/32",
                check_cmd=f"curl -sf -o /dev/null -m {settings.get('timeout_s', ahc.DEFAULTS['timeout']):g} "
                f"http://{HTTP}/healthz",
                **settings,
            )
            interval = float(settings.get("interval_s", ahc.DEFAULTS["interval"]))
            log(f"anycast-healthchecker, {label}: check every {interval:g} s")
            out = open(agent_dir / "agent.log", "wb")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                srv1.argv(*ahc.argv(exe, config)), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                results[label] = measure(fab, trials, interval, *_ahc_hooks(fab, agent_dir / "agent.log"))
                # announced again before the agent stops: it leaves its last state in the include
                fab.wait("srv1 announced again", lambda: fab.servers_at(HTTP) == {"srv1"}, 4 * interval + 30)
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                out.close()
    finally:
        fab.down()
    return results


def p50(values: list[float]) -> float:
    return statistics.median(values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15, help="healthd kills (default 15)")
    parser.add_argument("--ahc-trials", type=int, default=3, help="anycast-healthchecker kills, defaults (3)")
    parser.add_argument("--ahc-tuned-trials", type=int, default=6, help="anycast-healthchecker kills, 1 s (6)")
    args = parser.parse_args(argv)
    for tool in ("bird", "birdc", "busybox", "curl", "ip"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} is not installed")
    random.seed(1)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edgepop-failover-") as tmp:
        workdir = Path(tmp)
        hd, drain, drain_s = bench_healthd(workdir, args.trials)
        other = bench_ahc(
            workdir,
            [
                ("defaults", {}, args.ahc_trials),
                ("tuned", {"interval_s": 1.0, "timeout_s": 0.5}, args.ahc_tuned_trials),
            ],
        )
    failed = sum(v for k, v in drain.items() if k.startswith("failed"))
    answered = sum(v for k, v in drain.items() if not k.startswith("failed"))
    base, tuned = other["defaults"], other["tuned"]
    print()
    print("time from service killed to router FIB without the server (median, min-max, trials)")
    rows = [
        ("healthd (defaults)", hd),
        (f"anycast-healthchecker {ahc.DEFAULTS['interval']:g} s (defaults)", base),
        ("anycast-healthchecker 1 s (tuned)", tuned),
    ]
    for label, values in rows:
        print(f"  {label:<44} p50 {p50(values):7.3f} s   {min(values):.3f}-{max(values):.3f}   n={len(values)}")
    print(f"  ratio anycast-healthchecker defaults / healthd: {p50(base) / p50(hd):6.1f}x")
    print(f"  ratio anycast-healthchecker 1 s / healthd:      {p50(tuned) / p50(hd):6.1f}x")
    print(f"graceful drain (SIGTERM): FIB left srv1 after {drain_s:.3f} s; {answered} answered, {failed} failed")
    goal = p50(hd) <= 0.3 and p50(base) / p50(hd) >= 10 and failed == 0
    print(
        f"SUMMARY: healthd withdraws a dead service in {p50(hd):.3f} s (p50), {p50(base) / p50(hd):.0f}x faster than "
        f"anycast-healthchecker's defaults, {p50(tuned) / p50(hd):.1f}x its 1 s tuning; drain: {failed} failed "
        f"requests (goal p50 <= 0.3 s, >= 10x, 0 failed: {'met' if goal else 'MISSED'}; "
        f"{time.monotonic() - started:.0f} s)"
    )
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
