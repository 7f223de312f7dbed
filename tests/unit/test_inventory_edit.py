"""`edgepop inventory ...`: each edit changes exactly what it says, or nothing at all."""

from __future__ import annotations

import difflib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgepop.cli import EX_DATAERR, EX_IOERR, EX_OK, EX_USAGE, main
from edgepop.validate import validate_inventory

NEW_SERVER = [
    "--mac", "mgmt0=02:00:00:00:05:00", "ext0=02:00:00:00:05:01", "int0=02:00:00:00:05:02",
    "--address-v4", "mgmt0=203.0.113.15", "ext0=198.51.100.15", "int0=198.51.100.45",
    "--address-v6", "ext0=2001:db8:0:1::15", "int0=2001:db8:0:2::15",
    "--switch-port", "ext0=swp10", "int0=swp11", "--new-switch-ports",
    "--ipmi-address", "203.0.113.25",
    "--pdu-outlet", "5",
]  # fmt: skip
LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab"
PER_MACHINE = [opt for opt in NEW_SERVER if opt.startswith("--") and opt != "--new-switch-ports"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def edit(*args: str) -> int:
    return main(["inventory", *args])


def changed_lines(before: str, after: str) -> list[tuple[str, list[str], list[str]]]:
    """(opcode, old lines, new lines) for every difference between two texts."""
    a, b = before.splitlines(keepends=True), after.splitlines(keepends=True)
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(tag, a[i1:i2], b[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]


def entry_of(hosts_text: str, host: str) -> list[str]:
    """A host's lines in hosts.yml: its name and its ansible_host."""
    lines = hosts_text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.strip() == f"{host}:")
    return lines[at : at + 2]


def pad_flow_maps(root: Path) -> None:
    """Rewrite host_vars the way prettier writes flow mappings: `{ a: 1 }`."""
    for path in (root / "host_vars").glob("*.yml"):
        text = re.sub(r"\{([^ {])", r"{ \1", path.read_text())
        path.write_text(re.sub(r"([^ }])\}", r"\1 }", text))


# --- set-weight ---------------------------------------------------------------------------------


@pytest.mark.parametrize("padded", [False, True], ids=["as-is", "padded-flow-maps"])
def test_set_weight_changes_exactly_one_line(lab_copy: Path, padded: bool) -> None:
    if padded:
        pad_flow_maps(lab_copy)
    before = snapshot(lab_copy)
    assert edit("set-weight", str(lab_copy), "srv2", "250") == EX_OK
    after = snapshot(lab_copy)
    assert {k for k in before if before[k] != after[k]} == {"host_vars/srv2.yml"}
    old, new = before["host_vars/srv2.yml"].decode(), after["host_vars/srv2.yml"].decode()
    assert changed_lines(old, new) == [("replace", ["  anycast_weight: 200\n"], ["  anycast_weight: 250\n"])]
    assert new.startswith("---\n# Lab server:")
    assert validate_inventory(lab_copy).ok


def test_set_weight_to_the_same_value_changes_nothing(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(lab_copy)
    assert edit("set-weight", str(lab_copy), "srv1", "100") == EX_OK
    assert "nothing to change" in capsys.readouterr().out
    assert snapshot(lab_copy) == before


def test_invalid_result_is_refused_with_the_validation_message(
    lab_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(lab_copy)
    assert edit("set-weight", str(lab_copy), "srv1", "99999") == EX_DATAERR
    err = capsys.readouterr().err
    assert f"{lab_copy}/host_vars/srv1.yml:" in err
    assert "server.anycast_weight: weight 99999 is out of range 1-1000" in err
    assert "nothing was changed" in err
    assert snapshot(lab_copy) == before


# --- add-server ---------------------------------------------------------------------------------


def expected_srv5(srv4: str) -> str:
    """srv4's host_vars with every per-machine value replaced, and nothing else."""
    for old, new in [
        ("02:00:00:00:04:", "02:00:00:00:05:"),
        ("203.0.113.14/", "203.0.113.15/"),
        ("198.51.100.14/", "198.51.100.15/"),
        ("198.51.100.44/", "198.51.100.45/"),
        ("2001:db8:0:1::14/", "2001:db8:0:1::15/"),
        ("2001:db8:0:2::14/", "2001:db8:0:2::15/"),
        ("switch_port: swp7", "switch_port: swp10"),
        ("switch_port: swp8", "switch_port: swp11"),
        ("address: 203.0.113.24", "address: 203.0.113.25"),
        ("outlet: 4", "outlet: 5"),
    ]:
        assert srv4.count(old) >= 1, old
        srv4 = srv4.replace(old, new)
    return srv4


@pytest.mark.parametrize("padded", [False, True], ids=["as-is", "padded-flow-maps"])
def test_add_server_like_an_existing_one(lab_copy: Path, padded: bool, capsys: pytest.CaptureFixture[str]) -> None:
    if padded:
        pad_flow_maps(lab_copy)
    before = snapshot(lab_copy)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER) == EX_OK
    out = capsys.readouterr().out
    assert "ansible_host 203.0.113.15: the new address of mgmt0" in out
    after = snapshot(lab_copy)
    assert set(after) - set(before) == {"host_vars/srv5.yml"}
    assert {k for k in before if before[k] != after[k]} == {"hosts.yml", "host_vars/sw1.yml"}
    assert after["host_vars/srv5.yml"].decode() == expected_srv5(before["host_vars/srv4.yml"].decode())

    hosts = changed_lines(before["hosts.yml"].decode(), after["hosts.yml"].decode())
    srv5 = [
        line.replace("srv4", "srv5").replace(".14", ".15") for line in entry_of(before["hosts.yml"].decode(), "srv4")
    ]
    assert hosts == [("insert", [], srv5)]
    assert after["hosts.yml"].decode().index("srv5:") > after["hosts.yml"].decode().index("srv4:")
    sw1 = changed_lines(before["host_vars/sw1.yml"].decode(), after["host_vars/sw1.yml"].decode())
    if "{ name" in before["host_vars/sw1.yml"].decode():
        port = '    - {{ name: swp{}, peer: "srv5:{}" }}\n'
    else:
        port = '    - {{name: swp{}, peer: "srv5:{}"}}\n'
    assert sw1 == [("insert", [], [port.format(10, "ext0"), port.format(11, "int0")])]
    assert validate_inventory(lab_copy).ok


def test_add_server_names_every_missing_value(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(lab_copy)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", "--mac", "ext0=02:00:00:00:05:01") == EX_USAGE
    err = capsys.readouterr().err
    for missing in [
        "--mac mgmt0=MAC",
        "--mac int0=MAC",
        "--address-v4 mgmt0=ADDRESS",
        "--address-v4 ext0=ADDRESS",
        "--address-v6 ext0=ADDRESS",
        "--address-v4 int0=ADDRESS",
        "--address-v6 int0=ADDRESS",
        "--switch-port ext0=PORT",
        "--switch-port int0=PORT",
        "--ipmi-address ADDRESS",
        "--pdu-outlet OUTLET",
    ]:
        assert f"missing {missing}" in err
    assert "--mac ext0" not in err.replace("missing --mac", "")
    assert snapshot(lab_copy) == before


def test_add_server_unknown_switch_port_needs_declaring(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in NEW_SERVER if a != "--new-switch-ports"]
    before = snapshot(lab_copy)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *args) == EX_USAGE
    err = capsys.readouterr().err
    assert "switch 'sw1' has no port 'swp10' (for srv5:ext0)" in err and "--new-switch-ports" in err
    assert snapshot(lab_copy) == before


def test_add_server_reusing_a_port_fails_validation(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("swp10", "swp7") for a in NEW_SERVER]
    before = snapshot(lab_copy)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *args) == EX_DATAERR
    assert "sw1:swp7 is already cabled to srv4:ext0" in capsys.readouterr().err
    assert snapshot(lab_copy) == before


def test_add_server_from_file(lab_copy: Path, tmp_path: Path) -> None:
    body = tmp_path / "srv5.yml"
    body.write_text(expected_srv5((lab_copy / "host_vars" / "srv4.yml").read_text()))
    args = ["--ansible-host", "203.0.113.15", "--weight", "150", "--rack", "r07", "--new-switch-ports"]
    assert edit("add-server", str(lab_copy), "srv5", "--from", str(body), *args) == EX_OK
    written = (lab_copy / "host_vars" / "srv5.yml").read_text()
    assert written == body.read_text().replace("anycast_weight: 300", "anycast_weight: 150") + "  rack: r07\n"
    assert [line.strip() for line in entry_of((lab_copy / "hosts.yml").read_text(), "srv5")] == [
        "srv5:",
        "ansible_host: 203.0.113.15",
    ]
    assert validate_inventory(lab_copy).ok


def test_add_server_from_a_bare_server_body(lab_copy: Path, tmp_path: Path) -> None:
    srv4 = yaml.safe_load((lab_copy / "host_vars" / "srv4.yml").read_text())["server"]
    body = tmp_path / "body.yml"
    body.write_text(yaml.safe_dump(srv4, sort_keys=False))
    args = [a for a in NEW_SERVER if a != "--new-switch-ports"]
    assert edit("add-server", str(lab_copy), "srv5", "--from", str(body), *args, "--new-switch-ports") == EX_OK
    written = yaml.safe_load((lab_copy / "host_vars" / "srv5.yml").read_text())
    assert (lab_copy / "host_vars" / "srv5.yml").read_text().startswith("---\nserver:\n")
    assert [n["mac"] for n in written["server"]["nics"]] == [
        "02:00:00:00:05:00",
        "02:00:00:00:05:01",
        "02:00:00:00:05:02",
    ]
    listed = entry_of((lab_copy / "hosts.yml").read_text(), "srv5")
    assert listed[0].strip() == "srv5:" and "ansible_host" not in listed[1]  # none given, none in the file
    assert validate_inventory(lab_copy).ok


def test_add_server_refuses_an_existing_name(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert edit("add-server", str(lab_copy), "srv3", "--like", "srv4", *NEW_SERVER) == EX_USAGE
    assert "'srv3' is already in the inventory" in capsys.readouterr().err


# --- adopt --------------------------------------------------------------------------------------


def test_adopt_assigns_macs_in_the_template_nic_order(lab_copy: Path) -> None:
    args = [a for a in NEW_SERVER if not a.startswith(("--mac", "mgmt0=02", "ext0=02", "int0=02"))]
    macs = ["02-00-00-00-05-0A", "02:00:00:00:05:0b", "0200000005ff"]
    assert edit("adopt", str(lab_copy), "--mac", *macs, "--as", "srv5", *args) == EX_OK
    text = (lab_copy / "host_vars" / "srv5.yml").read_text()
    found = re.findall(r'name: (\w+),? *\n? *mac: "([0-9a-f:]+)"', text)
    assert found == [("mgmt0", "02:00:00:00:05:0a"), ("ext0", "02:00:00:00:05:0b"), ("int0", "02:00:00:00:05:ff")]
    assert validate_inventory(lab_copy).ok


def test_adopt_refuses_a_known_mac_and_touches_nothing(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a for a in NEW_SERVER if not a.startswith(("--mac", "mgmt0=02", "ext0=02", "int0=02"))]
    before = snapshot(lab_copy)
    code = edit("adopt", str(lab_copy), "--mac", "02:00:00:00:05:00", "02:00:00:00:03:01", "02:00:00:00:05:02",
                "--as", "srv5", *args)  # fmt: skip
    assert code == EX_DATAERR
    assert "MAC 02:00:00:00:03:01 is already srv3:ext0" in capsys.readouterr().err
    assert snapshot(lab_copy) == before


def test_adopt_with_the_wrong_number_of_macs(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = edit("adopt", str(lab_copy), "--mac", "02:00:00:00:05:00", "--as", "srv5", "--like", "srv4")
    assert code == EX_USAGE
    assert "1 MAC(s) given for 3 NIC(s) (mgmt0, ext0, int0)" in capsys.readouterr().err


# --- remove-server ------------------------------------------------------------------------------


def test_remove_server(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(lab_copy)
    assert edit("remove-server", str(lab_copy), "srv4") == EX_OK
    assert "2 switch port peer(s) cleared" in capsys.readouterr().out
    after = snapshot(lab_copy)
    assert set(before) - set(after) == {"host_vars/srv4.yml"}
    assert {k for k in after if before[k] != after[k]} == {"hosts.yml", "host_vars/sw1.yml"}
    hosts = changed_lines(before["hosts.yml"].decode(), after["hosts.yml"].decode())
    assert hosts == [("delete", entry_of(before["hosts.yml"].decode(), "srv4"), [])]
    sw1 = changed_lines(before["host_vars/sw1.yml"].decode(), after["host_vars/sw1.yml"].decode())
    assert len(sw1) == 1 and sw1[0][0] == "replace"
    assert [line.replace(" ", "") for line in sw1[0][2]] == ["-{name:swp7}\n", "-{name:swp8}\n"]
    assert "srv4" not in after["host_vars/sw1.yml"].decode()
    assert validate_inventory(lab_copy).ok


def test_remove_then_add_back_restores_every_byte(lab_copy: Path) -> None:
    before = snapshot(lab_copy)
    assert edit("remove-server", str(lab_copy), "srv4") == EX_OK
    readd = [
        "--mac", "mgmt0=02:00:00:00:04:00", "ext0=02:00:00:00:04:01", "int0=02:00:00:00:04:02",
        "--address-v4", "mgmt0=203.0.113.14", "ext0=198.51.100.14", "int0=198.51.100.44",
        "--address-v6", "ext0=2001:db8:0:1::14", "int0=2001:db8:0:2::14",
        "--switch-port", "ext0=swp7", "int0=swp8", "--ipmi-address", "203.0.113.24", "--pdu-outlet", "4",
        "--weight", "300",
    ]  # fmt: skip
    assert edit("add-server", str(lab_copy), "srv4", "--like", "srv3", *readd) == EX_OK
    assert snapshot(lab_copy) == before


# --- --check, --diff, exit codes ----------------------------------------------------------------


def test_check_writes_nothing(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(lab_copy)
    assert edit("remove-server", str(lab_copy), "srv2", "--check") == EX_OK
    out = capsys.readouterr().out
    assert f"would delete {lab_copy}/host_vars/srv2.yml" in out
    assert f"would change {lab_copy}/hosts.yml" in out
    assert "check only: nothing written" in out
    assert snapshot(lab_copy) == before
    assert not list(lab_copy.rglob(".*.tmp"))


def test_diff_output(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = (lab_copy / "host_vars" / "srv3.yml").read_text().splitlines(keepends=True)
    at = lines.index("  anycast_weight: 200\n")
    assert edit("set-weight", str(lab_copy), "srv3", "400", "--diff", "--check") == EX_OK
    out = capsys.readouterr().out
    assert out[: out.index("would change")] == (
        "--- a/host_vars/srv3.yml\n"
        "+++ b/host_vars/srv3.yml\n"
        f"@@ -{at - 2},5 +{at - 2},5 @@\n"
        + "".join(f" {line}" for line in lines[at - 3 : at])
        + "-  anycast_weight: 200\n"
        + "+  anycast_weight: 400\n"
        + "".join(f" {line}" for line in lines[at + 1 :])
    )
    assert len(lines) == at + 2  # the hunk above reaches the end of the file


def test_diff_of_new_and_deleted_files(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert edit("remove-server", str(lab_copy), "srv1", "--diff", "--check") == EX_OK
    out = capsys.readouterr().out
    size = len((lab_copy / "host_vars" / "srv1.yml").read_text().splitlines())
    assert f"--- a/host_vars/srv1.yml\n+++ /dev/null\n@@ -1,{size} +0,0 @@\n" in out
    assert '-    - {name: swp1, peer: "srv1:ext0"}' in out.replace("{ ", "{").replace(" }", "}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set-weight", "{inv}", "srv9", "100"], "unknown host 'srv9' (servers: srv1, srv2, srv3, srv4)"),
        (["set-weight", "{inv}", "rtr1", "100"], "'rtr1' is not a server"),
        (["remove-server", "{inv}", "sw1"], "'sw1' is not a server"),
        (["set-weight", "{inv}/missing", "srv1", "100"], "no such inventory directory"),
        (["add-server", "{inv}", "srv5", "--like", "srv4", "--mac", "mgmt0=zz"], "is not a MAC address"),
        (["add-server", "{inv}", "Srv5", "--like", "srv4"], "hostname 'Srv5' must be lower-case"),
        (["add-server", "{inv}", "srv5", "--like", "rtr1"], "'rtr1' is not a server"),
        (["add-server", "{inv}", "srv5"], "one of the arguments --like --from is required"),
        (["add-server", "{inv}", "srv5", "--like", "srv4", "--address-v4", "ext0=2001:db8::5"], "not an IPv4"),
        (["set-weight", "{inv}", "srv1", "heavy"], "expected a whole number"),
        (["set-weight", "{inv}"], "the following arguments are required"),
        (["adopt", "{inv}", "--as", "srv5"], "the following arguments are required: --mac"),
        (["frob", "{inv}"], "invalid choice: 'frob'"),
        ([], "usage: edgepop inventory"),
    ],
)
def test_usage_errors_exit_64(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = snapshot(lab_copy)
    try:
        code = edit(*[a.format(inv=lab_copy) for a in args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code  # type: ignore[assignment]
    assert code == EX_USAGE
    assert message in capsys.readouterr().err
    assert snapshot(lab_copy) == before


def test_write_failure_rolls_back_and_exits_74(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    before = snapshot(lab_copy)
    real_replace = os.replace
    calls: list[str] = []

    def flaky_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(dst))
        if len(calls) == 2:  # the second file of the edit
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    assert edit("remove-server", str(lab_copy), "srv4") == EX_IOERR
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "No space left on device" in err and "rolled back" in err
    assert snapshot(lab_copy) == before
    assert not list(lab_copy.rglob(".*.tmp"))


def test_add_then_remove_restores_spare_ports(lab_copy: Path) -> None:
    """A switch that marks free ports `description: spare` (as fra1's do) keeps doing so."""
    sw1 = lab_copy / "host_vars" / "sw1.yml"
    lines = sw1.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if "swp9" in line and "name:" in line) + 1
    template = next(line for line in lines if "swp1," in line)
    spare = [
        template.replace("swp1,", f"swp{n},").replace('peer: "srv1:ext0"', "description: spare") for n in (10, 11, 12)
    ]
    sw1.write_text("".join(lines[:at] + spare + lines[at:]))
    before = snapshot(lab_copy)
    args = [a for a in NEW_SERVER if a != "--new-switch-ports"]
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *args) == EX_OK
    cabled = sw1.read_text()
    assert cabled.count("spare") == 1 and "swp10, peer" in cabled.replace("{ ", "{")
    assert validate_inventory(lab_copy).ok
    assert edit("remove-server", str(lab_copy), "srv5") == EX_OK
    assert snapshot(lab_copy) == before


FRA1 = Path(__file__).resolve().parents[2] / "inventory" / "examples" / "fra1"


def test_bonded_server_round_trip_on_the_fra1_example(tmp_path: Path) -> None:
    """A production shape: six NICs in two bonds across an MLAG pair, reached on bond0."""
    inv = tmp_path / "fra1"
    shutil.copytree(FRA1, inv)
    before = snapshot(inv)
    srv = yaml.safe_load((inv / "host_vars" / "fra1-srv12.yml").read_text())["server"]
    args = ["--mac", *(f"{n['name']}={n['mac']}" for n in srv["nics"])]
    args += ["--switch-port", *(f"{n['name']}={n['switch']}:{n['switch_port']}" for n in srv["nics"])]
    for fam in ("v4", "v6"):
        args += [f"--address-{fam}", *(f"{b['name']}={b[f'address_{fam}']}" for b in srv["bonds"])]
    args += ["--ipmi-address", srv["ipmi"]["address"], "--pdu-outlet", f"{srv['pdu']['pdu']}:{srv['pdu']['outlet']}"]
    args += ["--weight", str(srv["anycast_weight"])]

    assert edit("remove-server", str(inv), "fra1-srv12") == EX_OK
    assert edit("add-server", str(inv), "fra1-srv12", "--like", "fra1-srv11", *args) == EX_OK
    after = snapshot(inv)
    assert validate_inventory(inv).ok
    assert {k for k in before if before[k] != after[k]} <= {"host_vars/fra1-srv12.yml"}
    assert yaml.safe_load(after["host_vars/fra1-srv12.yml"])["server"]["nics"] == srv["nics"]


# --- byte for byte: line endings, byte order mark, final newline, comments and quoting -----------
#
# Each edit runs twice: on a plain copy of the lab, and on a copy "dressed" by a transformation
# that only touches lines no edit changes (or that is applied to every line alike: line endings).
# The dressed result must be exactly the plain result dressed the same way, byte for byte, for
# every file: what the edit changes is what the plain test above pins down, and everything else
# is the file as it was.

ODD: dict[str, list[tuple[str, str]]] = {
    "hosts.yml": [
        (
            "# one machine (see `edgepop lab up`). Same layout as a production PoP, just smaller.\n",
            "# one machine (see `edgepop lab up`). Same layout as a production PoP, just smaller.\n"
            "#\tnote: «ünïcode» ✓ 'single' \"double\"   \n",
        ),
        ("        routers:\n", "        routers:   \n"),
        ("              ansible_host: 203.0.113.2\n", "              ansible_host: '203.0.113.2'   # quoted: yes\n"),
        ("              ansible_host: 203.0.113.13\n", '              ansible_host: "203.0.113.13"\n'),
        ("        control:\n", "\n        # control plane   \n        control:\n"),
    ],
    "srv": [
        ("  cpu: discover\n", "  cpu: 'discover'    # quoted on purpose\n"),
        ('    password: "{{ vault_ipmi_password }}"\n', "    password: '{{ vault_ipmi_password }}'\n"),
        ("  ipmi:\n", "   \n  ipmi:\n"),
        ("  services: [http, dns]\n", "  services: [http, dns]   \n"),
    ],
    "host_vars/sw1.yml": [
        ("  platform: bird\n", "  platform: 'bird'   # single-quoted\n"),
        ('    - {name: swp3, peer: "srv2:ext0"}\n', "    - {name: swp3, peer: 'srv2:ext0'}  # srv2 \n"),
        ("  uplinks:\n", "  # uplinks:\t'rtr1'\n  uplinks:\n"),
    ],
}


def odd(rel: str, text: str) -> str:
    key = "srv" if re.fullmatch(r"host_vars/srv\d+\.yml", rel) else rel
    for old, new in ODD.get(key, []):
        if old in text:
            text = text.replace(old, new, 1)
    return text


def crlf(rel: str, text: str) -> str:
    return text.replace("\n", "\r\n")


def bom_no_eol(rel: str, text: str) -> str:
    return "\ufeff" + text.removesuffix("\n")


DRESSES = {
    "crlf": [crlf],
    "bom-no-final-newline": [bom_no_eol],
    "odd-comments-and-quoting": [odd],
    "all-at-once": [odd, crlf, bom_no_eol],
}


def dressed(rel: str, data: bytes, steps: list[Any]) -> bytes:
    if not rel.endswith(".yml"):
        return data
    text = data.decode()
    for step in steps:
        text = step(rel, text)
    return text.encode()


def dress(root: Path, steps: list[Any]) -> None:
    for rel, data in snapshot(root).items():
        (root / rel).write_bytes(dressed(rel, data, steps))


ADOPT_ARGS = [a for a in NEW_SERVER if not a.startswith(("--mac", "mgmt0=02", "ext0=02", "int0=02"))]
EDITS = {
    "set-weight": ["set-weight", "{inv}", "srv2", "250"],
    "add-server": ["add-server", "{inv}", "srv5", "--like", "srv4", *NEW_SERVER],
    "adopt": ["adopt", "{inv}", "--mac", "02:00:00:00:05:0a", "02:00:00:00:05:0b", "02:00:00:00:05:0c",
              "--as", "srv5", *ADOPT_ARGS],
    "remove-server-last": ["remove-server", "{inv}", "srv4"],
    "remove-server-first": ["remove-server", "{inv}", "srv1"],
}  # fmt: skip


@pytest.mark.parametrize("dress_name", list(DRESSES))
@pytest.mark.parametrize("edit_name", list(EDITS))
def test_edits_keep_every_other_byte(tmp_path: Path, edit_name: str, dress_name: str) -> None:
    steps = DRESSES[dress_name]
    plain, fancy = tmp_path / "plain", tmp_path / "fancy"
    shutil.copytree(LAB, plain)
    shutil.copytree(LAB, fancy)
    dress(fancy, steps)
    plain_before, fancy_before = snapshot(plain), snapshot(fancy)
    assert fancy_before != plain_before  # the dressing did something
    if dress_name == "odd-comments-and-quoting":
        for key, replacements in ODD.items():
            rel = "host_vars/srv4.yml" if key == "srv" else key
            for _, new in replacements:  # every anchor was found: the dressed lines are really there
                assert new.encode() in fancy_before[rel], (rel, new)

    assert edit(*[a.format(inv=plain) for a in EDITS[edit_name]]) == EX_OK
    assert edit(*[a.format(inv=fancy) for a in EDITS[edit_name]]) == EX_OK
    plain_after, fancy_after = snapshot(plain), snapshot(fancy)
    assert plain_after != plain_before

    expected = {rel: dressed(rel, data, steps) for rel, data in plain_after.items()}
    assert set(fancy_after) == set(expected)
    for rel in sorted(expected):
        assert fancy_after[rel] == expected[rel], "\n".join(
            difflib.unified_diff(
                expected[rel].decode().splitlines(keepends=True),
                fancy_after[rel].decode().splitlines(keepends=True),
                f"expected/{rel}",
                f"written/{rel}",
            )
        )


def test_crlf_file_stays_crlf_on_the_changed_line(lab_copy: Path) -> None:
    path = lab_copy / "host_vars" / "srv2.yml"
    before = path.read_bytes().replace(b"\n", b"\r\n")
    path.write_bytes(before)
    assert edit("set-weight", str(lab_copy), "srv2", "250") == EX_OK
    after = path.read_bytes()
    assert after == before.replace(b"  anycast_weight: 200\r\n", b"  anycast_weight: 250\r\n")
    assert b"\n" not in after.replace(b"\r\n", b"")


def test_mixed_line_endings_are_kept_line_by_line(lab_copy: Path) -> None:
    """A file half CRLF (say, edited on two machines): untouched lines keep their own ending, the
    changed line takes the file's usual one."""
    path = lab_copy / "host_vars" / "srv2.yml"
    lines = path.read_bytes().splitlines(keepends=True)
    mixed = [line.replace(b"\n", b"\r\n") if i % 3 else line for i, line in enumerate(lines)]
    path.write_bytes(b"".join(mixed))
    at = next(i for i, line in enumerate(lines) if line.startswith(b"  anycast_weight:"))
    assert edit("set-weight", str(lab_copy), "srv2", "250") == EX_OK
    after = path.read_bytes().splitlines(keepends=True)
    assert after[:at] + after[at + 1 :] == mixed[:at] + mixed[at + 1 :]
    assert after[at] == b"  anycast_weight: 250\r\n"  # two lines in three are CRLF


def test_file_mode_is_kept(lab_copy: Path) -> None:
    path = lab_copy / "host_vars" / "srv2.yml"
    path.chmod(0o600)
    (lab_copy / "hosts.yml").chmod(0o640)
    assert edit("set-weight", str(lab_copy), "srv2", "250") == EX_OK
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER) == EX_OK
    assert path.stat().st_mode & 0o7777 == 0o600
    assert (lab_copy / "hosts.yml").stat().st_mode & 0o7777 == 0o640
    assert "anycast_weight: 250" in path.read_text()


# --- numbers and MACs on the command line --------------------------------------------------------

NOT_DIGITS = ["\uff11\uff12\uff13", "\u0663", "1_000", " 12 ", "+5", "-5", "12\n", "\u00b2", "0x10", "1e3", ""]


def usage_error(*args: str) -> int:
    try:
        return edit(*args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


@pytest.mark.parametrize("value", NOT_DIGITS)
def test_numbers_are_ascii_digits_only(lab_copy: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    before = snapshot(lab_copy)
    assert usage_error("set-weight", str(lab_copy), "srv2", value) == EX_USAGE
    assert f"argument weight: expected a whole number in digits 0-9, got {value!r}" in capsys.readouterr().err
    add = ["add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER]
    assert usage_error(*add, f"--weight={value}") == EX_USAGE
    assert f"argument --weight: expected a whole number in digits 0-9, got {value!r}" in capsys.readouterr().err
    outlet = [*add[: add.index("--pdu-outlet")], f"--pdu-outlet=pdu1:{value}"]
    assert usage_error(*outlet) == EX_USAGE
    shown = repr(f"pdu1:{value}")
    assert f"argument --pdu-outlet: expected [PDU:]OUTLET, the outlet in digits 0-9, got {shown}" in (
        capsys.readouterr().err
    )
    assert snapshot(lab_copy) == before


def test_plain_digits_still_work(lab_copy: Path) -> None:
    assert edit("set-weight", str(lab_copy), "srv2", "0250") == EX_OK
    assert "  anycast_weight: 250\n" in (lab_copy / "host_vars" / "srv2.yml").read_text()


BAD_MACS = [
    ("ff:ff:ff:ff:ff:ff", "ff:ff:ff:ff:ff:ff is the broadcast MAC, not a NIC's address"),
    ("01-00-5E-00-00-01", "01:00:5e:00:00:01 is a multicast MAC (the first octet is odd), not a NIC's address"),
    ("000000000000", "00:00:00:00:00:00 is the all-zero MAC, not a NIC's address"),
    ("02:00:00:00:05:00:00", "'02:00:00:00:05:00:00' is not a MAC address"),
    ("\uff102:00:00:00:05:00", "'\uff102:00:00:00:05:00' is not a MAC address"),
]


@pytest.mark.parametrize(("mac", "message"), BAD_MACS)
def test_mac_arguments_must_be_a_nics_own(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], mac: str, message: str
) -> None:
    before = snapshot(lab_copy)
    macs = ["mgmt0=02:00:00:00:05:00", f"ext0={mac}", "int0=02:00:00:00:05:02"]
    args = [a for a in NEW_SERVER if not a.startswith(("--mac", "mgmt0=02", "ext0=02", "int0=02"))]
    assert usage_error("add-server", str(lab_copy), "srv5", "--like", "srv4", "--mac", *macs, *args) == EX_USAGE
    err = capsys.readouterr().err
    assert f"argument --mac: {message}" in err and "Traceback" not in err
    assert usage_error("adopt", str(lab_copy), "--mac", "02:00:00:00:05:00", mac, "--as", "srv5") == EX_USAGE
    assert f"argument --mac: {message}" in capsys.readouterr().err
    assert snapshot(lab_copy) == before


def test_macs_given_to_the_commands_directly_are_checked(lab_copy: Path) -> None:
    """provisiond and scripts build a ServerSpec without the CLI; its MACs get the same check."""
    from edgepop.inventory_edit.changeset import EditError
    from edgepop.inventory_edit.clone import ServerSpec
    from edgepop.inventory_edit.commands import add_server, adopt

    spec = ServerSpec(macs_in_order=["02:00:00:00:05:00", "01:00:5e:00:00:01", "02:00:00:00:05:02"])
    with pytest.raises(EditError) as caught:
        adopt(lab_copy, "srv5", spec, like="srv4")
    assert str(caught.value) == (
        "cannot adopt srv5:\n  --mac 01:00:5e:00:00:01: 01:00:5e:00:00:01 is a multicast MAC (the first "
        "octet is odd), not a NIC's address"
    )
    spec = ServerSpec(macs={"mgmt0": "00-00-00-00-00-00", "ext0": "02:00:00:00:05:01", "int0": "02:00:00:00:05:02"})
    with pytest.raises(EditError) as caught:
        add_server(lab_copy, "srv5", spec, like="srv4")
    assert "--mac mgmt0=00-00-00-00-00-00: 00:00:00:00:00:00 is the all-zero MAC, not a NIC's address" in str(
        caught.value
    )


def test_a_template_file_with_a_multicast_mac_is_refused(
    lab_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "srv5.yml"
    body.write_text(
        expected_srv5((lab_copy / "host_vars" / "srv4.yml").read_text()).replace(
            "02:00:00:00:05:01", "03:00:00:00:05:01"
        )
    )
    before = snapshot(lab_copy)
    args = ["--ansible-host", "203.0.113.15", "--new-switch-ports"]
    assert edit("add-server", str(lab_copy), "srv5", "--from", str(body), *args) == EX_DATAERR
    err = capsys.readouterr().err
    assert f"{lab_copy}/host_vars/srv5.yml" in err and "03:00:00:00:05:01 is a multicast MAC" in err
    assert snapshot(lab_copy) == before


def write_queue(state: Path, macs: list[str]) -> Path:
    state.mkdir(parents=True, exist_ok=True)
    queue = state / "pending.json"
    entry = {"macs": macs, "first_seen": "2024-01-01T00:00:00Z", "last_seen": "2024-01-01T00:00:00Z", "calls": 1}
    queue.write_text(json.dumps({",".join(sorted(macs)): entry}))
    return queue


def test_pending_queue_macs_are_checked(lab_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue = write_queue(tmp_path / "state", ["02:00:00:00:05:00", "02:00:00:00:05:01", "01:00:5e:00:00:01"])
    queued = queue.read_bytes()
    before = snapshot(lab_copy)
    args = ["adopt", str(lab_copy), "--pending", str(tmp_path / "state"), "--mac", "02:00:00:00:05:01"]
    assert edit(*args, "--as", "srv5", "--like", "srv4") == EX_DATAERR
    err = capsys.readouterr().err
    key = "01:00:5e:00:00:01,02:00:00:00:05:00,02:00:00:00:05:01"
    assert (
        f"edgepop inventory adopt: {queue}: entry {key!r}: macs[2]: 01:00:5e:00:00:01 is a multicast MAC "
        "(the first octet is odd), not a NIC's address"
    ) in err
    assert snapshot(lab_copy) == before and queue.read_bytes() == queued


# --- all files or none ----------------------------------------------------------------------------


def modes(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mode & 0o7777 for p in sorted(root.rglob("*"))}


def no_litter(root: Path) -> None:
    assert not [p.name for p in root.rglob(".*") if p.name.endswith((".tmp", ".bak"))]


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_staging_failure_changes_nothing(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, failing: int
) -> None:
    """The disk fills up while the new files are written: none of them is put in place."""
    (lab_copy / "host_vars" / "sw1.yml").chmod(0o600)
    before, before_modes = snapshot(lab_copy), modes(lab_copy)
    real_fsync = os.fsync
    calls: list[int] = []

    def full_disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) == failing:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER) == EX_IOERR
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "No space left on device; nothing was changed" in err
    assert re.search(r"cannot write (hosts\.yml|host_vars/(srv5|sw1)\.yml): ", err)
    assert snapshot(lab_copy) == before and modes(lab_copy) == before_modes
    no_litter(lab_copy)


def test_permission_denied_on_a_directory_changes_nothing(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """host_vars/ is not writable (root ignores the mode bits, so mkstemp is refused instead)."""
    before = snapshot(lab_copy)
    real_mkstemp = tempfile.mkstemp

    def refuse(*args: Any, **kwargs: Any) -> tuple[int, str]:
        if Path(str(kwargs.get("dir"))).name == "host_vars":
            raise PermissionError(13, "Permission denied", str(kwargs["dir"]))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER) == EX_IOERR
    monkeypatch.undo()
    assert "Permission denied; nothing was changed" in capsys.readouterr().err
    assert snapshot(lab_copy) == before
    no_litter(lab_copy)


def test_failed_deletion_puts_the_changed_files_back(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """remove-server rewrites hosts.yml and sw1.yml, then deletes srv4.yml: that last step fails."""
    (lab_copy / "hosts.yml").chmod(0o640)
    before, before_modes = snapshot(lab_copy), modes(lab_copy)
    inodes = {rel: (lab_copy / rel).stat().st_ino for rel in ("hosts.yml", "host_vars/sw1.yml")}
    real_unlink = Path.unlink

    def refuse(self: Path, missing_ok: bool = False) -> None:
        if self == lab_copy / "host_vars" / "srv4.yml":  # not the scratch copy validated before
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", refuse)
    assert edit("remove-server", str(lab_copy), "srv4") == EX_IOERR
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "cannot write host_vars/srv4.yml: Permission denied; rolled back" in err
    assert snapshot(lab_copy) == before and modes(lab_copy) == before_modes
    # put back by renaming the very files that were there, not by writing their text again
    assert {rel: (lab_copy / rel).stat().st_ino for rel in inodes} == inodes
    no_litter(lab_copy)


def test_a_failed_roll_back_says_where_the_old_content_is(
    lab_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace
    calls: list[str] = []

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(os.fspath(src))
        if len(calls) == 2 or os.fspath(src).endswith(".bak"):
            raise OSError(5, "Input/output error", os.fspath(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    assert edit("remove-server", str(lab_copy), "srv4") == EX_IOERR
    monkeypatch.undo()
    err = capsys.readouterr().err
    found = re.search(r"roll-back failed for (\S+) \(Input/output error, its old content is in (\S+)\)", err)
    assert found, err
    rel, backup = found.groups()
    assert (lab_copy / rel).with_name(backup).read_bytes() == (LAB / rel).read_bytes()


def test_writes_are_atomic_renames_of_synced_files_beside_the_target(
    lab_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", f"{os.fspath(src)} -> {os.fspath(dst)}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    assert edit("add-server", str(lab_copy), "srv5", "--like", "srv4", *NEW_SERVER) == EX_OK
    monkeypatch.undo()
    replaced = [(i, *detail.split(" -> ")) for i, (kind, detail) in enumerate(events) if kind == "replace"]
    assert sorted(Path(dst).relative_to(lab_copy).as_posix() for _, _, dst in replaced) == [
        "host_vars/srv5.yml",
        "host_vars/sw1.yml",
        "hosts.yml",
    ]
    for at, src, dst in replaced:
        assert Path(src).parent == Path(dst).parent and Path(src).name.startswith(f".{Path(dst).name}.")
        assert ("fsync", src) in events[:at]  # the content is on disk before the rename
    synced_dirs = {path for kind, path in events[replaced[-1][0] :] if kind == "fsync"}
    assert {str(lab_copy), str(lab_copy / "host_vars")} <= synced_dirs  # and the renames after it
    no_litter(lab_copy)


def test_a_file_changed_meanwhile_is_not_overwritten(lab_copy: Path) -> None:
    from edgepop.inventory_edit.changeset import EditError
    from edgepop.inventory_edit.commands import set_weight

    plan = set_weight(lab_copy, "srv2", 250)
    changes = plan.changes.changes()
    path = lab_copy / "host_vars" / "srv2.yml"
    theirs = path.read_text() + "# someone else's line\n"
    path.write_text(theirs)
    with pytest.raises(EditError) as caught:
        plan.changes.write(changes)
    assert str(caught.value) == (
        "host_vars/srv2.yml was changed by someone else while this edit ran; nothing was changed, run the edit again"
    )
    assert path.read_text() == theirs
    no_litter(lab_copy)


def test_a_symlinked_file_is_not_edited_through_its_link(
    lab_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A host_vars file linked from elsewhere is usually shared; an edit for one host must not change it."""
    shared = tmp_path / "shared.yml"
    (lab_copy / "host_vars" / "srv2.yml").rename(shared)
    (lab_copy / "host_vars" / "srv2.yml").symlink_to(shared)
    before, shared_before = snapshot(lab_copy), shared.read_bytes()
    assert edit("set-weight", str(lab_copy), "srv2", "250") == EX_DATAERR
    assert (
        f"host_vars/srv2.yml is a symbolic link (to {shared}); edit that file by hand, or replace the link "
        "with a copy of it"
    ) in capsys.readouterr().err
    assert snapshot(lab_copy) == before and shared.read_bytes() == shared_before
    # removing the server removes the link, never the file it points to
    assert edit("remove-server", str(lab_copy), "srv2") == EX_OK
    assert not os.path.lexists(lab_copy / "host_vars" / "srv2.yml") and shared.read_bytes() == shared_before


def test_a_file_that_is_not_utf8_is_named(lab_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = lab_copy / "host_vars" / "srv3.yml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    before = snapshot(lab_copy)
    assert edit("set-weight", str(lab_copy), "srv3", "250") == EX_DATAERR
    err = capsys.readouterr().err
    assert "srv3 has no 'server' variable (a file that would set it cannot be read: " in err
    assert f"{path}: " in err and "not UTF-8" in err and "Traceback" not in err
    assert snapshot(lab_copy) == before
