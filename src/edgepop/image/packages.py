"""The one package list for the stateless edgepop image.

Every box in a PoP (router stand-ins in the lab, servers, the control server) boots the same image;
roles turn it into what the inventory says. So the list here is the union of what any role needs at
first contact, and nothing else: the image is copied into RAM on every PXE boot and started 7-9 times
in the lab, so each package has to earn its place. Packages are grouped by the reason they are there,
which is what a reviewer needs to decide whether a new one belongs.

The list is data, not logic: it feeds the content hash in `edgepop.image.build`, so any change here
yields a new image tag and tarball name instead of silently reusing a stale cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

Flavour = Literal["container", "pxe"]
"""`pxe`: booted by bare servers and qemu guests from RAM (needs a kernel and an initramfs tool).
`container`: the same rootfs without the kernel's files, imported into podman for the lab (the host
kernel is shared)."""

FLAVOURS: Final[tuple[Flavour, ...]] = get_args(Flavour)

SUITE: Final = "bookworm"
VARIANT: Final = "minbase"


@dataclass(frozen=True)
class PackageGroup:
    """A set of packages that are in the image for one shared reason."""

    name: str
    why: str
    packages: tuple[str, ...]


BASE_GROUPS: Final[tuple[PackageGroup, ...]] = (
    PackageGroup(
        "init",
        "systemd as PID 1 everywhere, so containers, VMs and metal run the same units; dbus because "
        "networkctl/hostnamectl talk to their daemons over it; udev+kmod load NIC and bonding modules.",
        ("systemd-sysv", "dbus", "udev", "kmod"),
    ),
    PackageGroup(
        "network",
        "iproute2 for addresses/neighbours (arprelay), ifenslave+ethtool for bonds, channels and IRQ "
        "tuning, nftables for the host firewall and for fault injection in tests.",
        ("iproute2", "ifenslave", "ethtool", "nftables"),
    ),
    PackageGroup(
        "management",
        "Ansible reaches every box over SSH as root-with-sudo and runs python3 there; python3-apt is "
        "what the apt module needs to gather package facts without installing it on first contact.",
        ("openssh-server", "python3", "python3-apt", "sudo"),
    ),
    PackageGroup(
        "services",
        "bird2 announces the anycast prefixes; nginx-light is the frontline proxy/cache; dnsmasq-base "
        "(binary only, no unit) serves DHCP/TFTP for provisiond on the control server; busybox gives a "
        "tiny httpd that starts instantly for health-check stand-ins.",
        ("bird2", "nginx-light", "dnsmasq-base", "busybox"),
    ),
    PackageGroup(
        "diagnostics",
        "what an operator and the verify playbook expect on any box: ps/top, ping, curl with TLS roots.",
        ("procps", "iputils-ping", "curl", "ca-certificates"),
    ),
)

_BOOT: Final = (
    PackageGroup(
        "boot",
        "bare servers and qemu guests boot a Debian kernel; the bonding and NIC modules come from it. "
        "initramfs-tools satisfies the kernel's dependency; zstd packs the rootfs as the RAM root.",
        ("linux-image-amd64", "initramfs-tools", "zstd"),
    ),
)

FLAVOUR_GROUPS: Final[dict[Flavour, tuple[PackageGroup, ...]]] = {
    "pxe": _BOOT,
    # The container rootfs is the pxe one with the kernel's files left out (it runs on the host's
    # kernel): the same packages are installed, so the lab runs exactly what servers boot.
    "container": _BOOT,
}


def groups(flavour: Flavour) -> tuple[PackageGroup, ...]:
    """Base groups followed by the flavour's extras."""
    if flavour not in FLAVOUR_GROUPS:
        raise ValueError(f"unknown image flavour {flavour!r}; expected one of {', '.join(FLAVOURS)}")
    return BASE_GROUPS + FLAVOUR_GROUPS[flavour]


def package_list(flavour: Flavour) -> tuple[str, ...]:
    """Sorted, de-duplicated package names for `flavour`.

    Sorted so that reordering the groups above does not change the content hash (and so the cache):
    only adding or removing a package does.
    """
    return tuple(sorted({pkg for group in groups(flavour) for pkg in group.packages}))
