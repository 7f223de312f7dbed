"""Bare to ready: a diskless server that only has a MAC, netbooted from provisiond, against the same
image booted directly by qemu (the baseline: no firmware PXE, no iPXE, no image download).

The PoP is tests/vm/ztp; its control server is a network namespace (edgepop.vm.pxe) running the
real dnsmasq and provisiond with the rendered configuration, serving a release of the project's
pxe image signed for this run. Both boots use the same MAC, the same image and the same call-home:

- PXE (zero touch): qemu `-boot n` -> DHCP -> boot.ipxe (TFTP) -> per-MAC script, kernel and
  initramfs (HTTP, provisiond) -> image in RAM -> call-home -> bond and address -> SSH;
- direct (baseline): qemu `-kernel/-initrd` with the same kernel, initramfs, agents and call-home
  settings -> the same from "image in RAM" on.

"Ready" is SSH answering at the inventory address as the inventory host. Printed: the image's size
(what every server loads into RAM), both boots' times to call-home and to ready, and the ratio
PXE / direct. One guest at a time, 1 vCPU; about 4 minutes under TCG on a 2-core machine.

    sudo .venv/bin/python bench/ztp.py [--check]

Goal: ready within 5 minutes of power-on, and PXE costing at most 2x the direct boot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from edgepop.agents.provisiond.config import ImageSpec, Plan  # noqa: E402
from edgepop.agents.provisiond.server import callhome_entries  # noqa: E402
from edgepop.agents.provisiond.store import ImageStore  # noqa: E402
from edgepop.derive import derive_control  # noqa: E402
from edgepop.image.boot import INITRAMFS_NAME, boot_artifacts, write_initrd  # noqa: E402
from edgepop.image.release import generate_key  # noqa: E402
from edgepop.image.stateless import AGENTS_NAME, build_release  # noqa: E402
from edgepop.validate import load_valid  # noqa: E402
from edgepop.vm.pxe import Guest, PxeNet  # noqa: E402
from edgepop.vm.qemu import SSH_OPTIONS  # noqa: E402

INVENTORY = ROOT / "tests" / "vm" / "ztp"
CACHE = ROOT / ".cache" / "image"
MAC, ADDRESS, CONTROL = "52:54:00:e9:10:01", "198.51.100.11", "198.51.100.5"
TOKEN = "ztp-bench-token-0123456789abcdef"
GOAL_READY_S = 300.0
GOAL_RATIO = 2.0


def boot(net: PxeNet, key: Path, name: str, direct: tuple[Path, Path] | None) -> dict[str, float]:
    """Start a guest, time call-home and SSH-as-the-inventory-host, stop it."""
    known_before = sum(1 for r in net.requests() if r.get("result") == "known")
    started = time.monotonic()
    guest: Guest = net.guest(name, MAC, direct=direct)
    try:
        called = guest.wait(
            "call-home", lambda: sum(1 for r in net.requests() if r.get("result") == "known") > known_before, 600
        )

        def ready() -> bool:
            argv = ["ssh", *SSH_OPTIONS, "-i", str(key), f"root@{ADDRESS}", "hostname"]
            return net.run(*argv, timeout=20, check=False).stdout.strip() == "srv1"

        guest.wait("SSH as srv1", ready, 300)
        return {"call-home": called, "ready": time.monotonic() - started}
    finally:
        net.stop_guest(guest)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/ztp.py needs root (network namespaces, taps)", file=sys.stderr)
        return 77
    workdir = Path(tempfile.mkdtemp(prefix="edgepop-ztp-bench-"))
    net: PxeNet | None = None
    try:
        public = generate_key(workdir / "signing.pem")
        made = build_release(workdir / "built", "ztp", workdir / "signing.pem", CACHE)
        release, tarball = made.release, made.tarball
        artifacts = boot_artifacts(tarball, CACHE)
        manifest = release.manifest
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / "id")], check=True)
        operator_key = (workdir / "id.pub").read_text().strip()

        def fill_in(plan: dict[str, Any]) -> None:
            plan["image"] = {"version": "ztp", "sha256": manifest.sha256, "public_key": public}
            for host in plan["hosts"]:
                host["identity"]["ssh_authorized_keys"] = [operator_key]

        net = PxeNet(
            f"epzb{os.getpid() % 1000}",
            derive_control(load_valid(INVENTORY), "ctl1"),
            f"{CONTROL}/27",
            workdir,
            TOKEN,
            sys.executable,
            ROOT / "src",
            fill_in,
        )
        ImageStore(net.state / "images", ImageSpec(version="ztp", sha256=manifest.sha256, public_key=public)).activate(
            release.directory
        )
        net.start()
        plan = Plan.model_validate_json((workdir / "provisiond.json").read_text())
        # what iPXE hands the kernel: the rootfs, the agents, the call-home settings, one after another
        base = workdir / "rootfs+agents"
        with base.open("wb") as out:
            for part in (INITRAMFS_NAME, AGENTS_NAME):
                out.write((net.state / "images" / "current" / part).read_bytes())
                out.write(b"\0" * (-out.tell() % 512))
        direct_initrd = write_initrd(base, callhome_entries(plan, MAC), workdir / "direct.initrd")
        pxe = boot(net, workdir / "id", "srv1", None)
        direct = boot(net, workdir / "id", "srv1-direct", (artifacts.kernel, direct_initrd))
    finally:
        errors = net.close() if net is not None else []
        shutil.rmtree(workdir, ignore_errors=True)
    if errors:
        print(f"clean-up errors: {errors}", file=sys.stderr)
    sizes = {name: int(a["size"]) for name, a in manifest.artifacts.items()}
    print(f"image {manifest.version}: {manifest.size / 1e6:.1f} MB served per boot")
    for name, size in sorted(sizes.items()):
        print(f"  {name:<20} {size / 1e6:8.1f} MB")
    print(f"  {'rootfs tarball':<20} {tarball.stat().st_size / 1e6:8.1f} MB")
    print(f"{'boot':<28}{'call-home s':>12}{'ready s':>10}")
    print(f"{'PXE (zero touch)':<28}{pxe['call-home']:>12.1f}{pxe['ready']:>10.1f}")
    print(f"{'direct kernel (baseline)':<28}{direct['call-home']:>12.1f}{direct['ready']:>10.1f}")
    ratio = pxe["ready"] / direct["ready"]
    ok = pxe["ready"] <= GOAL_READY_S and ratio <= GOAL_RATIO
    print(
        f"SUMMARY: bare-to-ready {pxe['ready']:.0f} s over PXE vs {direct['ready']:.0f} s direct "
        f"(x{ratio:.2f}), image {manifest.size / 1e6:.0f} MB; goal <= {GOAL_READY_S:.0f} s and "
        f"<= x{GOAL_RATIO:.1f}: {'met' if ok else 'MISSED'}"
    )
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
