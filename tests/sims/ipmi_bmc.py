"""A virtual BMC that speaks IPMI 2.0 over LAN (RMCP+), built on pyghmi's `Bmc` server.

What it models: one BMC on a UDP port of 127.0.0.1 (or any address given), one user with a
password (RAKP authentication, as pyghmi and ipmitool do it; a wrong password is refused during
session setup), Get Chassis Status (power on/off) and Chassis Control: power off, power on, power
cycle (off, a pause, on: refused while the chassis is off, as real BMCs answer 0xd5), hard reset
and soft shutdown. Every change of power is printed as one line on stdout (`power off`, `power
on`), which `BmcSim` turns into calls of a Python callback: that is how a lab server "loses power".
The BMC keeps its own idea of the power state, so a box that crashed on its own still reads `on`.

What it does not model: SOL, sensors, SEL, FRU, users and channels beyond the one user, IPMI 1.5,
cipher suites other than pyghmi's default, BMC resets, and a BMC that hangs rather than goes away
(stopping the simulator makes the address silent, which is how an unreachable BMC looks).

Run as a program (`python ipmi_bmc.py --port P --user U --password-file F`) so its pyghmi
session machinery never shares a process with a pyghmi client.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

try:  # imported by the tests as sims.ipmi_bmc; run as a script in the child
    from sims.child import SimChild
except ImportError:
    from child import SimChild  # type: ignore[no-redef]

POWER_CYCLE_PAUSE_S = 0.2


def _serve(port: int, address: str, user: str, password: str, initial: str) -> None:
    import pyghmi.ipmi.bmc as bmc
    import pyghmi.ipmi.private.serversession as serversession

    # pyghmi's server answers every open-session request with cipher suite 3 (HMAC-SHA1), whatever
    # was proposed; a real BMC with only suite 3 refuses other proposals (status 0x11, no matching
    # cipher suite), and clients then retry with suite 3. Answer like the real one.
    accept = serversession.ServerSession.create_open_session_response

    def open_session(self: object, request: bytearray) -> bytearray:
        if len(request) > 12 and request[12] != 1:
            return bytearray([request[0], 0x11, 0, 0]) + request[4:8] + bytearray(4)
        return bytearray(accept(self, request))

    serversession.ServerSession.create_open_session_response = open_session

    class VirtualBmc(bmc.Bmc):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__({user: password}, port=port, address=address)
            self.powerstate = initial

        def _set(self, state: str) -> None:
            self.powerstate = state
            print(f"power {state}", flush=True)

        def get_power_state(self) -> str:
            return str(self.powerstate)

        def power_off(self) -> None:
            self._set("off")

        def power_on(self) -> None:
            self._set("on")

        def power_cycle(self) -> int | None:
            if self.powerstate == "off":
                return 0xD5  # command not supported in present state
            self._set("off")
            time.sleep(POWER_CYCLE_PAUSE_S)
            self._set("on")
            return None

        def power_reset(self) -> None:
            self._set("off")
            self._set("on")

        def power_shutdown(self) -> None:
            self._set("off")

        def cold_reset(self) -> int:
            return 0xC1

        def is_active(self) -> bool:
            return self.powerstate == "on"

    VirtualBmc()
    print("ready", flush=True)
    bmc.Bmc.listen(timeout=1)


class BmcSim(SimChild):
    """Runs the virtual BMC as a child process (optionally inside a network namespace: `prefix`,
    e.g. `["ip", "netns", "exec", ns]`) and calls `on_power("on"|"off")` for every power change."""

    def __init__(
        self,
        port: int,
        user: str,
        password: str,
        on_power: Callable[[str], None],
        *,
        address: str = "127.0.0.1",
        initial: str = "on",
        prefix: list[str] | None = None,
        workdir: Path | None = None,
    ) -> None:
        self.port = port
        self.on_power = on_power
        self.events: list[str] = []
        secret = (workdir or Path("/tmp")) / f"bmc-{port}-{os.getpid()}.pw"
        secret.write_text(password)
        secret.chmod(0o600)
        self._secret = secret
        argv = [
            *(prefix or []),
            sys.executable,
            __file__,
            "--port",
            str(port),
            "--address",
            address,
            "--user",
            user,
            "--password-file",
            str(secret),
            "--initial",
            initial,
        ]
        super().__init__(argv, f"virtual BMC on port {port}")

    def on_line(self, line: str) -> None:
        if line.startswith("power "):
            state = line.split()[1]
            self.events.append(state)
            self.on_power(state)

    def stop(self) -> None:
        """Stop the BMC: its address goes silent (an unreachable BMC)."""
        super().stop()
        with contextlib.suppress(FileNotFoundError):
            self._secret.unlink()


def main() -> int:
    p = argparse.ArgumentParser(description="virtual IPMI BMC (pyghmi)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--user", default="admin")
    p.add_argument("--password-file", required=True)
    p.add_argument("--initial", choices=["on", "off"], default="on")
    args = p.parse_args()
    password = Path(args.password_file).read_text()
    _serve(args.port, args.address, args.user, password, args.initial)
    return 0


if __name__ == "__main__":
    sys.exit(main())
