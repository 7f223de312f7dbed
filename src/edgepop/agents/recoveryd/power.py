"""Power drivers: a server's BMC over IPMI 2.0 LAN (pyghmi), and its PDU outlet over SNMP (pysnmp).

Each call is self-contained (its own session, its own timeout) and raises `PowerError` with a
message that names the device but never a credential. The daemon runs every power action in a
child process (`python -m edgepop.agents.recoveryd.power`, the request on stdin) so a hung
library cannot stall the agent: the parent kills the child at the action's deadline, and pyghmi's
process-wide session state never outlives one action.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Literal

from edgepop.agents.recoveryd.audit import describe, scrub
from edgepop.agents.recoveryd.config import IpmiConfig, PduConfig

PowerState = Literal["on", "off"]

# IPMI Chassis Control (netfn 0x00, command 0x02) directives
_CHASSIS_CONTROL = 0x02
_POWER_CYCLE = 0x02


class PowerError(Exception):
    """A power action failed: the device is unreachable, refused, or answered something unexpected."""


def _why(exc: Exception) -> str:
    text = str(exc)
    return "no answer" if text in ("", "None") else text


# --- IPMI --------------------------------------------------------------------------------------


# pyghmi keeps process-wide session state and does not cope with a second login to the same BMC
# while the first session lives: one session per BMC and process, dropped after any error.
_SESSIONS: dict[tuple[str, int, str], Any] = {}


def _ipmi(cfg: IpmiConfig) -> Any:
    from pyghmi.exceptions import IpmiException
    from pyghmi.ipmi import command

    key = (cfg.address, cfg.port, cfg.username)
    if key in _SESSIONS:
        return _SESSIONS[key]
    try:
        cmd = command.Command(
            bmc=cfg.address, userid=cfg.username, password=cfg.password.get_secret_value(), port=cfg.port
        )
    except IpmiException as exc:
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: {_why(exc)}") from None
    _SESSIONS[key] = cmd
    return cmd


def _drop(cfg: IpmiConfig) -> None:
    _SESSIONS.pop((cfg.address, cfg.port, cfg.username), None)


def ipmi_status(cfg: IpmiConfig) -> PowerState:
    from pyghmi.exceptions import IpmiException

    try:
        state = _ipmi(cfg).get_power()["powerstate"]
    except IpmiException as exc:
        _drop(cfg)
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: chassis status: {_why(exc)}") from None
    if state not in ("on", "off"):
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: unexpected power state {state!r}")
    return "on" if state == "on" else "off"


def ipmi_set(cfg: IpmiConfig, state: PowerState) -> None:
    from pyghmi.exceptions import IpmiException

    try:
        _ipmi(cfg).set_power(state, wait=False)
    except IpmiException as exc:
        _drop(cfg)
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: power {state}: {_why(exc)}") from None


def ipmi_cycle(cfg: IpmiConfig) -> str:
    """Chassis power cycle; a chassis that is off (where a cycle is refused) is powered on."""
    from pyghmi.exceptions import IpmiException

    cmd = _ipmi(cfg)
    try:
        state = cmd.get_power()["powerstate"]
        if state == "off":
            cmd.set_power("on", wait=False)
            return "chassis was off: power on"
        rsp = cmd.raw_command(netfn=0x00, command=_CHASSIS_CONTROL, data=[_POWER_CYCLE])
    except IpmiException as exc:
        _drop(cfg)
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: power cycle: {_why(exc)}") from None
    if rsp.get("code", 0) != 0:
        raise PowerError(f"BMC {cfg.address}:{cfg.port}: power cycle refused: {rsp.get('error', rsp['code'])}")
    return "chassis power cycle"


# --- SNMP --------------------------------------------------------------------------------------


async def _snmp(pdu: PduConfig, oid: str, value: int | None) -> int:
    from pysnmp.hlapi.v3arch.asyncio import (
        CommunityData,
        ContextData,
        ObjectIdentity,
        ObjectType,
        SnmpEngine,
        UdpTransportTarget,
        get_cmd,
        set_cmd,
    )
    from pysnmp.proto.rfc1902 import Integer

    engine = SnmpEngine()
    try:
        target = await UdpTransportTarget.create((pdu.address, pdu.port), timeout=pdu.timeout_s, retries=pdu.retries)
        auth = CommunityData(pdu.community.get_secret_value(), mpModel=1)
        if value is None:
            result = await get_cmd(engine, auth, target, ContextData(), ObjectType(ObjectIdentity(oid)))
        else:
            result = await set_cmd(engine, auth, target, ContextData(), ObjectType(ObjectIdentity(oid), Integer(value)))
    finally:
        engine.close_dispatcher()
    error_indication, error_status, _index, var_binds = result
    where = f"PDU {pdu.name} ({pdu.address}:{pdu.port}) {oid}"
    if error_indication:
        raise PowerError(f"{where}: {error_indication}")
    if error_status:
        raise PowerError(f"{where}: {error_status.prettyPrint()}")
    try:
        return int(var_binds[0][1])
    except (TypeError, ValueError, IndexError):
        raise PowerError(f"{where}: not an integer: {var_binds[0][1].prettyPrint()}") from None


def outlet_status(pdu: PduConfig, outlet: int) -> PowerState:
    model = pdu.model
    value = asyncio.run(_snmp(pdu, f"{model.state_oid or model.outlet_oid}.{outlet}", None))
    if value == model.state_on:
        return "on"
    if value == model.state_off:
        return "off"
    raise PowerError(f"PDU {pdu.name} outlet {outlet}: unexpected state {value}")


def outlet_set(pdu: PduConfig, outlet: int, state: PowerState) -> None:
    model = pdu.model
    asyncio.run(_snmp(pdu, f"{model.outlet_oid}.{outlet}", model.on if state == "on" else model.off))


def outlet_cycle(pdu: PduConfig, outlet: int) -> str:
    """The model's one-shot reboot where it has one, otherwise off, `off_s`, on."""
    if pdu.model.reboot is not None:
        asyncio.run(_snmp(pdu, f"{pdu.model.outlet_oid}.{outlet}", pdu.model.reboot))
        return f"outlet {outlet} reboot"
    outlet_set(pdu, outlet, "off")
    time.sleep(pdu.off_s)
    outlet_set(pdu, outlet, "on")
    return f"outlet {outlet} off, {pdu.off_s:g} s, on"


# --- one action in a child process --------------------------------------------------------------


def run_request(request: dict[str, Any]) -> str:
    """Carry out one request: {"method": "ipmi", "ipmi": {...}} or {"method": "pdu", "pdu": {...}, "outlet": N}."""
    if request.get("method") == "ipmi":
        return ipmi_cycle(IpmiConfig.model_validate(request["ipmi"]))
    if request.get("method") == "pdu":
        return outlet_cycle(PduConfig.model_validate(request["pdu"]), int(request["outlet"]))
    raise PowerError(f"unknown method {request.get('method')!r}")


def request_secrets(request: object) -> list[str]:
    """The credentials a request carries: what its answer must never show."""
    if not isinstance(request, dict):
        return []
    out = []
    for section, key in (("ipmi", "password"), ("pdu", "community")):
        value = request.get(section, {}).get(key) if isinstance(request.get(section), dict) else None
        if isinstance(value, str) and value:
            out.append(value)
    return out


def main() -> int:
    """Read one request as JSON on stdin, print {"ok": bool, "detail": str} on stdout. The detail
    never carries the request's credentials, whatever a device or a library put in its error."""
    request: object = None
    try:
        request = json.loads(sys.stdin.read())
        if not isinstance(request, dict):
            raise PowerError("the request is not a JSON object")
        detail = run_request(request)
        ok = True
    except PowerError as exc:
        ok, detail = False, str(exc)
    except Exception as exc:
        ok, detail = False, describe(exc)
    print(json.dumps({"ok": ok, "detail": scrub(detail, request_secrets(request))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
