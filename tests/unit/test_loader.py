"""The inventory loader: Ansible's variable precedence, vault values, and errors that keep their line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edgepop.model.loader import YamlProblem, load_inventory, load_yaml_text
from edgepop.model.secrets import VaultText

CIPHERTEXT = "$ANSIBLE_VAULT;1.1;AES256\n6331623962\n"


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


HOSTS = """\
    all:
      vars: {level: all-inline}
      children:
        servers:
          vars: {level: group-inline}
          children:
            servers_rack1:
              hosts:
                srv1: {level: host-inline}
    """


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "host-inline"),
        ({"host_vars/srv1.yml": "level: host_vars\n"}, "host_vars"),
        ({"group_vars/all.yml": "level: all\n", "group_vars/servers.yml": "level: servers\n"}, "host-inline"),
    ],
    ids=["inline-host-beats-groups", "host-vars-beat-inline", "group-vars-files-below-host"],
)
def test_host_level_precedence(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    inv = load_inventory(write(tmp_path, {"hosts.yml": HOSTS, **files}))
    assert not inv.errors
    assert inv.effective_vars("srv1")["level"].value == expected


def test_group_precedence_child_over_parent_over_all(tmp_path: Path) -> None:
    hosts = HOSTS.replace("srv1: {level: host-inline}", "srv1:")
    write(tmp_path, {"hosts.yml": hosts})
    assert load_inventory(tmp_path).effective_vars("srv1")["level"].value == "group-inline"

    write(tmp_path, {"group_vars/servers.yml": "level: servers-file\n"})
    assert load_inventory(tmp_path).effective_vars("srv1")["level"].value == "servers-file"

    write(tmp_path, {"group_vars/servers_rack1.yml": "level: rack-file\n"})
    found = load_inventory(tmp_path).effective_vars("srv1")["level"]
    assert (found.value, found.source) == ("rack-file", tmp_path / "group_vars/servers_rack1.yml")


def test_group_vars_file_beats_inline_vars_of_the_same_group(tmp_path: Path) -> None:
    write(tmp_path, {"hosts.yml": HOSTS.replace("srv1: {level: host-inline}", "srv1:")})
    write(tmp_path, {"group_vars/all/a.yml": "level: all-file\n"})
    inv = load_inventory(tmp_path)
    assert inv.group_vars["all"]["level"].value == "all-file"
    assert inv.effective_vars("srv1")["level"].value == "group-inline"  # a child group still wins


def test_sibling_group_beats_all_whatever_the_listing_order(tmp_path: Path) -> None:
    """A host in two groups: both outrank `all`; at equal depth the later group name wins."""
    write(
        tmp_path,
        {
            "hosts.yml": """\
                all:
                  vars: {a: all, b: all}
                  children:
                    zeta: {hosts: {srv1: }, vars: {a: zeta}}
                    alpha: {hosts: {srv1: }, vars: {b: alpha, a: alpha}}
                """,
        },
    )
    effective = load_inventory(tmp_path).effective_vars("srv1")
    assert effective["a"].value == "zeta"
    assert effective["b"].value == "alpha"


def test_variables_replace_whole_never_merge(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts:\n    srv1:\n",
            "group_vars/all.yml": "server: {cpu: discover, rack: r1}\n",
            "host_vars/srv1.yml": "server: {cpu: discover}\n",
        },
    )
    assert load_inventory(tmp_path).effective_vars("srv1")["server"].value == {"cpu": "discover"}


def test_inline_vars_remember_where_they_sit_in_hosts_yml(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, {"hosts.yml": HOSTS}))
    host = inv.hosts["srv1"]
    assert host.inline_vars["level"].keys == (
        "all",
        "children",
        "servers",
        "children",
        "servers_rack1",
        "hosts",
        "srv1",
    )
    assert inv.group_vars["servers"]["level"].keys == ("all", "children", "servers", "vars")
    assert host.entries == [("all", "children", "servers", "children", "servers_rack1", "hosts", "srv1")]
    assert inv.ancestry("servers_rack1") == ["servers_rack1", "servers", "all"]
    assert [inv.depth(g) for g in ("all", "servers", "servers_rack1")] == [0, 1, 2]


def test_inline_vault_value_is_kept_as_ciphertext() -> None:
    data = load_yaml_text("secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6331623962\nplain: text\n")
    assert isinstance(data["secret"], VaultText)
    assert data["secret"] == CIPHERTEXT
    assert not isinstance(data["plain"], VaultText)


def test_unsafe_tag_keeps_the_value() -> None:
    assert load_yaml_text("a: !unsafe '{{ not_a_template }}'\nb: !unsafe [1, 2]\n") == {
        "a": "{{ not_a_template }}",
        "b": [1, 2],
    }


def test_whole_file_vault_is_recorded_not_parsed(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts:\n    srv1:\n",
            "group_vars/all/vars.yml": "ntp: pool\n",
            "group_vars/all/vault.yml": CIPHERTEXT,
        },
    )
    inv = load_inventory(tmp_path)
    assert not inv.errors
    assert inv.encrypted_files == [tmp_path / "group_vars/all/vault.yml"]
    assert set(inv.group_vars["all"]) == {"ntp"}


def test_group_vars_directory_is_read_in_sorted_order_and_a_repeat_is_an_error(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts:\n    srv1:\n",
            "group_vars/all/b.yml": "x: from-b\n",
            "group_vars/all/a.yml": "x: from-a\ny: 1\n",
            "group_vars/all/sub/c.yaml": "z: 3\n",
        },
    )
    inv = load_inventory(tmp_path)
    assert inv.group_vars["all"]["x"].value == "from-a"
    assert set(inv.group_vars["all"]) == {"x", "y", "z"}
    [error] = inv.errors
    assert (error.file, error.path) == (tmp_path / "group_vars/all/b.yml", "x")
    assert error.message == "variable 'x' is already defined in group_vars/all/a.yml"


def test_duplicate_key_names_both_lines() -> None:
    with pytest.raises(YamlProblem) as exc:
        load_yaml_text("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert exc.value.line == 4
    assert exc.value.message == "duplicate key 'c' (first at line 3); YAML would silently keep only the last"


def test_syntax_error_names_where_the_unclosed_bracket_starts() -> None:
    with pytest.raises(YamlProblem) as exc:
        load_yaml_text("a: 1\nb: [1, 2\nc: 3\n")
    assert exc.value.line == 3
    assert exc.value.message == (
        "YAML syntax error, column 2: did not find expected ',' or ']'"
        " (while parsing a flow sequence that starts at line 2)"
    )


def test_bad_files_are_collected_not_raised(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts:\n    srv1:\n    srv2:\n",
            "host_vars/srv1.yml": "- a list\n",
            "host_vars/srv2.yml": "a: [\n",
            "host_vars/srv3.yml": "a: 1\n",
            "group_vars/web.yml": "a: 1\n",
        },
    )
    inv = load_inventory(tmp_path)
    assert inv.hosts_read
    got = sorted((str(e.file.relative_to(tmp_path)), e.line, e.message) for e in inv.errors)
    assert got == [
        ("group_vars/web.yml", None, "group_vars for 'web', which is not a group in hosts.yml"),
        ("host_vars/srv1.yml", 1, "expected a mapping of variables, got list"),
        ("host_vars/srv2.yml", 2, "YAML syntax error, column 1: did not find expected node content"),
        ("host_vars/srv3.yml", None, "host_vars for 'srv3', which is not a host in hosts.yml"),
    ]
    assert sorted(inv.unreadable_files) == [tmp_path / "host_vars/srv1.yml", tmp_path / "host_vars/srv2.yml"]


def test_unreadable_hosts_yml_still_reads_the_pop_wide_variables(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "hosts.yml": "all:\n  hosts: [\n",
            "group_vars/all/pop.yml": "pop: {name: lab1}\n",
            "host_vars/srv1.yml": "server: {}\n",
        },
    )
    inv = load_inventory(tmp_path)
    assert not inv.hosts_read
    assert inv.group_vars["all"]["pop"].value == {"name": "lab1"}
    assert [e.file.name for e in inv.errors] == ["hosts.yml"]  # nothing about srv1: hosts are unknown


def test_missing_directory_and_hosts_file(tmp_path: Path) -> None:
    assert [e.message for e in load_inventory(tmp_path / "nope").errors] == ["inventory directory does not exist"]
    assert [e.message for e in load_inventory(tmp_path).errors] == ["missing hosts.yml (the Ansible host list)"]
