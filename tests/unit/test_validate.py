"""The validator on the lab inventory: valid input passes unchanged, fast; the report is usable.

Every error message is pinned by the bad-inventory corpus (test_validate_corpus.py); this module
checks what the corpus cannot: valid variations, the model it returns, timing and the real CLI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pydantic
import pytest
from ruamel.yaml import YAML

from edgepop.model.schema import DnsCheck, HttpCheck
from edgepop.validate import InventoryInvalid, Issue, load_valid, validate_inventory

LAB_INVENTORY = Path(__file__).resolve().parents[2] / "inventory" / "lab"


def edit(root: Path, file: str, keys: list[str | int], value: object) -> None:
    yaml = YAML(typ="rt")
    path = root / file
    data = yaml.load(path.read_text(encoding="utf-8"))
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)


def test_lab_is_valid_and_yields_the_model() -> None:
    report = validate_inventory(LAB_INVENTORY)
    assert report.errors == []
    assert report.model is not None
    assert report.model.hostnames == ["ctl1", "rtr1", "srv1", "srv2", "srv3", "srv4", "sw1"]
    assert report.model.ansible_hosts["srv1"] == "203.0.113.11"
    assert [s.name for s in report.model.services] == ["http", "dns"]


def test_lab_validates_in_under_a_second() -> None:
    validate_inventory(LAB_INVENTORY)  # imports and pydantic schema building are not the claim
    started = time.perf_counter()
    validate_inventory(LAB_INVENTORY)
    assert time.perf_counter() - started < 1.0


def test_whole_numbers_are_accepted_where_floats_are_expected(lab_copy: Path) -> None:
    """strict=True must not reject `interval_s: 1`: YAML writes whole numbers as ints."""
    edit(lab_copy, "group_vars/all/services.yml", ["anycast_services", 0, "check", "interval_s"], 2)
    edit(lab_copy, "group_vars/all/services.yml", ["anycast_services", 0, "check", "timeout_s"], 1)
    model = load_valid(lab_copy)
    check = model.service("http").check
    assert isinstance(check, HttpCheck)
    assert (check.interval_s, check.timeout_s) == (2.0, 1.0)
    assert isinstance(check.interval_s, float)


def test_yaml_11_booleans_and_defaults_are_accepted(lab_copy: Path) -> None:
    text = (lab_copy / "host_vars/rtr1.yml").read_text(encoding="utf-8")
    (lab_copy / "host_vars/rtr1.yml").write_text(text.replace("lan: true", "lan: yes"), encoding="utf-8")
    model = load_valid(lab_copy)
    assert [i.lan for i in model.routers["rtr1"].interfaces] == [True, False, False]
    dns = model.service("dns").check
    assert isinstance(dns, DnsCheck)
    assert (dns.port, dns.qtype) == (53, "A")


def test_the_model_is_frozen() -> None:
    model = load_valid(LAB_INVENTORY)
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        model.pop.asn = 64497  # type: ignore[misc]


def test_load_valid_raises_with_every_message(lab_copy: Path) -> None:
    edit(lab_copy, "host_vars/srv2.yml", ["server", "anycast_weight"], 0)
    edit(lab_copy, "host_vars/srv3.yml", ["server", "anycast_weight"], 0)
    with pytest.raises(InventoryInvalid) as exc:
        load_valid(lab_copy)
    assert len(exc.value.report.errors) == 2
    assert str(exc.value) == exc.value.report.format()


def test_issue_render_puts_the_inventory_path_in_front() -> None:
    issue = Issue("host_vars/srv1.yml", 7, "server.nics[1].mac", "duplicate MAC")
    assert issue.render() == "host_vars/srv1.yml:7: server.nics[1].mac: duplicate MAC"
    assert issue.render("inventory/lab/") == "inventory/lab/host_vars/srv1.yml:7: server.nics[1].mac: duplicate MAC"
    assert Issue("hosts.yml", 0, "", "no line").render("inv") == "inv/hosts.yml: no line"
    assert Issue(".", 0, "", "at the root").render("inv") == "inv: at the root"


def test_cli_entry_point_exits_65_and_prints_to_stderr(lab_copy: Path) -> None:
    edit(lab_copy, "host_vars/srv2.yml", ["server", "nics", 1, "mac"], "02:00:00:00:01:01")
    exe = Path(sys.executable).with_name("edgepop")
    bad = subprocess.run([str(exe), "validate", str(lab_copy)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 65
    assert bad.stdout == ""
    assert bad.stderr.splitlines() == [
        f"{lab_copy}/host_vars/srv2.yml:8: server.nics[1].mac: duplicate MAC 02:00:00:00:01:01: already on srv1:ext0",
        f"{lab_copy}: invalid, 1 error",
    ]
    good = subprocess.run([str(exe), "validate", str(LAB_INVENTORY)], capture_output=True, text=True, timeout=60)
    assert (good.returncode, good.stderr) == (0, "")
    assert good.stdout.startswith(f"{LAB_INVENTORY}: valid (7 devices, ")


# --- valid variations the stricter rules must keep accepting ---------------------------------------


def test_slash_31_and_32_addresses_are_hosts_at_both_ends(lab_copy: Path) -> None:
    """RFC 3021: a /31 has no network or broadcast address, so .80/31 and .81 are both usable."""
    edit(lab_copy, "host_vars/rtr1.yml", ["router", "interfaces", 1, "address_v4"], "203.0.113.81/31")
    edit(lab_copy, "group_vars/all/providers.yml", ["providers", 0, "address_v4"], "203.0.113.80")
    model = load_valid(lab_copy)
    assert model.providers[0].address_v4 == "203.0.113.80"


def test_ansible_host_may_be_a_host_name(lab_copy: Path) -> None:
    edit(
        lab_copy,
        "hosts.yml",
        ["all", "children", "lab1", "children", "servers", "hosts", "srv1", "ansible_host"],
        "srv1.lab1.example",
    )
    assert load_valid(lab_copy).ansible_hosts["srv1"] == "srv1.lab1.example"


def test_ansible_host_may_be_a_port_forward_on_the_controller(lab_copy: Path) -> None:
    """127.0.0.1 / ::1 is a tunnel or qemu hostfwd to the box, never one of its addresses; any other
    address that is not the box's own is still refused."""
    hosts = ["all", "children", "lab1", "children", "servers", "hosts", "srv1", "ansible_host"]
    for forward in ("127.0.0.1", "::1"):
        edit(lab_copy, "hosts.yml", hosts, forward)
        assert load_valid(lab_copy).ansible_hosts["srv1"] == forward
    edit(lab_copy, "hosts.yml", hosts, "198.51.100.200")
    (line,) = validate_inventory(lab_copy).format().splitlines()
    assert line.startswith(
        "hosts.yml:19: all.children.lab1.children.servers.hosts.srv1.ansible_host: 198.51.100.200 is"
    )


def test_ansible_host_may_be_a_boot_time_management_address(lab_copy: Path) -> None:
    """A management NIC with no address in the inventory gets one at boot: a free address of
    management_v4 may be its ansible_host, one outside the range or taken by another box may not."""
    hosts = ["all", "children", "lab1", "children", "servers", "hosts", "srv1", "ansible_host"]
    yaml = YAML(typ="rt")
    path = lab_copy / "host_vars/srv1.yml"
    data = yaml.load(path.read_text(encoding="utf-8"))
    del data["server"]["nics"][0]["address_v4"]
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out)
    edit(lab_copy, "hosts.yml", hosts, "203.0.113.50")
    assert load_valid(lab_copy).ansible_hosts["srv1"] == "203.0.113.50"

    edit(lab_copy, "hosts.yml", hosts, "198.51.100.99")
    assert validate_inventory(lab_copy).format().splitlines() == [
        "hosts.yml:19: all.children.lab1.children.servers.hosts.srv1.ansible_host: 198.51.100.99 is not an address "
        "of srv1: its management NIC gets its address at boot, so expected one in management_v4 203.0.113.0/26"
    ]
    edit(lab_copy, "hosts.yml", hosts, "203.0.113.40")
    assert validate_inventory(lab_copy).format().splitlines() == [
        "hosts.yml:19: all.children.lab1.children.servers.hosts.srv1.ansible_host: 203.0.113.40 is not an address "
        "of srv1: it is PDU pdu1's address (pop.pdus[0].address)"
    ]


def test_a_vault_variable_in_the_group_vars_of_its_users_is_visible(lab_copy: Path) -> None:
    """group_vars/servers is seen by every server: a server secret may live there, not in all."""
    vault = (lab_copy / "group_vars/all/vault.yml").read_text(encoding="utf-8")
    block = vault[vault.index("vault_ipmi_password:") : vault.index("vault_pdu_community:")]
    (lab_copy / "group_vars/all/vault.yml").write_text(vault.replace(block, ""), encoding="utf-8")
    (lab_copy / "group_vars/servers.yml").write_text("---\n" + block, encoding="utf-8")
    model = load_valid(lab_copy)
    ipmi = model.servers["srv1"].ipmi
    assert ipmi is not None and ipmi.password == "{{ vault_ipmi_password }}"


def test_every_ethernet_speed_is_accepted(lab_copy: Path) -> None:
    for speed in (10, 100, 2500, 5000, 25000, 40000, 50000, 100000, 200000, 400000, 800000):
        edit(lab_copy, "host_vars/srv2.yml", ["server", "nics", 1, "speed"], speed)
        edit(lab_copy, "host_vars/sw1.yml", ["switch", "ports", 2, "speed"], speed)
        assert load_valid(lab_copy).servers["srv2"].nics[1].speed == speed
