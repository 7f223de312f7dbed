"""The mmdebstrap customize hook that turns a Debian chroot into the edgepop image.

The hook is kept as literal shell text (not a file on disk) for two reasons: mmdebstrap runs a hook
argument with shell metacharacters under `sh` with the chroot as `$1`, so no temporary file is needed;
and the exact text is an input of the image's content hash, so editing the hook rebuilds the image.
"""

from __future__ import annotations

from typing import Final

from edgepop.image.packages import Flavour

_COMMON: Final = r"""set -eu
root="$1"

# Every boot must invent its own machine-id: a shared one gives every clone the same DHCP client
# id and the same systemd-derived bond MAC. An empty file (not a missing one) makes systemd generate
# a transient id without running first-boot presets.
: > "$root/etc/machine-id"

# systemd-networkd owns the interfaces; ifupdown (pulled in by ifenslave) must never race it.
chroot "$root" systemctl mask networking.service
chroot "$root" systemctl enable systemd-networkd.service ssh.service

# Roles decide which daemons run and with which config; Debian's defaults must not start first.
chroot "$root" systemctl disable bird.service nginx.service

# SSH host keys are per box: remove the ones baked at package install, generate fresh ones at boot.
rm -f "$root"/etc/ssh/ssh_host_*
cat > "$root/etc/systemd/system/edgepop-ssh-hostkeys.service" <<'UNIT'
[Unit]
Description=Generate this box's SSH host keys
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
UNIT
chroot "$root" systemctl enable edgepop-ssh-hostkeys.service

# Ansible and operators log in as root with a key; give root a real shell explicitly.
chroot "$root" usermod --shell /bin/bash root

# The hostname and resolver come from where the box runs (podman, DHCP, a role), never from the
# build host: mmdebstrap copies the host's resolv.conf in, and its resolver is no PoP's resolver.
: > "$root/etc/hostname"
rm -f "$root/etc/resolv.conf"
: > "$root/etc/resolv.conf"
chmod 0644 "$root/etc/hostname" "$root/etc/resolv.conf"

# The image lives in RAM on every server: no docs, no caches, no build logs.
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/lintian/*
find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/debconf/*-old "$root"/var/log/*.log
"""

_FLAVOUR: Final[dict[Flavour, str]] = {
    # podman configures the container's interfaces itself and nothing in the lab waits for
    # "network-online": wait-online would hold boot for its 2 min timeout and then fail.
    "container": r"""
chroot "$root" systemctl mask systemd-networkd-wait-online.service
""",
    # The rootfs is packed as a cpio and loaded as the initramfs: the kernel executes /init.
    "pxe": r"""
ln -sf sbin/init "$root/init"
""",
}


def customize_hook(flavour: Flavour) -> str:
    """Shell text for `mmdebstrap --customize-hook=`; `$1` is the chroot directory."""
    return _COMMON + _FLAVOUR[flavour]
