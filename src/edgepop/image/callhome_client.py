#!/usr/bin/python3
"""edgepop-callhome: the boot client of the stateless image (standard library only).

A server booted over PXE knows nothing about itself. provisiond appends a small initrd with
/etc/edgepop/callhome.json (its URL, the MAC the box booted from and that MAC's secret, never the
PoP's token); this client reports every MAC of the box there, proving the boot MAC with its secret,
and waits for the answer:

- known (200): it writes what the answer carries — hostname, the systemd-networkd files of its
  bonds and addresses (the same files the networkd role renders), root's SSH keys, and the NIC
  queue interrupt plan inputs that edgepop-irq-affinity.service (ordered after this unit) applies
  — renames its NICs to their inventory names and reloads networkd. Ansible can reach it then;
- pending (202): the box is queued for the operator; it asks again every PENDING_RETRY_S;
- refused (401, 403, 409), rate limited (429), unreachable: it waits and asks again, without end.

Kept free of edgepop imports: the image hook copies this file into the image as it is. The
answer is also kept in /run/edgepop/identity.json for operators and tests.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

CONFIG = Path("/etc/edgepop/callhome.json")
STATE = Path("/run/edgepop/identity.json")
IRQ_INPUTS = Path("/etc/edgepop/irq-affinity.json")
NETWORK_DIR = Path("/etc/systemd/network")
PENDING_RETRY_S = 30.0
REFUSED_RETRY_S = 60.0
ERROR_RETRY_S = 5.0
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def log(message: str) -> None:
    print(f"edgepop-callhome: {message}", file=sys.stderr, flush=True)


def physical_macs(sys_net: Path = Path("/sys/class/net")) -> dict[str, str]:
    """Kernel name -> MAC of every physical Ethernet NIC (one with a device behind it)."""
    out: dict[str, str] = {}
    for dev in sorted(sys_net.iterdir()):
        if not (dev / "device").exists() or (dev / "type").read_text().strip() != "1":
            continue
        mac = (dev / "address").read_text().strip().lower()
        if _MAC.match(mac):
            out[dev.name] = mac
    return out


def has_ipv4(run: Callable[[list[str]], str]) -> bool:
    """Whether any interface but lo holds a global IPv4 address (the DHCP lease of the boot NIC)."""
    return bool(run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).strip())


def ask(
    url: str, secret: str, boot_mac: str, macs: Iterable[str], timeout: float = 10.0
) -> tuple[int, dict[str, Any], float]:
    """POST the MACs, the boot MAC first among them by name; (status, body, Retry-After seconds or 0)."""
    body = json.dumps({"mac": boot_mac, "macs": sorted(set(macs) | {boot_mac})}).encode()
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, body, headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.loads(response.read(1 << 22) or b"{}")
            return response.status, answer if isinstance(answer, dict) else {}, 0.0
    except urllib.error.HTTPError as exc:
        try:
            doc = json.loads(exc.read(1 << 16) or b"{}")
        except ValueError:
            doc = {}
        retry = exc.headers.get("Retry-After", "0") if exc.headers else "0"
        return exc.code, doc if isinstance(doc, dict) else {}, float(retry) if retry.isdigit() else 0.0


def read_config(path: Path = CONFIG) -> dict[str, str]:
    """The call-home settings provisiond sent with this boot; ValueError names what is wrong."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [key for key in ("url", "mac", "secret") if not isinstance(doc.get(key), str)]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)} (settings of an older provisiond?)")
    mac = doc["mac"].lower()
    if not _MAC.match(mac):
        raise ValueError(f"{path}: mac is not a MAC address")
    return {"url": doc["url"], "mac": mac, "secret": doc["secret"], "pop": str(doc.get("pop", ""))}


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def write_identity(identity: dict[str, Any], root: Path = Path("/")) -> list[Path]:
    """Every file the answer asks for, under `root`; return them."""

    def at(path: Path | str) -> Path:
        return root / str(path).lstrip("/")

    written: list[Path] = []
    hostname = str(identity["hostname"])
    _write(at("/etc/hostname"), hostname + "\n")
    written.append(at("/etc/hostname"))
    for item in identity.get("networkd_files", []):
        path = Path(item["path"])
        if path.parent != NETWORK_DIR or "/" in path.name:
            raise ValueError(f"refusing to write {path}: not a systemd-networkd file")
        _write(at(path), item["content"])
        written.append(at(path))
    keys = identity.get("ssh_authorized_keys") or []
    if keys:
        at("/root/.ssh").mkdir(parents=True, exist_ok=True)
        at("/root/.ssh").chmod(0o700)
        _write(at("/root/.ssh/authorized_keys"), "".join(k.strip() + "\n" for k in keys), 0o600)
        written.append(at("/root/.ssh/authorized_keys"))
    irq = identity.get("irq_plan_inputs")
    if irq and irq.get("groups"):
        _write(at(IRQ_INPUTS), json.dumps(irq, indent=2, sort_keys=True) + "\n")
        written.append(at(IRQ_INPUTS))
    return written


def renames(identity: dict[str, Any], current: dict[str, str]) -> list[tuple[str, str]]:
    """(kernel name, inventory name) for every NIC of the answer that is not named yet."""
    by_mac = {mac: name for name, mac in current.items()}
    out = []
    for nic in identity.get("nics", []):
        kernel = by_mac.get(nic["mac"])
        if kernel is not None and kernel != nic["name"]:
            out.append((kernel, str(nic["name"])))
    return out


def apply(identity: dict[str, Any], run: Callable[[list[str]], str]) -> None:
    """Write the files, give the NICs their names, and let networkd bring up bonds and addresses."""
    write_identity(identity)
    run(["hostname", str(identity["hostname"])])
    for kernel, name in renames(identity, physical_macs()):
        # the boot NIC is up with its DHCP lease: the kernel renames only a link that is down
        run(["ip", "link", "set", "dev", kernel, "down"])
        run(["ip", "link", "set", "dev", kernel, "name", name])
        log(f"renamed {kernel} to {name}")
    run(["networkctl", "reload"])
    for nic in identity.get("nics", []):
        if Path(f"/sys/class/net/{nic['name']}").exists():
            run(["ip", "link", "set", "dev", str(nic["name"]), "up"])
            run(["networkctl", "reconfigure", str(nic["name"])])


def _run(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode != 0:
        log(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc.stdout


def main(sleep: Callable[[float], None] = time.sleep) -> int:
    if not CONFIG.is_file():
        log(f"{CONFIG} is missing: not a provisioned boot, nothing to do")
        return 0
    try:
        config = read_config()
    except ValueError as exc:
        log(str(exc))
        return 1
    started = time.monotonic()
    while not has_ipv4(_run):
        sleep(1.0)
    macs = sorted(physical_macs().values())
    log(f"calling home to {config['url']} with {', '.join(macs)}")
    while True:
        try:
            status, body, retry = ask(config["url"], config["secret"], config["mac"], macs)
        except (OSError, ValueError) as exc:
            log(f"call-home failed: {exc}; retrying")
            sleep(ERROR_RETRY_S)
            continue
        if status == 200 and body.get("status") == "known":
            identity = body["identity"]
            apply(identity, _run)
            _write(STATE, json.dumps({**body, "seconds": round(time.monotonic() - started, 1)}, indent=1) + "\n")
            log(f"this box is {identity['hostname']} of PoP {identity.get('pop')}")
            return 0
        if status == 202:
            log("unknown to the inventory: waiting to be adopted")
            sleep(PENDING_RETRY_S)
        elif status == 429:
            sleep(max(retry, ERROR_RETRY_S))
        elif status == 401:
            log(f"the call-home secret for {config['mac']} was refused")
            sleep(REFUSED_RETRY_S)
        else:
            log(f"call-home answered {status}: {body.get('error', body)}")
            sleep(REFUSED_RETRY_S if status in (403, 409) else ERROR_RETRY_S)


if __name__ == "__main__":
    sys.exit(main())
