"""Hostile files for every reader of operator-written YAML/JSON: `edgepop validate` (the inventory
loader) and each agent's `--check-config`. Each must end in one clear error naming the file and the
line, with the usual exit code, quickly: never a traceback, a hang, or a silent "valid"."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edgepop.agents.arprelay.cli import main as arprelay_main
from edgepop.agents.healthd.cli import main as healthd_main
from edgepop.agents.provisiond.cli import main as provisiond_main
from edgepop.agents.recoveryd.cli import main as recoveryd_main
from edgepop.cli import EX_DATAERR, EX_SOFTWARE, main
from edgepop.model.safe_yaml import MAX_FILE_BYTES

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "inventory" / "lab"
EX_CONFIG = os.EX_CONFIG  # 78: what the agents already exit with for a bad configuration file

pytestmark = pytest.mark.timeout(60)

BOMB = "".join(
    [
        "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
            for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def _write(path: Path, content: bytes | str | None) -> None:
    """Put the hostile content at `path`: bytes/str are the file; None leaves it to the case."""
    if path.exists() or path.is_symlink():
        path.unlink()
    if isinstance(content, str):
        content = content.encode()
    if content is not None:
        path.write_bytes(content)


def _fifo(path: Path) -> None:
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _self_link(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to(path.name)


def _too_large(path: Path) -> None:
    path.write_bytes(b"# padding\n" * (MAX_FILE_BYTES // 10 + 1))


# (id, content or a function that makes the file, expected message fragment, expected line or None)
Case = tuple[str, bytes | str | Callable[[Path], None], str, int | None]

YAML_CASES: list[Case] = [
    ("non-utf8", b"a: 1\nb: \xff\xfe\n", "not UTF-8: byte 0xff at offset 8 (line 2)", 2),
    ("huge-int", "a: 1\nb: " + "9" * 5000 + "\n", "integer with 5000 digits: far too large for any setting", 2),
    ("bad-date", "a: 2024-13-45\n", "cannot read this value: month must be in 1..12", 1),
    ("deep-flow-seq", "a: " + "[" * 10000 + "]" * 10000 + "\n", "nested deeper than 64 levels", 1),
    ("deep-flow-map", "a: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "nested deeper than 64 levels", 1),
    ("deep-block-map", "".join("  " * i + "k:\n" for i in range(200)), "nested deeper than 64 levels", 64),
    ("alias-bomb", BOMB, "expands to more than 500000 values through aliases", 6),
    (
        "alias-deep",
        "a: &a [[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]\n"
        + "".join(f"{c}: &{c} [[[[[[[[[[[[[[[[*{p}]]]]]]]]]]]]]]]]\n" for p, c in zip("abcd", "bcde", strict=True)),
        "nested deeper than 64 levels through aliases",
        None,
    ),
    ("recursive-anchor", "a: &a [1, *a]\n", "an alias refers to a node that contains it (a recursive anchor)", 1),
    ("block-seq-key", "a: 1\n? [a, b]\n: 1\n", "a mapping key must be a plain value (string or number), not a list", 2),
    ("flow-seq-key", "{[1]: 2}\n", "a mapping key must be a plain value (string or number), not a list", 1),
    ("map-key", "? {a: 1}\n: 2\n", "a mapping key must be a plain value (string or number), not a mapping", 1),
    ("duplicate-key", "a: 1\nb: 2\na: 3\n", "duplicate key 'a' (first at line 1)", 3),
    ("fifo", _fifo, "cannot read: a FIFO, not a regular file", None),
    ("symlink-loop", _self_link, "cannot read: too many levels of symbolic links (a symlink loop)", None),
    ("too-large", _too_large, f"file is too large: {(MAX_FILE_BYTES // 10 + 1) * 10} bytes, the limit is", None),
]

JSON_CASES: list[Case] = [
    ("non-utf8", b'{"pop": "\xff"}\n', "not UTF-8: byte 0xff at offset 9 (line 1)", 1),
    ("huge-int", '{\n"listen_port": ' + "9" * 5000 + "}\n", "an integer with thousands of digits", None),
    ("deep-nesting", "[" * 10000 + "]" * 10000, "nested deeper than 64 levels", 1),
    ("non-string-key", "{\n  [1]: 2}\n", "not JSON: Expecting property name enclosed in double quotes", 2),
    ("duplicate-key", '{"pop": "a",\n "pop": "b"}\n', "duplicate key 'pop'", None),
    ("fifo", _fifo, "cannot read: a FIFO, not a regular file", None),
    ("symlink-loop", _self_link, "cannot read: too many levels of symbolic links (a symlink loop)", None),
    ("too-large", _too_large, "file is too large", None),
]


def _make(path: Path, content: bytes | str | Callable[[Path], None]) -> None:
    if callable(content):
        content(path)
    else:
        _write(path, content)


def _no_traceback(out: str, err: str) -> None:
    assert "Traceback" not in out + err
    assert "internal error" not in out + err


@pytest.mark.parametrize(("name", "content", "message", "line"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
@pytest.mark.parametrize("where", ["host_vars/srv1.yml", "group_vars/all/pop.yml", "hosts.yml"])
def test_inventory_validate_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    where: str,
    name: str,
    content: bytes | str | Callable[[Path], None],
    message: str,
    line: int | None,
) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    _make(inv / where, content)
    assert main(["validate", str(inv)]) == EX_DATAERR
    captured = capsys.readouterr()
    _no_traceback(captured.out, captured.err)
    expected = f"{inv}/{where}:{line}: " if line is not None else f"{inv}/{where}"
    lines = [x for x in captured.err.splitlines() if x.startswith(expected) and message in x]
    assert lines, captured.err
    assert captured.err.rstrip().splitlines()[-1].startswith(f"{inv}: invalid, ")


@pytest.mark.parametrize(
    "agent",
    [
        pytest.param(healthd_main, id="healthd"),
        pytest.param(arprelay_main, id="arprelay"),
        pytest.param(recoveryd_main, id="recoveryd"),
    ],
)
@pytest.mark.parametrize(("name", "content", "message", "line"), YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_agent_check_config_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    agent: Callable[[list[str]], int],
    name: str,
    content: bytes | str | Callable[[Path], None],
    message: str,
    line: int | None,
) -> None:
    config = tmp_path / "agent.yml"
    _make(config, content)
    code = agent(["--config", str(config), "--check-config"])
    captured = capsys.readouterr()
    _no_traceback(captured.out, captured.err)
    # a link loop is "no such file" to os.path.exists: reported as EX_NOINPUT, like a missing file
    assert code == (os.EX_NOINPUT if name == "symlink-loop" else EX_CONFIG)
    # the UTF-8 message carries its own "(line N)"
    prefix = f"{config}: line {line}: " if line is not None and "(line" not in message else f"{config}: "
    assert captured.err.startswith(prefix), captured.err
    assert message in captured.err
    assert len(captured.err.splitlines()) == 1


@pytest.mark.parametrize(("name", "content", "message", "line"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_provisiond_check_config_refuses(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: bytes | str | Callable[[Path], None],
    message: str,
    line: int | None,
) -> None:
    plan = tmp_path / "provisiond.json"
    _make(plan, content)
    code = provisiond_main(["--plan", str(plan), "--check-config"])
    captured = capsys.readouterr()
    _no_traceback(captured.out, captured.err)
    assert code == (os.EX_NOINPUT if name == "symlink-loop" else EX_CONFIG)
    prefix = f"{plan}: line {line}: " if line is not None and "(line" not in message else f"{plan}: "
    assert captured.err.startswith(prefix), captured.err
    assert message in captured.err


def test_huge_but_convertible_integer_is_a_range_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    srv1 = inv / "host_vars" / "srv1.yml"
    text = srv1.read_text()
    assert "anycast_weight: 100\n" in text
    srv1.write_text(text.replace("anycast_weight: 100\n", "anycast_weight: " + "9" * 300 + "\n"))
    assert main(["validate", str(inv)]) == EX_DATAERR
    err = capsys.readouterr().err
    line = text[: text.index("anycast_weight: 100")].count("\n") + 1
    assert f"{srv1}:{line}: server.anycast_weight: weight {'9' * 300} is out of range 1-1000" in err


def test_directory_symlink_loop_is_reported_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inv = tmp_path / "lab"
    shutil.copytree(LAB, inv)
    (inv / "group_vars" / "all" / "again").symlink_to(".")
    assert main(["validate", str(inv)]) == EX_DATAERR
    err = capsys.readouterr().err
    assert f"{inv}/group_vars/all/again: directory loop: a symlink leads back to a directory already read" in err


def test_agent_duplicate_key_was_silently_last_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real healthd file with one key twice: refused with the line, not the last one taken."""
    config = tmp_path / "healthd.yml"
    config.write_text("hostname: srv1\nlog_level: info\nlog_level: debug\n")
    assert healthd_main(["--config", str(config), "--check-config"]) == EX_CONFIG
    err = capsys.readouterr().err
    assert (
        err
        == f"{config}: line 3: duplicate key 'log_level' (first at line 2); YAML would silently keep only the last\n"
    )


# --- the last-resort handler --------------------------------------------------------------------


def _boom(*args: object) -> int:
    raise RuntimeError("boom\non two lines")


@pytest.mark.parametrize(
    ("target", "argv"),
    [
        ("edgepop.cli._cmd_validate", ["validate", str(LAB)]),
        ("edgepop.agents.provisiond.cli._cmd_pending", ["provisioning", "pending", "--state-dir", "/nonexistent"]),
    ],
    ids=["validate", "extension-subcommand"],
)
def test_cli_internal_error_is_one_line_and_70(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: str, argv: list[str]
) -> None:
    monkeypatch.setattr(target, _boom)
    assert main(argv) == EX_SOFTWARE
    captured = capsys.readouterr()
    assert captured.err == (
        "edgepop: internal error: RuntimeError: boom on two lines (run with --debug for the traceback)\n"
    )
    assert main(["--debug", *argv]) == EX_SOFTWARE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.rstrip().endswith("RuntimeError: boom\non two lines")


def test_cli_keyboard_interrupt_still_exits_130(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(*args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr("edgepop.cli._cmd_validate", interrupted)
    assert main(["validate", str(LAB)]) == 130


@pytest.mark.parametrize(
    ("target", "entry", "argv", "prog"),
    [
        ("edgepop.agents.healthd.cli.load_config", healthd_main, ["--config", "x.yml", "--check-config"], "healthd"),
        ("edgepop.agents.arprelay.cli.load_config", arprelay_main, ["--config", "x.yml", "--check-config"], "arprelay"),
        (
            "edgepop.agents.recoveryd.cli.load_config",
            recoveryd_main,
            ["--config", "x.yml", "--check-config"],
            "recoveryd",
        ),
        (
            "edgepop.agents.provisiond.cli.load_plan",
            provisiond_main,
            ["--plan", "x.json", "--check-config"],
            "provisiond",
        ),
    ],
    ids=["healthd", "arprelay", "recoveryd", "provisiond"],
)
def test_agent_internal_error_is_one_line_and_70(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    target: str,
    entry: Callable[[list[str]], int],
    argv: list[str],
    prog: str,
) -> None:
    monkeypatch.setattr(target, _boom)
    assert entry(argv) == os.EX_SOFTWARE
    assert capsys.readouterr().err == (
        f"{prog}: internal error: RuntimeError: boom on two lines (run with --debug for the traceback)\n"
    )
    assert entry([*argv, "--debug"]) == os.EX_SOFTWARE
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):") and "RuntimeError: boom" in err
