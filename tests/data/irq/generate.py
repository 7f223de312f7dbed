"""Write the recorded IRQ layouts under tests/data/irq/ (committed; re-run only to change them).

Each layout is the part of a host's /proc and /sys that the irq_affinity module reads, with the
names and numbering the drivers use:

- seed-2s6c2t: 2 sockets x 6 cores x 2 threads (24 CPUs, Linux's x86 numbering: cpu0-5 socket 0,
  cpu6-11 socket 1, cpu12-23 their SMT siblings), six igb-style 1 GbE ports ext0-2/int0-2 with 8
  TxRx vectors each plus a link vector named after the port, every vector at the boot default 0-23.
- single-1s4c2t: one socket, 4 cores x 2 threads, core_id with gaps (0, 1, 4, 5) as some BIOSes
  number them; eth0/eth1 (i40e-style names and a "misc" vector), 4 queues each; IRQ 60
  (eth0-TxRx-0) already pinned where the plan puts it.
- virtio-1s4c: a qemu guest, 4 CPUs on one socket, two virtio-net NICs with 4 queue pairs
  (virtioN-input.K / virtioN-output.K, plus -config and -control); the vectors are the PCI parent's
  (/sys/class/net/eth0/device -> .../0000:00:03.0/virtio0).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _cpus(root: Path, cpus: list[tuple[int, int, int]]) -> None:
    siblings: dict[tuple[int, int], list[int]] = {}
    for cpu, package, core in cpus:
        siblings.setdefault((package, core), []).append(cpu)
    for cpu, package, core in cpus:
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        _write(topo / "physical_package_id", f"{package}\n")
        _write(topo / "core_id", f"{core}\n")
        _write(topo / "thread_siblings_list", ",".join(map(str, sorted(siblings[(package, core)]))) + "\n")
        if cpu:
            _write(root / f"sys/devices/system/cpu/cpu{cpu}/online", "1\n")


def _interrupts(root: Path, ncpu: int, rows: list[tuple[int, str, str]]) -> None:
    _write(root / "proc/irq/default_smp_affinity", f"{(1 << ncpu) - 1:x}\n")
    header = " " * 11 + "".join(f"CPU{i:<8}" for i in range(ncpu)).rstrip()
    lines = [header]
    lines.append(
        f"{0:>4}:" + "".join(f"{40 if i == 0 else 0:>11}" for i in range(ncpu)) + "   IO-APIC   2-edge      timer"
    )
    for irq, chip, name in rows:
        lines.append(f"{irq:>4}:" + "".join(f"{(irq * 7 + i) % 1000:>11}" for i in range(ncpu)) + f"  {chip}  {name}")
    lines.append(" NMI:" + "".join(f"{0:>11}" for _ in range(ncpu)) + "   Non-maskable interrupts")
    lines.append(" LOC:" + "".join(f"{123456:>11}" for _ in range(ncpu)) + "   Local timer interrupts")
    lines.append(" ERR:          0")
    _write(root / "proc/interrupts", "\n".join(lines) + "\n")


def _irq(root: Path, irq: int, affinity: str) -> None:
    _write(root / f"proc/irq/{irq}/smp_affinity_list", affinity + "\n")


def _queues(root: Path, nic: str, n: int, mask: str) -> None:
    for k in range(n):
        _write(root / f"sys/class/net/{nic}/queues/rx-{k}/rps_cpus", mask + "\n")
        _write(root / f"sys/class/net/{nic}/queues/tx-{k}/xps_cpus", mask + "\n")


def seed() -> None:
    root = HERE / "seed-2s6c2t"
    cpus = [(t * 12 + s * 6 + c, s, c) for t in range(2) for s in range(2) for c in range(6)]
    _cpus(root, cpus)
    rows = []
    irq = 40
    for port, nic in enumerate(["ext0", "ext1", "ext2", "int0", "int1", "int2"]):
        pci = f"0000:{0x18 + port // 2 * 0x40:02x}:00.{port % 2}"
        device = root / f"sys/devices/pci0000:00/{pci}"
        hw = 0x100000 * (port + 1)
        vectors = [(irq + k, f"{nic}-TxRx-{k}") for k in range(8)] + [(irq + 8, nic)]
        for n, (num, name) in enumerate(vectors):
            rows.append((num, f"IR-PCI-MSI {hw + n}-edge", name))
            _write(device / "msi_irqs" / str(num), "msix\n")
            _irq(root, num, "0-23")
        link = root / f"sys/class/net/{nic}/device"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(device, link.parent), link)
        _queues(root, nic, 8, "000000")
        irq += 9
    _interrupts(root, 24, rows)


def single() -> None:
    root = HERE / "single-1s4c2t"
    cores = [0, 1, 4, 5]
    cpus = [(t * 4 + i, 0, core) for t in range(2) for i, core in enumerate(cores)]
    _cpus(root, cpus)
    rows = []
    irq = 58
    for port, nic in enumerate(["eth0", "eth1"]):
        pci = f"0000:3b:00.{port}"
        device = root / f"sys/devices/pci0000:3a/{pci}"
        vectors = [(irq, f"i40e-{pci}:misc")] + [(irq + 2 + k, f"i40e-{nic}-TxRx-{k}") for k in range(4)]
        for n, (num, name) in enumerate(vectors):
            rows.append((num, f"IR-PCI-MSI {0x1D80000 + port * 0x800 + n}-edge", name))
            _write(device / "msi_irqs" / str(num), "msix\n")
            _irq(root, num, "0-7")
        link = root / f"sys/class/net/{nic}/device"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(device, link.parent), link)
        _queues(root, nic, 4, "00")
        irq += 10
    rows.sort()
    _irq(root, 60, "0")  # eth0-TxRx-0: already where the plan puts it
    _interrupts(root, 8, rows)
    # a veth: no device, so no queue IRQs
    _queues(root, "veth0", 1, "00")


def virtio() -> None:
    root = HERE / "virtio-1s4c"
    _cpus(root, [(c, 0, c) for c in range(4)])
    rows = []
    irq = 24
    for index, nic in enumerate(["eth0", "eth1"]):
        pci = root / f"sys/devices/pci0000:00/0000:00:{3 + index:02x}.0"
        virt = pci / f"virtio{index}"
        # a file inside, as sysfs has: git keeps no empty directory, and the link must resolve
        _write(virt / "device", "0x0001\n")
        names = [f"virtio{index}-config"]
        for k in range(4):
            names += [f"virtio{index}-input.{k}", f"virtio{index}-output.{k}"]
        names.append(f"virtio{index}-control")
        for n, name in enumerate(names):
            rows.append((irq + n, f"PCI-MSI {(3 + index) * 0x800 * 8 + n}-edge", name))
            _write(pci / "msi_irqs" / str(irq + n), "msix\n")
            _irq(root, irq + n, "0-3")
        link = root / f"sys/class/net/{nic}/device"
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(virt, link.parent), link)
        _queues(root, nic, 4, "0")
        irq += len(names)
    _interrupts(root, 4, rows)


def main() -> None:
    for name in ("seed-2s6c2t", "single-1s4c2t", "virtio-1s4c"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    seed()
    single()
    virtio()


if __name__ == "__main__":
    main()
