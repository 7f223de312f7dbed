"""`edgepop render --out DIR`: never writes outside DIR, replaces it all or nothing, and refuses a
DIR that holds files render did not write."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgepop import render
from edgepop.cli import EX_CANTCREAT, EX_DATAERR, EX_IOERR, EX_OK, main
from edgepop.render import MANIFEST, RenderPathError, write_tree

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory`: content and inode (a rewrite with the same bytes still shows)."""
    return {
        p.relative_to(directory).as_posix(): (p.read_bytes(), p.stat().st_ino)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "bad",
    ["../escaped.txt", "srv1/../../escaped.txt", "/tmp/escaped.txt", "./srv1/bird.conf", "srv1//bird.conf", ""],
)
def test_a_path_outside_out_is_refused_and_nothing_written(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "work" / "out"
    with pytest.raises(RenderPathError, match="refusing to write"):
        write_tree({"srv1/bird.conf": "ok\n", bad: "evil\n"}, out)
    assert not out.exists() and not (tmp_path / "work").exists()
    assert not (tmp_path / "escaped.txt").exists()


def test_cli_refuses_a_traversing_device_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["render", str(LAB), "--out", str(out)]) == EX_OK
    before = snapshot(out)
    capsys.readouterr()
    real = render.render_pop
    monkeypatch.setattr(render, "render_pop", lambda model: {**real(model), "../../escaped/bird.conf": "evil\n"})
    assert main(["render", str(LAB), "--out", str(out)]) == EX_DATAERR
    err = capsys.readouterr().err
    assert (
        err
        == f"{out}: refusing to write '../../escaped/bird.conf': it would leave the output directory; nothing written\n"
    )
    assert snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no temporary directory left beside it


def test_a_failure_mid_render_leaves_the_old_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    write_tree({"srv1/bird.conf": "old\n", "summary.md": "old\n"}, out)
    before = snapshot(out)
    # "srv1" as a file, then "srv1/bird.conf" below it: the second write fails half-way through
    with pytest.raises(OSError):
        write_tree({"srv1": "a file\n", "srv1/bird.conf": "new\n", "summary.md": "new\n"}, out)
    assert snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]

    def swap_fails(build: Path, out_dir: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render, "_swap_into_place", swap_fails)
    with pytest.raises(OSError, match="No space left"):
        write_tree({"srv1/bird.conf": "new\n", "summary.md": "new\n"}, out)
    assert snapshot(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_cli_reports_a_write_failure_and_keeps_the_old_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["render", str(LAB), "--out", str(out)]) == EX_OK
    before = snapshot(out)
    capsys.readouterr()

    def swap_fails(build: Path, out_dir: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(render, "_swap_into_place", swap_fails)
    assert main(["render", str(LAB), "--out", str(out)]) == EX_IOERR
    assert capsys.readouterr().err == f"cannot write {out}: [Errno 28] No space left on device; {out} is as it was\n"
    assert snapshot(out) == before


def test_unchanged_files_keep_their_inode_and_stale_ones_go(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert write_tree({"a/x.conf": "1\n", "a/y.conf": "2\n", "b/z.conf": "3\n"}, out) == (
        ["a/x.conf", "a/y.conf", "b/z.conf"],
        [],
    )
    first = snapshot(out)
    changed, removed = write_tree({"a/x.conf": "1\n", "a/y.conf": "two\n"}, out)
    assert (changed, removed) == (["a/y.conf"], ["b/z.conf"])
    second = snapshot(out)
    assert second["a/x.conf"] == first["a/x.conf"]  # same inode: not rewritten
    assert second["a/y.conf"][0] == b"two\n"
    assert not (out / "b").exists()
    assert (out / MANIFEST).read_text() == "a/x.conf\na/y.conf\n"


@pytest.mark.parametrize("foreign", ["notes.txt", "srv1/local.conf"])
def test_files_render_did_not_write_are_never_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], foreign: str
) -> None:
    out = tmp_path / "out"
    assert main(["render", str(LAB), "--out", str(out)]) == EX_OK
    capsys.readouterr()
    (out / foreign).write_text("mine\n")
    before = snapshot(out)
    assert main(["render", str(LAB), "--out", str(out)]) == EX_CANTCREAT
    assert capsys.readouterr().err == (
        f"{out} holds files render did not write ({foreign}): move them away first; nothing written\n"
    )
    assert snapshot(out) == before


def test_a_directory_that_is_not_a_render_output_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / ".bashrc").write_text("keep me\n")
    assert main(["render", str(LAB), "--out", str(out)]) == EX_CANTCREAT
    assert f"{out} is not empty and holds no {MANIFEST}" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == [".bashrc"]


def test_a_symlink_planted_in_the_output_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree({"srv1/bird.conf": "x\n"}, out)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (out / "srv2").symlink_to(elsewhere)
    with pytest.raises(render.RenderOutError, match=r"holds files render did not write \(srv2\)"):
        write_tree({"srv1/bird.conf": "x\n", "srv2/bird.conf": "y\n"}, out)
    assert os.listdir(elsewhere) == []


def test_an_empty_directory_is_taken(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir(mode=0o750)
    assert write_tree({"summary.md": "x\n"}, out) == (["summary.md"], [])
    assert (out / "summary.md").read_text() == "x\n"
    assert out.stat().st_mode & 0o777 == 0o750  # the directory's mode survives the swap
