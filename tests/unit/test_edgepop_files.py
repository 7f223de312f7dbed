"""edgepop_files: a set of files installed in one step, all or nothing, with honest changed/diff.

Each test runs ansible-playbook on the controller itself (connection local) against a scratch
directory, so the action plugin and the module are exercised exactly as the roles use them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from playbook_run import run_play

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def play(tmp_path: Path, task: dict[str, Any], *flags: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run one edgepop_files task; return its result (from the json callback)."""
    task = {"name": "files", "edgepop_files": task, "register": "out"}
    run = run_play(
        tmp_path, [{"hosts": "localhost", "gather_facts": False, "vars": extra or {}, "tasks": [task]}], *flags
    )
    result = run.first()
    result["_stdout"] = run.output
    return result


def test_installs_then_reports_nothing_to_do(tmp_path: Path) -> None:
    a, b = tmp_path / "etc" / "a.conf", tmp_path / "etc" / "sub" / "b.conf"
    spec = {"files": [{"path": str(a), "content": "one\n", "mode": "0640"}, {"path": str(b), "content": "two\n"}]}
    first = play(tmp_path, spec)
    assert first["changed"] is True, first
    assert sorted(first["changed_paths"]) == sorted([str(a), str(b)])
    assert a.read_text() == "one\n" and b.read_text() == "two\n"
    assert oct(a.stat().st_mode & 0o777) == "0o640"
    again = play(tmp_path, spec)
    assert again["changed"] is False and again["changed_paths"] == []
    # a mode change alone is a change, and only of that path
    spec["files"][0]["mode"] = "0644"
    third = play(tmp_path, spec)
    assert third["changed_paths"] == [str(a)]
    assert oct(a.stat().st_mode & 0o777) == "0o644"


def test_check_mode_writes_nothing_and_shows_the_diff(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text("old\n")
    out = play(tmp_path, {"files": [{"path": str(a), "content": "new\n"}]}, "--check", "--diff")
    assert out["changed"] is True
    assert a.read_text() == "old\n"
    assert out["diff"][0]["before"] == "old\n" and out["diff"][0]["after"] == "new\n"


def test_a_failing_validation_changes_nothing(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.conf", tmp_path / "bad.conf"
    good.write_text("before\n")
    spec = {
        "files": [
            {"path": str(good), "content": "after\n"},
            {"path": str(bad), "content": "broken\n", "validate": "grep -qx valid %s"},
        ]
    }
    out = play(tmp_path, spec)
    assert out.get("failed") is True
    assert "validation failed" in out["msg"] and "nothing was changed" in out["msg"]
    assert good.read_text() == "before\n"
    assert not bad.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".edgepop-")] == []
    spec["files"][1]["content"] = "valid\n"
    assert play(tmp_path, spec)["changed"] is True
    assert good.read_text() == "after\n" and bad.read_text() == "valid\n"


def test_links_removals_and_pruning(tmp_path: Path) -> None:
    conf = tmp_path / "net"
    conf.mkdir()
    (conf / "10-old.network").write_text("stale\n")
    (conf / "keep.txt").write_text("not ours\n")
    (tmp_path / "default").write_text("debian\n")
    spec = {
        "files": [
            {"path": str(conf / "20-new.network"), "content": "[Match]\n"},
            {"path": str(tmp_path / "enabled"), "state": "link", "src": str(conf / "20-new.network")},
            {"path": str(tmp_path / "default"), "state": "absent"},
        ],
        "prune": [{"path": str(conf), "patterns": ["[0-9][0-9]-*.network"]}],
    }
    out = play(tmp_path, spec)
    assert sorted(out["changed_paths"]) == sorted(
        [
            str(conf / "20-new.network"),
            str(tmp_path / "enabled"),
            str(tmp_path / "default"),
            str(conf / "10-old.network"),
        ]
    )
    assert os.readlink(tmp_path / "enabled") == str(conf / "20-new.network")
    assert not (tmp_path / "default").exists() and not (conf / "10-old.network").exists()
    assert (conf / "keep.txt").exists()
    assert play(tmp_path, spec)["changed"] is False


def test_missing_requirement_fails_before_anything_is_written(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    out = play(
        tmp_path, {"files": [{"path": str(a), "content": "x\n"}], "requires": [str(tmp_path / "no-such-daemon")]}
    )
    assert out.get("failed") is True and "no-such-daemon" in out["msg"]
    assert not a.exists()


def test_secrets_are_resolved_but_never_shown(tmp_path: Path) -> None:
    a = tmp_path / "bird.conf"
    extra = {"vault_demo": "s3cret-value"}
    spec = {"files": [{"path": str(a), "content": 'password "<vault:vault_demo>";\n'}]}
    out = play(tmp_path, spec, "--diff", "-v", extra=extra)
    assert a.read_text() == 'password "s3cret-value";\n'
    assert "s3cret-value" not in out["_stdout"]
    assert out["diff"][0]["after"] == "(secret: not shown)\n"
    assert play(tmp_path, spec, extra=extra)["changed"] is False


def test_a_secret_without_a_value_fails_and_writes_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.conf", tmp_path / "bird.conf"
    # the variable holds a placeholder again: a vault that was never opened
    extra = {"vault_demo": "<vault:vault_other>"}
    secret = {"path": str(b), "content": 'password "<vault:vault_demo>";\n'}
    spec = {"files": [{"path": str(a), "content": "a\n"}, secret]}
    out = play(tmp_path, spec, extra=extra)
    assert out.get("failed") is True
    assert out["msg"] == f"files[1] ({b}): secret vault_demo has no value for this host"
    assert not a.exists() and not b.exists()


def test_unsafe_writes_keep_the_inode(tmp_path: Path) -> None:
    a = tmp_path / "hostname"
    a.write_text("old\n")
    inode = a.stat().st_ino
    play(tmp_path, {"files": [{"path": str(a), "content": "srv1\n", "unsafe_writes": True}]})
    assert a.read_text() == "srv1\n" and a.stat().st_ino == inode


@pytest.mark.parametrize(
    "entry", [{"content": "x"}, {"path": "relative/x", "content": "x"}, {"path": "/x", "colour": "red"}]
)
def test_bad_entries_are_refused(tmp_path: Path, entry: dict[str, Any]) -> None:
    out = play(tmp_path, {"files": [entry]}, "--check")
    assert out.get("failed") is True and out["msg"]


def test_directories_and_pruned_release_trees(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    (releases / "old1" / "pkg").mkdir(parents=True)
    (releases / "old1" / "pkg" / "x.py").write_text("x\n")
    spec = {
        "files": [
            {"path": str(releases / "cur"), "state": "directory", "mode": "0750"},
            {"path": str(tmp_path / "lib"), "state": "link", "src": str(releases / "cur")},
        ],
        "prune": [{"path": str(releases), "patterns": ["*"], "directories": True}],
    }
    out = play(tmp_path, spec)
    assert sorted(out["changed_paths"]) == sorted(
        [str(releases / "cur"), str(tmp_path / "lib"), str(releases / "old1")]
    )
    assert sorted(p.name for p in releases.iterdir()) == ["cur"]
    assert oct((releases / "cur").stat().st_mode & 0o777) == "0o750"
    assert play(tmp_path, spec)["changed"] is False
    # without directories=true a directory that matches is left alone
    (releases / "old2").mkdir()
    spec["prune"][0]["directories"] = False
    assert play(tmp_path, spec)["changed"] is False and (releases / "old2").is_dir()
    # nothing but the pruning, keeping the current release by name
    only = {"files": [], "prune": [{"path": str(releases), "patterns": ["*"], "directories": True, "keep": ["cur"]}]}
    assert play(tmp_path, only)["changed_paths"] == [str(releases / "old2")]
    assert sorted(p.name for p in releases.iterdir()) == ["cur"]
