"""recoveryd never shows a configuration value in an error: a BMC password or an SNMP community may
be pasted in the wrong place, be echoed by a device, or sit in an exception's text. A distinctive
secret, made invalid in many ways, must appear nowhere in stdout, stderr, the logs or the audit log."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepop.agents.recoveryd import cli as recoveryd_cli
from edgepop.agents.recoveryd import power
from edgepop.agents.recoveryd.audit import MASK, describe, read_audit, scrub
from edgepop.agents.recoveryd.config import IpmiConfig, parse_config
from edgepop.agents.recoveryd.core import Action
from edgepop.agents.recoveryd.daemon import Daemon

# quotes and a backslash: repr() and JSON escape it differently from the raw value
SECRET = "Zq7-s3cr3t'\"\\-PW"
COMMUNITY = "cOmMuNiTy-x81"
FORMS = (SECRET, json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], "s3cr3t", COMMUNITY)


def _leaks(text: str) -> list[str]:
    return [form for form in FORMS if form in text]


def _good() -> dict[str, Any]:
    return {
        "pop": "lab1",
        "dry_run": True,
        "pdus": [{"name": "pdu1", "address": "203.0.113.31", "community": COMMUNITY}],
        "servers": [
            {
                "name": "srv1",
                "reach": {"address": "198.51.100.11"},
                "ipmi": {"address": "203.0.113.21", "username": "admin", "password": SECRET},
                "pdu": {"pdu": "pdu1", "outlet": 1},
            }
        ],
    }


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgepop.agents.recoveryd", *args], capture_output=True, text=True, check=False
    )


def test_invalid_in_many_ways_never_shows_the_secret(tmp_path: Path) -> None:
    data = _good()
    srv = data["servers"][0]
    srv["ipmi"]["address"] = SECRET  # pasted one line too high
    srv["ipmi"]["port"] = SECRET
    srv["ipmi"]["timeout_s"] = SECRET
    srv["ipmi"]["passwd"] = SECRET  # a typo'd key with the secret as value
    srv["reach"]["address"] = SECRET
    srv["healthd_url"] = SECRET
    srv["router_protocols"] = [SECRET]
    data["pdus"][0]["port"] = COMMUNITY
    data["pdus"][0]["model"] = {"outlet_oid": COMMUNITY}
    data["log_format"] = SECRET
    data["alert_command"] = SECRET
    data["decision"] = {"probe_interval_s": SECRET}
    conf = tmp_path / "recoveryd.yml"
    conf.write_text(yaml.safe_dump(data))
    done = _cli("--check-config", "--config", str(conf))
    assert done.returncode == 78
    assert _leaks(done.stdout + done.stderr) == [], done.stderr
    lines = done.stderr.splitlines()
    # every problem is still named by its key
    for key in (
        "servers[0].ipmi.address: Value error, not an IPv4 or IPv6 address",
        "servers[0].ipmi.port:",
        "servers[0].ipmi.passwd: Extra inputs are not permitted",
        "servers[0].reach.address: Value error, not an IPv4 or IPv6 address",
        "servers[0].healthd_url: String should match pattern",
        "servers[0].router_protocols: Value error, not BIRD protocol names (letters, digits, _): items 0",
        "pdus[0].port:",
        "pdus[0].model.outlet_oid: String should match pattern",
        "log_format:",
        "alert_command:",
        "decision.probe_interval_s:",
    ):
        assert any(f"{conf}: {key}" in line for line in lines), (key, done.stderr)


def test_yaml_error_on_the_secrets_line_never_shows_it(tmp_path: Path) -> None:
    conf = tmp_path / "recoveryd.yml"
    conf.write_text(yaml.safe_dump(_good()).replace("password:", "password: [", 1))
    done = _cli("--check-config", "--config", str(conf))
    assert done.returncode == 78 and str(conf) in done.stderr
    assert _leaks(done.stdout + done.stderr) == [], done.stderr


def test_print_config_masks_every_credential(tmp_path: Path) -> None:
    conf = tmp_path / "recoveryd.yml"
    conf.write_text(yaml.safe_dump(_good()))
    done = _cli("--print-config", "--config", str(conf))
    assert done.returncode == 0 and _leaks(done.stdout + done.stderr) == []
    printed = yaml.safe_load(done.stdout)
    assert printed["servers"][0]["ipmi"]["password"] == "**********"
    assert printed["pdus"][0]["community"] == "**********"


def test_describe_a_validation_error_without_its_input() -> None:
    with pytest.raises(Exception) as caught:
        IpmiConfig.model_validate({"address": "203.0.113.21", "username": "admin", "password": SECRET, "port": SECRET})
    assert "input_value=" in str(caught.value) and "s3cr3t" in str(caught.value)  # pydantic's own text shows it
    text = describe(caught.value)
    assert text == "invalid IpmiConfig: port: Input should be a valid integer, unable to parse string as an integer"
    assert describe(RuntimeError(f"login as admin/{SECRET!r} refused"), [SECRET]) == (
        f"RuntimeError: login as admin/'{MASK}' refused"
    )


def test_scrub_catches_quoted_and_escaped_forms() -> None:
    for shown in (SECRET, repr(SECRET), json.dumps(SECRET), json.dumps({"pw": SECRET}), str([SECRET])):
        assert _leaks(str(scrub(f"device said: {shown}", [SECRET]))) == [], shown


def _power_main(request: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(request)))
    assert power.main() == 0
    out = capsys.readouterr().out
    assert _leaks(out) == [], out
    return json.loads(out)


def test_power_child_never_echoes_credentials(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ipmi = {"address": "203.0.113.21", "username": "admin", "password": SECRET}
    # an invalid request: pydantic's text would carry the whole dict, password included
    answer = _power_main({"method": "ipmi", "ipmi": {**ipmi, "port": "x"}}, monkeypatch, capsys)
    assert answer == {
        "ok": False,
        "detail": "invalid IpmiConfig: port: Input should be a valid integer, unable to parse string as an integer",
    }

    # a library or a BMC that echoes what it was sent, quoted or escaped
    def echo(cfg: IpmiConfig) -> str:
        password = cfg.password.get_secret_value()
        raise RuntimeError(f"auth failed for {password!r} / {json.dumps({'user': cfg.username, 'pw': password})}")

    monkeypatch.setattr(power, "ipmi_cycle", echo)
    answer = _power_main({"method": "ipmi", "ipmi": ipmi}, monkeypatch, capsys)
    assert answer["ok"] is False and answer["detail"].startswith(f"RuntimeError: auth failed for '{MASK}'")

    def refuse(cfg: Any, outlet: int) -> str:
        raise power.PowerError(f"PDU pdu1: community {cfg.community.get_secret_value()} rejected")

    monkeypatch.setattr(power, "outlet_cycle", refuse)
    pdu = {"name": "pdu1", "address": "203.0.113.31", "community": COMMUNITY}
    answer = _power_main({"method": "pdu", "pdu": pdu, "outlet": 1}, monkeypatch, capsys)
    assert answer == {"ok": False, "detail": f"PDU pdu1: community {MASK} rejected"}
    assert _power_main([1, 2], monkeypatch, capsys) == {"ok": False, "detail": "the request is not a JSON object"}


@pytest.fixture
def agent_log() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.getMessage()} {json.dumps(getattr(record, 'ctx', {}))}")

    logger = logging.getLogger("edgepop.healthd")
    saved = list(logger.handlers), logger.level, logger.propagate
    keep = Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.handlers[:] = saved[0]
        logger.setLevel(saved[1])
        logger.propagate = saved[2]


def test_daemon_errors_and_audit_never_show_the_secret(tmp_path: Path, agent_log: list[str]) -> None:
    data = {
        **_good(),
        "dry_run": False,
        "audit_log": str(tmp_path / "audit.jsonl"),
        "state_file": str(tmp_path / "state.json"),
        "router": {"socket": str(tmp_path / "no-router.ctl"), "timeout_s": 0.2},
        "alert_command": [str(tmp_path / "missing-alert-command")],
    }
    daemon = Daemon(parse_config(data, "recoveryd.yml"))

    def leaky(action: Action) -> Any:
        raise ValueError(f"cannot build the request for {SECRET!r}")

    daemon._power_request = leaky  # type: ignore[method-assign]
    daemon._power(Action("power_cycle", "srv1", "dead", method="ipmi"))
    server, _, ok, detail = daemon.results.get(timeout=5)
    assert (server, ok) == ("srv1", False) and detail == f"ValueError: cannot build the request for '{MASK}'"
    daemon._alert(Action("alert", "srv1", f"reason quoting {SECRET}", event={"reason": json.dumps(SECRET)}))
    daemon._router()
    audit = (tmp_path / "audit.jsonl").read_text()
    assert read_audit(tmp_path / "audit.jsonl") and _leaks(audit) == [], audit
    assert agent_log and _leaks("\n".join(agent_log)) == [], agent_log


def test_a_crash_is_one_scrubbed_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "recoveryd.yml"
    data = {**_good(), "audit_log": str(tmp_path / "audit.jsonl"), "state_file": str(tmp_path / "s.json")}
    conf.write_text(yaml.safe_dump(data))

    def crash(self: Daemon) -> int:
        raise KeyError(json.dumps({"password": SECRET}))

    monkeypatch.setattr(Daemon, "run", crash)
    logger = logging.getLogger("edgepop.healthd")
    saved = list(logger.handlers)
    try:
        assert recoveryd_cli.main(["--config", str(conf)]) == 70
    finally:
        logger.handlers[:] = saved
    err = capsys.readouterr().err
    assert "recoveryd crashed" in err and "KeyError" in err and "Traceback" not in err
    assert _leaks(err) == [], err
