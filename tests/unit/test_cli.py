"""The CLI's contract: exit codes and what it prints, on a valid and an invalid inventory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edgepop.cli import EX_DATAERR, EX_OK, main

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"


def test_validate_lab_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(LAB)]) == EX_OK
    assert "valid (7 devices" in capsys.readouterr().out


def test_validate_reports_every_error_and_exits_65(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    srv2 = inv / "host_vars" / "srv2.yml"
    srv2.write_text(srv2.read_text().replace("anycast_weight: 200", "anycast_weight: 5000"))
    srv3 = inv / "host_vars" / "srv3.yml"
    srv3.write_text(srv3.read_text().replace("swp5", "swp50"))
    assert main(["validate", str(inv)]) == EX_DATAERR
    err = capsys.readouterr().err
    assert f"{inv}/host_vars/srv2.yml:" in err and "weight 5000 is out of range 1-1000" in err
    assert f"{inv}/host_vars/srv3.yml:" in err and "switch 'sw1' has no port 'swp50'" in err
    assert err.strip().endswith("invalid, 2 errors")


def test_render_writes_only_when_changed_and_removes_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["render", str(LAB), "--out", str(out)]) == EX_OK
    first = capsys.readouterr().out
    assert "0 removed" in first and "7 devices" in first
    assert (out / "summary.md").is_file() and (out / "srv1" / "structured.yml").is_file()
    stale = out / "ghost" / "bird.conf"
    stale.parent.mkdir()
    stale.write_text("old\n")
    (out / ".edgepop-render").write_text((out / ".edgepop-render").read_text() + "ghost/bird.conf\n")
    assert main(["render", str(LAB), "--out", str(out)]) == EX_OK
    second = capsys.readouterr().out
    assert " 0 changed, 1 removed" in second
    assert not stale.exists() and not stale.parent.exists()


def test_render_refuses_invalid_inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    (inv / "host_vars" / "srv1.yml").write_text("---\nserver: {nics: []}\n")
    out = tmp_path / "out"
    assert main(["render", str(inv), "--out", str(out)]) == EX_DATAERR
    assert "nothing rendered" in capsys.readouterr().err
    assert not out.exists()


def test_schema_reference_is_current() -> None:
    from edgepop.schema_docs import markdown_reference

    committed = (ROOT / "docs" / "data-model.md").read_text()
    assert committed == markdown_reference(), "regenerate with: make docs"
