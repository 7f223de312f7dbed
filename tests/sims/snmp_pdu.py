"""A switched PDU's SNMP agent: SNMPv1/v2c GET and SET on its outlet control OIDs, over UDP.

What it models: the APC PowerNet `sPDUOutletCtl` column (1.3.6.1.4.1.318.1.1.4.4.2.1.3.<outlet>,
or another base OID given at start): GET answers 1 (on) or 2 (off); SET 1 switches the outlet on,
2 off, 3 reboots it (off, a pause, on); other values answer `wrongValue`, unknown OIDs
`noSuchName` (v1) / `noSuchInstance` (v2c), a wrong community gets no answer at all (as agents
do: they count it, they do not reply), and a read-only community may GET but not SET (`noAccess`).
Every outlet change is printed as one line on stdout (`outlet 3 off`) and, when the agent runs
in-process, handed to a callback: that is how a lab server loses power. Messages are decoded and
encoded with pysnmp's own protocol modules, so what the driver sends is checked as real SNMP.

What it does not model: SNMPv3, GETNEXT/GETBULK walks, traps, the rest of PowerNet-MIB (names,
delays, phases, current), and agents that are slow to answer.

Run as a program (`python snmp_pdu.py --port P --community-file F --outlets N`) to put it in a
network namespace; `PduAgent` runs it in a thread of the caller.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

try:  # imported by the tests as sims.snmp_pdu; run as a script in the child
    from sims.child import SimChild
except ImportError:
    from child import SimChild  # type: ignore[no-redef]

from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api

APC_OUTLET_CTL = "1.3.6.1.4.1.318.1.1.4.4.2.1.3"
ON, OFF, REBOOT = 1, 2, 3
REBOOT_PAUSE_S = 0.2


class PduAgent:
    """The agent on `address:port` (port 0: a free one), serving until `stop()`."""

    def __init__(
        self,
        community: str,
        outlets: int,
        on_change: Callable[[int, str], None] | None = None,
        *,
        address: str = "127.0.0.1",
        port: int = 0,
        base_oid: str = APC_OUTLET_CTL,
        read_community: str | None = None,
    ) -> None:
        self.community = community
        self.read_community = read_community
        self.base = tuple(int(p) for p in base_oid.split("."))
        self.state = dict.fromkeys(range(1, outlets + 1), ON)
        self.on_change = on_change
        self.requests: list[tuple[str, str, int | None]] = []  # (kind, oid, value) as received
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="snmp-pdu", daemon=True)

    def start(self) -> PduAgent:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _set_outlet(self, outlet: int, value: int) -> None:
        if value == REBOOT:
            self._set_outlet(outlet, OFF)
            time.sleep(REBOOT_PAUSE_S)
            self._set_outlet(outlet, ON)
            return
        self.state[outlet] = value
        word = "on" if value == ON else "off"
        print(f"outlet {outlet} {word}", flush=True)
        if self.on_change is not None:
            self.on_change(outlet, word)

    def _outlet(self, oid: tuple[int, ...]) -> int | None:
        if len(oid) == len(self.base) + 1 and oid[:-1] == self.base and oid[-1] in self.state:
            return oid[-1]
        return None

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except (TimeoutError, OSError):
                continue
            with contextlib.suppress(Exception):  # garbage is dropped, as agents do
                reply = self._handle(data)
                if reply is not None:
                    self.sock.sendto(reply, peer)

    def _handle(self, data: bytes) -> bytes | None:
        version = int(api.decodeMessageVersion(data))
        mod = api.PROTOCOL_MODULES[version]
        msg, _ = decoder.decode(data, asn1Spec=mod.Message())
        community = str(mod.apiMessage.get_community(msg))
        writable = community == self.community
        if not writable and community != self.read_community:
            return None
        req = mod.apiMessage.get_pdu(msg)
        rsp_msg = mod.apiMessage.get_response(msg)
        rsp = mod.apiMessage.get_pdu(rsp_msg)
        is_set = req.isSameTypeWith(mod.SetRequestPDU())
        is_get = req.isSameTypeWith(mod.GetRequestPDU())
        out = []
        error: tuple[str, int] | None = None
        for index, (oid, value) in enumerate(mod.apiPDU.get_varbinds(req), start=1):
            key = tuple(oid)
            outlet = self._outlet(key)
            self.requests.append(("set" if is_set else "get", ".".join(map(str, key)), int(value) if is_set else None))
            if outlet is None or not (is_set or is_get):
                error = error or ("noSuchName", index)
                out.append((oid, value if is_set else mod.Null("")))
            elif is_get:
                out.append((oid, mod.Integer(self.state[outlet])))
            elif not writable:
                error = error or ("noAccess" if version else "readOnly", index)
                out.append((oid, value))
            elif int(value) not in (ON, OFF, REBOOT):
                error = error or ("wrongValue" if version else "badValue", index)
                out.append((oid, value))
            else:
                out.append((oid, value))
        if error is None and is_set:
            for oid, value in mod.apiPDU.get_varbinds(req):
                outlet = self._outlet(tuple(oid))
                assert outlet is not None
                self._set_outlet(outlet, int(value))
        mod.apiPDU.set_varbinds(rsp, out)
        if error is not None:
            mod.apiPDU.set_error_status(rsp, error[0])
            mod.apiPDU.set_error_index(rsp, error[1])
        return bytes(encoder.encode(rsp_msg))


class PduProcess(SimChild):
    """The agent as a child process (optionally in a network namespace: `prefix`, e.g.
    `["ip", "netns", "exec", ns]`), calling `on_change(outlet, "on"|"off")` for every change."""

    def __init__(
        self,
        port: int,
        community: str,
        outlets: int,
        on_change: Callable[[int, str], None],
        *,
        prefix: list[str] | None = None,
        workdir: Path,
    ) -> None:
        self.on_change = on_change
        self.events: list[tuple[int, str]] = []
        secret = workdir / f"pdu-{port}.community"
        secret.write_text(community)
        secret.chmod(0o600)
        argv = [*(prefix or []), sys.executable, __file__, "--port", str(port), "--community-file", str(secret)]
        super().__init__([*argv, "--outlets", str(outlets)], f"PDU agent on port {port}")

    def on_line(self, line: str) -> None:
        words = line.split()
        if len(words) == 3 and words[0] == "outlet":
            event = (int(words[1]), words[2])
            self.events.append(event)
            self.on_change(*event)


def main() -> int:
    p = argparse.ArgumentParser(description="SNMP agent of a switched PDU (outlet control)")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--community-file", required=True)
    p.add_argument("--outlets", type=int, default=8)
    p.add_argument("--base-oid", default=APC_OUTLET_CTL)
    args = p.parse_args()
    community = Path(args.community_file).read_text().strip()
    agent = PduAgent(community, args.outlets, address=args.address, port=args.port, base_oid=args.base_oid).start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        agent.stop()


if __name__ == "__main__":
    sys.exit(main())
