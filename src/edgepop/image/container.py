"""How a lab box is started from the edgepop image with podman: the flags that were found to work here.

Each flag below exists because something fails without it on the lab machines (cgroup v1 hybrid, no
systemd on the host, low hard rlimits), so the lab and its tests build the command line here rather
than repeating (and drifting from) it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

RUN_FLAGS: Final[tuple[str, ...]] = (
    # crun cannot set up this host's cgroup layout; runc can.
    "--runtime",
    "runc",
    # systemd is PID 1: podman mounts /run, /tmp and the cgroup tree as systemd expects and sends
    # SIGRTMIN+3 on stop, so `podman stop` is a clean shutdown (about 0.4 s).
    "--systemd=always",
    # podman's default nofile (1048576) is above this host's hard limit: runc fails with
    # "error setting rlimit type 7: operation not permitted".
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
    # BIRD's kernel protocol needs it to install routes (else "Netlink: Operation not permitted"),
    # and so do arprelay's `ip addr ... peer` and neighbour entries.
    "--cap-add",
    "NET_ADMIN",
    # ping is setcap cap_net_raw; without the capability its exec fails ("operation not permitted").
    "--cap-add",
    "NET_RAW",
    # Debian's bird.service drops to the bird user keeping NET_ADMIN, NET_RAW, NET_BIND_SERVICE and
    # NET_BROADCAST; without the last one its capset fails and BIRD exits at start.
    "--cap-add",
    "NET_BROADCAST",
)


def podman_run_argv(
    name: str,
    tag: str,
    *,
    network: str = "none",
    ips: Sequence[str] = (),
    authorized_keys: Path | None = None,
    labels: Sequence[str] = (),
    sysctls: Sequence[str] = (),
) -> list[str]:
    """`podman run -d` for one lab box booting systemd from `tag`.

    `network` is a podman network (an `--internal` one keeps lab traffic on the host's bridge, which
    the host itself can reach for SSH) or "none" when the lab wires its own veths into the container.
    `ips` are static addresses on that network (IPv4 or IPv6). `authorized_keys` is bind-mounted
    read-only as root's, so Ansible can log in as soon as sshd answers, without an exec step.
    """
    argv = ["podman", "run", "--detach", "--name", name, "--hostname", name, *RUN_FLAGS]
    argv += ["--network", network]
    for ip in ips:
        argv += ["--ip6" if ":" in ip else "--ip", ip]
    if authorized_keys is not None:
        argv += ["--volume", f"{authorized_keys}:/root/.ssh/authorized_keys:ro"]
    for label in labels:
        argv += ["--label", label]
    # /proc/sys is read-only inside the container; network sysctls are per namespace and are set here
    for sysctl in sysctls:
        argv += ["--sysctl", sysctl]
    argv += [tag, "/sbin/init"]
    return argv
