"""The mmdebstrap customize hook that turns a Debian chroot into the edgepop image.

The hook is kept as literal shell text (not a file on disk) for two reasons: mmdebstrap runs a hook
argument with shell metacharacters under `sh` with the chroot as `$1`, so no temporary file is needed;
and the exact text is an input of the image's content hash, so editing the hook rebuilds the image.
"""

from __future__ import annotations

from pathlib import Path
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

# The rootfs is packed as a cpio and loaded as the initramfs: the kernel executes /init.
_PXE: Final = r"""
ln -sf sbin/init "$root/init"
"""

_HERE: Final = Path(__file__).resolve().parent
IRQ_SCRIPT: Final = "/usr/local/lib/edgepop/edgepop_irq.py"
CALLHOME_SCRIPT: Final = "/usr/local/lib/edgepop/edgepop-callhome"
IRQ_INPUTS: Final = "/etc/edgepop/irq-affinity.json"

_CALLHOME_UNIT: Final = f"""[Unit]
Description=edgepop call-home: learn this box's identity from the PoP's provisiond
Documentation=file:{CALLHOME_SCRIPT}
ConditionVirtualization=!container
Wants=systemd-networkd.service
After=systemd-networkd.service
ConditionPathExists=/etc/edgepop/callhome.json

[Service]
Type=oneshot
RemainAfterExit=yes
TimeoutStartSec=infinity
ExecStart=/usr/bin/python3 {CALLHOME_SCRIPT}

[Install]
WantedBy=multi-user.target
"""

# The irq_affinity role installs the same unit on a box with a disk; on a stateless box the plan
# inputs come from call-home at every boot, so the unit waits for it.
_IRQ_UNIT: Final = f"""[Unit]
Description=edgepop NIC queue interrupt pinning
After=systemd-networkd.service edgepop-callhome.service
Conflicts=irqbalance.service
ConditionPathExists={IRQ_INPUTS}
StartLimitIntervalSec=300
StartLimitBurst=30

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/bin/python3 {IRQ_SCRIPT} apply {IRQ_INPUTS}
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=multi-user.target
"""


def _install(path: str, text: str, mode: str = "0644") -> str:
    """Shell that writes `text` to `path` in the chroot (a quoted here-document: no expansion)."""
    marker = "EDGEPOP_FILE_END"
    if marker in text:
        raise ValueError(f"{path}: the content holds the here-document marker {marker}")
    body = text if text.endswith("\n") else text + "\n"
    return (
        f'mkdir -p "$root{Path(path).parent!s}"\n'
        f"cat > \"$root{path}\" <<'{marker}'\n{body}{marker}\n"
        f'chmod {mode} "$root{path}"\n'
    )


def _boot_client() -> str:
    """The call-home client, the IRQ re-apply script and their units, for the pxe flavour."""
    return (
        "\n# Zero-touch boot: call home, become the inventory host, re-pin NIC queue interrupts.\n"
        + _install(CALLHOME_SCRIPT, (_HERE / "callhome_client.py").read_text(), "0755")
        + _install(IRQ_SCRIPT, (_HERE.parent / "irq_plan.py").read_text())
        + _install("/etc/systemd/system/edgepop-callhome.service", _CALLHOME_UNIT)
        + _install("/etc/systemd/system/edgepop-irq-affinity.service", _IRQ_UNIT)
        + 'chroot "$root" systemctl enable edgepop-callhome.service edgepop-irq-affinity.service\n'
    )


def customize_hook(flavour: Flavour) -> str:
    """Shell text for `mmdebstrap --customize-hook=`; `$1` is the chroot directory. Only the pxe
    rootfs is built with mmdebstrap: the container rootfs is derived from it (build.container_rootfs)."""
    if flavour != "pxe":
        raise ValueError(f"the {flavour} rootfs is derived from the pxe one, not built with a hook of its own")
    return _COMMON + _PXE + _boot_client()
