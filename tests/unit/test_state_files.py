"""The agents' state files: written whole or not at all, and a bad one at start-up is moved aside
with one warning naming it, never a crash. provisiond's pending queue and recoveryd's held sessions."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgepop.agents import statefile
from edgepop.agents.provisiond import pending
from edgepop.agents.provisiond.cli import main as provisiond_main
from edgepop.agents.recoveryd.config import parse_config
from edgepop.agents.recoveryd.daemon import Daemon

# every way a file can be found after a crash, a disk fault or a hand edit
TORN: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"  \n",
    "truncated": b'{"02:99:00:00:00:01": {"macs": ["02:99:00:00:00:01"], "fi',
    "not-utf8": b'{"a": "\xff\xfe"}',
    "nul-bytes": b"\0" * 64,
    "wrong-shape-list": b"[1, 2, 3]\n",
    "wrong-shape-scalar": b"42\n",
    "deep": b"[" * 100000 + b"]" * 100000,
}
WHY = {
    "empty": "empty",
    "whitespace": "empty",
    "truncated": "not JSON",
    "not-utf8": "not UTF-8 (byte 7)",
    "nul-bytes": "not JSON",
    "wrong-shape-list": "expected",
    "wrong-shape-scalar": "expected",
    "deep": "nested too deeply",
}


def _aside(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*"))


# --- the primitives -------------------------------------------------------------------------------


def test_write_json_replaces_whole_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    statefile.write_json(path, {"a": 1}, 0o640)
    assert path.stat().st_mode & 0o777 == 0o640
    statefile.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_crash_mid_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    statefile.write_json(path, {"held": ["srv1"]})
    before = path.read_bytes()

    def crash(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(statefile.os, "replace", crash)
    with pytest.raises(OSError, match="No space left"):
        statefile.write_json(path, {"held": ["srv1", "srv2"]})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # the temporary file is gone too


def test_a_crash_during_fsync_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    statefile.write_json(path, {"n": 1})

    def crash(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(statefile.os, "fsync", crash)
    with pytest.raises(OSError, match="Input/output error"):
        statefile.write_json(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 1}


@pytest.mark.parametrize("kind", sorted(TORN))
def test_read_json_moves_a_bad_file_aside(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(TORN[kind])
    warnings: list[str] = []

    def shape(doc: object) -> dict[str, Any]:
        if not isinstance(doc, dict):
            raise statefile.StateShapeError(f"expected an object, got {type(doc).__name__}")
        return doc

    assert statefile.read_json(path, shape, warnings.append) is None
    (aside,) = _aside(path)
    assert aside.read_bytes() == TORN[kind] and not path.exists()
    (warning,) = warnings
    assert warning.startswith(f"{path}: unreadable state (") and WHY[kind] in warning
    assert f"moved aside to {aside.name}, starting empty" in warning


def test_quarantine_never_overwrites_an_earlier_one(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    names = []
    for n in range(3):
        path.write_text(f"bad {n}")
        names.append(statefile.quarantine(path, now=0).name)
    assert names == ["state.json.corrupt-19700101T000000Z", "state.json.corrupt-19700101T000000Z-2",
                     "state.json.corrupt-19700101T000000Z-3"]  # fmt: skip
    assert (tmp_path / names[0]).read_text() == "bad 0"


# --- provisiond's pending queue -------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(TORN))
def test_pending_queue_recovers_from_a_bad_file(tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    queue = tmp_path / "pending.json"
    queue.write_bytes(TORN[kind])
    with caplog.at_level(logging.WARNING, logger="provisiond.pending"):
        entry = pending.record(queue, ["02:99:00:00:00:01"], "203.0.113.30")
    assert entry["calls"] == 1
    assert list(pending.read(queue)) == ["02:99:00:00:00:01"]
    (aside,) = _aside(queue)
    assert aside.read_bytes() == TORN[kind]
    (warning,) = [r.getMessage() for r in caplog.records]
    assert warning.startswith(f"{queue}: unreadable state (") and aside.name in warning


def test_pending_entry_of_a_wrong_shape_is_corruption(tmp_path: Path) -> None:
    queue = tmp_path / "pending.json"
    queue.write_text(json.dumps({"k": {"macs": ["not-a-mac"]}}))
    warnings: list[str] = []
    assert pending.read(queue, warnings.append) == {}
    assert "entry 'k': expected an object with a list of MACs" in warnings[0]


def test_pending_write_that_fails_keeps_the_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = tmp_path / "pending.json"
    pending.record(queue, ["02:99:00:00:00:01"], "203.0.113.30")
    before = queue.read_bytes()
    monkeypatch.setattr(statefile.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "disk full")))
    with pytest.raises(OSError):
        pending.record(queue, ["02:99:00:00:00:02"], "203.0.113.31")
    assert queue.read_bytes() == before


def test_pending_queue_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pending, "MAX_ENTRIES", 3)
    queue = tmp_path / "pending.json"
    for n in range(5):
        pending.record(queue, [f"02:99:00:00:00:0{n}"], "203.0.113.30", now=1000.0 + n)
    assert sorted(pending.read(queue)) == ["02:99:00:00:00:02", "02:99:00:00:00:03", "02:99:00:00:00:04"]


def test_provisiond_starts_with_a_torn_queue(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The daemon itself: a torn queue at start-up is one warning, and it goes on to serve."""
    from edgepop.derive import derive_provisioning
    from edgepop.validate import load_valid

    state = tmp_path / "state"
    state.mkdir()
    (state / "pending.json").write_bytes(TORN["truncated"])
    plan = tmp_path / "provisiond.json"
    doc = derive_provisioning(load_valid(Path(__file__).resolve().parents[2] / "inventory" / "lab"), "ctl1")
    plan.write_text(json.dumps({**doc, "callhome_token": "lab-callhome-token-0123456789"}))
    # an address this host does not have: the start-up work before the bind is what counts here
    with caplog.at_level(logging.INFO):
        code = provisiond_main(
            ["--plan", str(plan), "--ipxe-dir", str(tmp_path), "--state-dir", str(state), "--listen", "203.0.113.254"]
        )
    err = "\n".join(r.getMessage() for r in caplog.records)
    assert code == os.EX_OSERR and "cannot listen on 203.0.113.254" in err  # it got as far as the socket
    (aside,) = _aside(state / "pending.json")
    assert f"{state / 'pending.json'}: unreadable state (not JSON" in err and aside.name in err
    assert "Traceback" not in err


# --- recoveryd's held sessions --------------------------------------------------------------------


@pytest.fixture
def recoveryd_log() -> Iterator[list[str]]:
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.getMessage()} {getattr(record, 'ctx', {})}")

    logger = logging.getLogger("edgepop.healthd")
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _recoveryd(tmp_path: Path) -> Daemon:
    data = {
        "pop": "lab1",
        "audit_log": str(tmp_path / "audit.jsonl"),
        "state_file": str(tmp_path / "recoveryd.json"),
        "router": {"socket": str(tmp_path / "no-router.ctl"), "timeout_s": 0.2},
        "servers": [{"name": "srv1", "reach": {"address": "127.0.0.1", "port": 9}}],
    }
    return Daemon(parse_config(data, "recoveryd.yml"))


@pytest.mark.parametrize("kind", [*sorted(TORN), "held-not-a-list", "held-numbers"])
def test_recoveryd_starts_with_a_torn_state_file(tmp_path: Path, kind: str, recoveryd_log: list[str]) -> None:
    state = tmp_path / "recoveryd.json"
    content = {"held-not-a-list": b'{"held": "srv1"}', "held-numbers": b'{"held": [1]}'}.get(kind) or TORN[kind]
    state.write_bytes(content)
    daemon = _recoveryd(tmp_path)
    assert daemon.core.servers["srv1"].state == "healthy"  # nothing adopted, it runs
    (aside,) = _aside(state)
    assert aside.read_bytes() == content and not state.exists()
    warnings = [line for line in recoveryd_log if "unreadable state" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"{state}: unreadable state (")
    assert "sessions it held stay disabled on the router" in warnings[0]
    # and it writes a good one again
    daemon.core.servers["srv1"].state = "cycling"
    daemon._save_held()
    assert json.loads(state.read_text()) == {"held": ["srv1"]}


def test_recoveryd_write_that_fails_keeps_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, recoveryd_log: list[str]
) -> None:
    state = tmp_path / "recoveryd.json"
    state.write_text('{"held": ["srv1"]}\n')
    daemon = _recoveryd(tmp_path)
    assert daemon.core.servers["srv1"].state == "verify"
    monkeypatch.setattr(statefile.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(28, "disk full")))
    daemon.core.servers["srv1"].state = "healthy"
    daemon._save_held()  # logs, never raises
    assert state.read_text() == '{"held": ["srv1"]}\n'
    assert any(line.startswith("cannot write the state file") for line in recoveryd_log)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
