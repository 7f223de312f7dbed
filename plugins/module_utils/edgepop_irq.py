"""NIC queue interrupt pinning: read the host's CPUs and queue IRQs, plan where each queue goes, apply it.

One file, three users, so they cannot disagree: the `irq_affinity` Ansible module (shipped to the box
as module_utils), the boot-time re-apply (the role installs this file and runs it as a script:
`python3 edgepop_irq.py apply PLAN.json`) and `edgepop render` (src/edgepop/irq_plan.py is this file),
which prints the same placement offline from the inventory's CPU layout. Standard library only.

The plan. Each NIC group (external, internal) is served by one CPU socket. A group's queues are
dealt round-robin over its socket's CPUs in this order: the first hardware thread of every core (by
core_id), then the second thread of every core, and so on; so queues spread over physical cores
before two share a core's SMT siblings. Groups that share a socket (a one-socket box) continue the
same round, so the CPUs stay evenly loaded. "queues_per_core" bounds the queues per logical CPU
(hardware thread): a socket with C CPUs takes at most C x queues_per_core queues, else the plan is
impossible. Each queue goes to one CPU; every IRQ of the queue (virtio has an input and an output
vector per queue) goes there too. Vectors that are not queues (a NIC's misc/link vector, virtio's
config and control) are left alone.

Where things are read and written (under `root`, "/" on a box, a recorded tree in tests):
proc/interrupts, sys/class/net/<nic>/device/msi_irqs/ (virtio: the PCI parent's msi_irqs),
sys/devices/system/cpu/cpu*/topology/{physical_package_id,core_id}, proc/irq/<n>/smp_affinity_list,
sys/class/net/<nic>/queues/{rx-<k>/rps_cpus,tx-<k>/xps_cpus}.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

# The queue index in an IRQ's name, by driver family. Anything else (e.g. ixgbe's "eth0" link
# vector, i40e's "...:misc", virtio's "-config"/"-control") is not a queue.
QUEUE_NAME_PATTERNS = (
    re.compile(r"-(?:TxRx|txrx|rx|tx|fp)-(\d+)$"),  # igb, ixgbe, i40e, ice, bnx2x: eth0-TxRx-3
    re.compile(r"-(?:input|output)\.(\d+)$"),  # virtio-net: virtio0-input.3
    re.compile(r"^mlx5_comp(\d+)@"),  # mlx5: mlx5_comp3@pci:0000:03:00.0
)

RunCommand = Callable[[list[str]], tuple[int, str, str]]


class IrqPlanError(Exception):
    """Anything that stops a plan from being made or applied; the message names the input at fault."""


@dataclass(frozen=True)
class Slot:
    """A logical CPU as the plan sees it: socket, core and thread are ordinals (0, 1, ...) in the
    sorted order of physical_package_id, core_id and CPU number, so plans compare across hosts."""

    socket: int
    core: int
    thread: int
    cpu: int

    @property
    def coordinate(self) -> str:
        return f"{self.socket}/{self.core}/{self.thread}"


@dataclass(frozen=True)
class Group:
    name: str
    socket: int
    nics: tuple[str, ...]


@dataclass(frozen=True)
class Placement:
    group: str
    nic: str
    queue: int
    slot: Slot


@dataclass
class NicIrqs:
    """One NIC's vectors: the queue IRQs by queue index, and the other vectors (left alone)."""

    nic: str
    queues: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    others: list[tuple[int, str]] = field(default_factory=list)


# --- CPU lists and masks ------------------------------------------------------------------------


def parse_cpulist(text: str) -> set[int]:
    """ "0-3,8,10-11" -> {0, 1, 2, 3, 8, 10, 11}."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def format_cpulist(cpus: Iterable[int]) -> str:
    """{0, 1, 2, 3, 8} -> "0-3,8"."""
    ordered = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(runs)


def parse_mask(text: str) -> set[int]:
    """A sysfs CPU bitmap ("00000000,00000fff") -> {0..11}."""
    value = int(text.strip().replace(",", "") or "0", 16)
    return {bit for bit in range(value.bit_length()) if value >> bit & 1}


def format_mask(cpus: Iterable[int]) -> str:
    """{0..11} -> "fff"; in comma-separated 32-bit words above 32 CPUs, as the kernel writes them."""
    value = sum(1 << cpu for cpu in set(cpus))
    digits = f"{value:x}"
    words = [digits[max(0, end - 8) : end] for end in range(len(digits), 0, -8)]
    return ",".join(w.rjust(8, "0") if i else w for i, w in enumerate(reversed(words)))


# --- discovery ------------------------------------------------------------------------------------


def _path(root: str, *parts: str) -> str:
    return os.path.join(root, *parts)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def read_topology(root: str) -> list[tuple[int, int, int]]:
    """(cpu, physical_package_id, core_id) of every online CPU."""
    base = _path(root, "sys/devices/system/cpu")
    if not os.path.isdir(base):
        raise IrqPlanError(f"no CPU topology at {base}")
    cpus = []
    for name in os.listdir(base):
        match = re.fullmatch(r"cpu(\d+)", name)
        if not match:
            continue
        topo = os.path.join(base, name, "topology")
        online = os.path.join(base, name, "online")
        if not os.path.isdir(topo) or (os.path.exists(online) and _read(online).strip() == "0"):
            continue  # an offline CPU has no topology and takes no interrupts
        package = int(_read(os.path.join(topo, "physical_package_id")))
        core = int(_read(os.path.join(topo, "core_id")))
        cpus.append((int(match.group(1)), package, core))
    if not cpus:
        raise IrqPlanError(f"no online CPU under {base}")
    return sorted(cpus)


def slots_from_topology(cpus: Iterable[tuple[int, int, int]]) -> dict[int, list[Slot]]:
    """Socket ordinal -> its CPUs in dealing order: thread 0 of every core, then thread 1, ..."""
    by_package: dict[int, dict[int, list[int]]] = {}
    for cpu, package, core in cpus:
        by_package.setdefault(package, {}).setdefault(core, []).append(cpu)
    sockets: dict[int, list[Slot]] = {}
    for s, package in enumerate(sorted(by_package)):
        cores = by_package[package]
        slots = [
            Slot(s, c, t, cpu) for c, core in enumerate(sorted(cores)) for t, cpu in enumerate(sorted(cores[core]))
        ]
        sockets[s] = sorted(slots, key=lambda sl: (sl.thread, sl.core))
    return sockets


def synthetic_topology(sockets: int, cores_per_socket: int, threads_per_core: int) -> list[tuple[int, int, int]]:
    """The topology of a CPU layout as Linux numbers it on x86: thread 0 of every core of every
    socket first (cpu0..), then the second threads. Used offline, where only the layout is known."""
    per_thread = sockets * cores_per_socket
    return [
        (t * per_thread + s * cores_per_socket + c, s, c)
        for t in range(threads_per_core)
        for s in range(sockets)
        for c in range(cores_per_socket)
    ]


def read_interrupts(root: str) -> dict[int, str]:
    """IRQ number -> name (the last column of /proc/interrupts)."""
    path = _path(root, "proc/interrupts")
    names: dict[int, str] = {}
    for line in _read(path).splitlines()[1:]:
        head, sep, rest = line.partition(":")
        if not sep or not head.strip().isdigit():
            continue  # NMI, LOC, ERR... are not device interrupts
        fields = rest.split()
        if fields:
            names[int(head)] = fields[-1]
    return names


def queue_index(name: str) -> int | None:
    for pattern in QUEUE_NAME_PATTERNS:
        match = pattern.search(name)
        if match:
            return int(match.group(1))
    return None


def _msi_dir(root: str, nic: str) -> str | None:
    device = _path(root, "sys/class/net", nic, "device")
    if not os.path.exists(device):
        return None
    for candidate in (os.path.join(device, "msi_irqs"), os.path.join(os.path.realpath(device), "..", "msi_irqs")):
        if os.path.isdir(candidate):  # virtio-net: the vectors belong to the PCI parent of virtioN
            return candidate
    return None


def nic_irqs(root: str, nic: str, interrupts: Mapping[int, str]) -> NicIrqs:
    """The NIC's MSI vectors, sorted into queues and others, by their /proc/interrupts names."""
    if not os.path.isdir(_path(root, "sys/class/net", nic)):
        raise IrqPlanError(f"unknown NIC {nic}: this host has no /sys/class/net/{nic}")
    msi = _msi_dir(root, nic)
    if msi is None:
        raise IrqPlanError(f"NIC {nic} has no queue IRQs: no device/msi_irqs (a virtual NIC such as a veth?)")
    found = NicIrqs(nic)
    for entry in sorted(os.listdir(msi), key=lambda e: int(e) if e.isdigit() else -1):
        if not entry.isdigit():
            continue
        irq = int(entry)
        name = interrupts.get(irq, "")
        index = queue_index(name)
        if index is None:
            found.others.append((irq, name))
        else:
            found.queues.setdefault(index, []).append((irq, name))
    if not found.queues:
        names = ", ".join(f"{irq} {name or '?'}" for irq, name in found.others) or "none"
        raise IrqPlanError(f"NIC {nic} has no queue IRQs (its vectors: {names})")
    return found


# --- the plan -------------------------------------------------------------------------------------


def parse_groups(raw: Sequence[Mapping[str, Any]]) -> list[Group]:
    groups: list[Group] = []
    seen: dict[str, str] = {}
    for index, item in enumerate(raw):
        name = str(item.get("name") or f"groups[{index}]")
        nics = tuple(str(n) for n in item.get("nics") or ())
        if not nics:
            raise IrqPlanError(f"group {name} has no NICs")
        for nic in nics:
            if nic in seen:
                raise IrqPlanError(f"NIC {nic} is in group {seen[nic]} and in group {name}")
            seen[nic] = name
        groups.append(Group(name, int(item.get("socket", 0)), nics))
    if not groups:
        raise IrqPlanError("no NIC groups given")
    return groups


def place(
    groups: Sequence[Group],
    queue_counts: Mapping[str, Sequence[int]],
    sockets: Mapping[int, Sequence[Slot]],
    queues_per_core: int,
) -> list[Placement]:
    """Where each queue of each group's NICs goes. `queue_counts` gives every NIC's queue indexes."""
    if queues_per_core < 1:
        raise IrqPlanError(f"queues_per_core must be 1 or more, not {queues_per_core}")
    demand: dict[int, list[tuple[str, int]]] = {}
    for group in groups:
        if group.socket not in sockets:
            have = len(sockets)
            raise IrqPlanError(
                f"group {group.name} wants socket {group.socket}, but this host has {have} socket{'s' * (have != 1)}"
            )
        demand.setdefault(group.socket, []).append((group.name, sum(len(queue_counts[n]) for n in group.nics)))
    for socket, wants in demand.items():
        cpus = len(sockets[socket])
        total = sum(n for _, n in wants)
        if total > cpus * queues_per_core:
            detail = ", ".join(f"{name} {n}" for name, n in wants)
            raise IrqPlanError(
                f"impossible plan: socket {socket} has {cpus} CPUs x {queues_per_core} queues per core = "
                f"{cpus * queues_per_core} queues, but its groups have {total} ({detail}); "
                "raise queues_per_core or lower the NICs' channels"
            )
    cursor = dict.fromkeys(sockets, 0)
    placements: list[Placement] = []
    for group in groups:
        slots = sockets[group.socket]
        for nic in group.nics:
            for queue in sorted(queue_counts[nic]):
                placements.append(Placement(group.name, nic, queue, slots[cursor[group.socket] % len(slots)]))
                cursor[group.socket] += 1
    return placements


def offline_plan(
    groups: Sequence[Mapping[str, Any]], queues: Mapping[str, int], layout: Mapping[str, int], queues_per_core: int
) -> dict[str, list[str]]:
    """NIC -> the socket/core/thread of each of its queues, from the inventory alone (edgepop render)."""
    topology = synthetic_topology(layout["sockets"], layout["cores_per_socket"], layout.get("threads_per_core", 1))
    placements = place(
        parse_groups(groups), {n: range(q) for n, q in queues.items()}, slots_from_topology(topology), queues_per_core
    )
    plan: dict[str, list[str]] = {}
    for p in placements:
        plan.setdefault(p.nic, []).append(p.slot.coordinate)
    return plan


# --- applying -------------------------------------------------------------------------------------


@dataclass
class Outcome:
    plan: list[dict[str, Any]] = field(default_factory=list)
    changed_irqs: list[int] = field(default_factory=list)
    changed_queues: list[str] = field(default_factory=list)
    changed_channels: list[str] = field(default_factory=list)
    skipped_irqs: list[dict[str, Any]] = field(default_factory=list)
    topology: dict[str, Any] = field(default_factory=dict)
    commands: list[list[str]] = field(default_factory=list)
    before: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changed_irqs or self.changed_queues or self.changed_channels)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["changed"] = self.changed
        for key in ("before", "after"):
            out.pop(key)
        return out


def _run_subprocess(argv: list[str]) -> tuple[int, str, str]:
    done = subprocess.run(argv, capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False)
    return done.returncode, done.stdout, done.stderr


def _current_combined(ethtool: str, nic: str, run: RunCommand) -> int | None:
    rc, out, err = run([ethtool, "-l", nic])
    if rc != 0:
        raise IrqPlanError(f"ethtool -l {nic} failed: {err.strip() or out.strip()}")
    current = out.split("Current hardware settings:", 1)[-1]
    match = re.search(r"^Combined:\s*(\d+)", current, re.MULTILINE)
    return int(match.group(1)) if match else None


def _layout_summary(sockets: Mapping[int, Sequence[Slot]]) -> dict[str, Any]:
    first = sockets[min(sockets)]
    return {
        "sockets": len(sockets),
        "cores_per_socket": len({s.core for s in first}),
        "threads_per_core": len({s.thread for s in first}),
        "cpus": sum(len(s) for s in sockets.values()),
    }


def apply_plan(
    spec: Mapping[str, Any],
    *,
    root: str = "/",
    check: bool = False,
    run: RunCommand = _run_subprocess,
    ethtool: str = "ethtool",
) -> Outcome:
    """Make the host match the plan `spec` (groups, queues_per_core, channels, rps, xps, expect_cpu).

    Everything is read and the plan checked before the first write; a write that fails puts back the
    affinities written so far and raises. `check` only compares."""
    groups = parse_groups(spec.get("groups") or [])
    queues_per_core = int(spec.get("queues_per_core") or 2)
    channels = spec.get("channels")
    out = Outcome()
    sockets = slots_from_topology(read_topology(root))
    out.topology = _layout_summary(sockets)
    expect = spec.get("expect_cpu")
    if expect:
        want = {k: int(expect.get(k, 1)) for k in ("sockets", "cores_per_socket", "threads_per_core")}
        have = {k: out.topology[k] for k in want}
        if want != have:
            raise IrqPlanError(f"the inventory's CPU layout {want} is not this host's {have}")

    nics = [nic for g in groups for nic in g.nics]
    for nic in nics:
        if not os.path.isdir(_path(root, "sys/class/net", nic)):
            raise IrqPlanError(f"unknown NIC {nic}: this host has no /sys/class/net/{nic}")
    if channels:
        for nic in nics:
            combined = _current_combined(ethtool, nic, run)
            if combined != int(channels):
                out.changed_channels.append(nic)
                argv = [ethtool, "-L", nic, "combined", str(channels)]
                out.commands.append(argv)
                out.before.append(f"channels {nic} combined {combined}")
                out.after.append(f"channels {nic} combined {channels}")
                if not check:
                    rc, so, se = run(argv)
                    if rc != 0 or se.strip():  # some drivers print the refusal and exit 0
                        raise IrqPlanError(f"{' '.join(argv)} failed: {se.strip() or so.strip()}")

    # channels reset affinity and may renumber vectors: read the IRQs only after setting them
    interrupts = read_interrupts(root)
    found = {nic: nic_irqs(root, nic, interrupts) for nic in nics}
    counts: dict[str, Sequence[int]] = {nic: sorted(f.queues) for nic, f in found.items()}
    if channels and check:  # predicted: the vectors of queues the NIC does not have yet are unknown
        counts = {nic: [q for q in c if q < int(channels)] for nic, c in counts.items()}
    placements = place(groups, counts, sockets, queues_per_core)
    by_group = {g.name: g for g in groups}

    writes: list[tuple[str, str, str]] = []  # path, old text, new text
    for p in placements:
        for irq, name in found[p.nic].queues[p.queue]:
            path = _path(root, "proc/irq", str(irq), "smp_affinity_list")
            try:
                current = _read(path).strip()
            except OSError as exc:
                raise IrqPlanError(f"cannot read the affinity of IRQ {irq} ({name}): {exc}") from exc
            ok = parse_cpulist(current) == {p.slot.cpu}
            out.plan.append(
                {
                    "irq": irq,
                    "name": name,
                    "nic": p.nic,
                    "group": p.group,
                    "queue": p.queue,
                    "cpu": p.slot.cpu,
                    "slot": p.slot.coordinate,
                    "before": current,
                }
            )
            if not ok:
                out.changed_irqs.append(irq)
                writes.append((path, current, str(p.slot.cpu)))
                out.before.append(f"irq {irq} {name} {current}")
                out.after.append(f"irq {irq} {name} {p.slot.cpu}")
    for nic, f in found.items():
        out.skipped_irqs += [{"irq": irq, "name": name, "nic": nic} for irq, name in f.others]

    for p in placements:
        group = by_group[p.group]
        wanted = {
            "rx": {s.cpu for s in sockets[group.socket]} if spec.get("rps") else None,
            "tx": {p.slot.cpu} if spec.get("xps") else None,
        }
        for kind, cpus in wanted.items():
            if cpus is None:
                continue
            leaf = "rps_cpus" if kind == "rx" else "xps_cpus"
            path = _path(root, "sys/class/net", p.nic, "queues", f"{kind}-{p.queue}", leaf)
            if not os.path.exists(path):
                raise IrqPlanError(f"NIC {p.nic} has no {kind}-{p.queue}/{leaf} (kernel without RPS/XPS?)")
            current = _read(path).strip()
            if parse_mask(current) != cpus:
                rel = f"{p.nic}/queues/{kind}-{p.queue}/{leaf}"
                out.changed_queues.append(rel)
                writes.append((path, current, format_mask(cpus)))
                out.before.append(f"{rel} {current}")
                out.after.append(f"{rel} {format_mask(cpus)}")

    if check:
        return out
    done: list[tuple[str, str]] = []
    for path, old, new in writes:
        try:
            with open(path, "w") as fh:
                fh.write(new + "\n")
        except OSError as exc:
            for undo_path, undo_text in reversed(done):
                try:
                    with open(undo_path, "w") as fh:
                        fh.write(undo_text + "\n")
                except OSError:
                    pass  # best effort: the error below names the write that failed
            raise IrqPlanError(f"cannot write {new} to {path}: {exc}; the earlier writes were put back") from exc
        done.append((path, old))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """`edgepop_irq.py apply PLAN.json [--check]`: the boot-time re-apply (the IRQ numbers of a boot are
    only known on that boot, so the file holds the plan's inputs and the placement is made again)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2 or args[0] != "apply":
        print("usage: edgepop_irq.py apply PLAN.json [--check]", file=sys.stderr)
        return 64
    try:
        spec = json.loads(_read(args[1]))
        outcome = apply_plan(spec, root=spec.get("root", "/"), check="--check" in args[2:])
    except (OSError, ValueError, IrqPlanError) as exc:
        print(f"edgepop_irq: {exc}", file=sys.stderr)
        return 1
    result = outcome.as_dict()
    print(json.dumps({k: result[k] for k in ("changed", "changed_irqs", "changed_queues", "changed_channels")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
