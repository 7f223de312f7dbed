"""The qemu command line and the tap cabling of the VM proof, without starting anything."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from edgepop.image.boot import BootArtifacts
from edgepop.vm.links import redirect_argv
from edgepop.vm.qemu import TapNic, Vm, VmSpec, qemu_argv

BOOT = BootArtifacts(Path("/c/vmlinuz"), Path("/c/initramfs.cpio.zst"))
SPEC = VmSpec(
    "srv1", "2,sockets=2,cores=1,threads=1", 1024, "52:54:00:e9:01:00", [TapNic("ext0", "epvm1s0", "52:54:00:e9:00:01")]
)


def _argv() -> list[str]:
    return qemu_argv(SPEC, BOOT, Path("/w/srv1.initrd"), ssh_port=2222, monitor=Path("/w/m"), console=Path("/w/c.log"))


def test_tcg_only_and_nothing_by_default() -> None:
    argv = _argv()
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "-enable-kvm" not in argv and "kvm" not in " ".join(argv)
    assert {"-nodefaults", "-no-user-config", "-no-reboot"} <= set(argv)
    assert argv[argv.index("-initrd") + 1] == "/w/srv1.initrd"
    assert argv[argv.index("-monitor") + 1] == "unix:/w/m,server=on,wait=off"


def test_management_is_restricted_and_on_a_documentation_range() -> None:
    netdevs = [a for a in _argv() if a.startswith("user,")]
    assert netdevs == [
        "user,id=mgmt,restrict=on,net=203.0.113.192/27,host=203.0.113.193,dhcpstart=203.0.113.200,"
        "hostfwd=tcp:127.0.0.1:2222-:22"
    ]


def test_data_nics_are_multiqueue_taps_with_a_link_speed() -> None:
    argv = _argv()
    assert "tap,id=ext0,ifname=epvm1s0,script=no,downscript=no,queues=4,vhost=off" in argv
    assert "virtio-net-pci,netdev=ext0,mac=52:54:00:e9:00:01,mq=on,vectors=10,speed=10000,duplex=full,romfile=" in argv


def test_a_cable_redirects_every_frame_one_way() -> None:
    qdisc, flt = redirect_argv("a", "b")
    assert qdisc == ["tc", "qdisc", "add", "dev", "a", "handle", "ffff:", "ingress"]
    assert flt[-6:] == ["action", "mirred", "egress", "redirect", "dev", "b"]
    assert flt[flt.index("u32") :][:4] == ["u32", "match", "u32", "0"]


def test_monitor_strips_the_echo_and_the_prompt(tmp_path: Path) -> None:
    """A stand-in for qemu's human monitor: banner, prompt, echo with cursor escapes, answer, prompt."""
    vm = Vm(SPEC, BOOT, tmp_path, tmp_path / "key", ssh_port=1)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(vm.monitor_path))
    server.listen(1)
    received: list[bytes] = []

    def qemu() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"QEMU 7.2.0 monitor - type 'help' for more information\r\n(qemu) ")
            received.append(conn.recv(100))
            conn.sendall(b"sset\x1b[K\x1b[Dset_link nope off\x1b[K\r\nDevice 'nope' not found\r\n(qemu) ")

    thread = threading.Thread(target=qemu)
    thread.start()
    try:
        assert vm.monitor("set_link nope off") == "Device 'nope' not found"
    finally:
        thread.join(5)
        server.close()
    assert received == [b"set_link nope off\n"]
