"""Round-trip YAML: an edit rewrites the lines it changes and leaves every other byte alone."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString

from edgepop.inventory_edit.roundtrip import Layout, TextForm, YamlDoc, guess_layout, scalar_like

LAB = Path(__file__).resolve().parents[2] / "inventory" / "lab"


def changes(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("---", "+++"))
    ]


@pytest.mark.parametrize("path", sorted(LAB.rglob("*.yml")), ids=lambda p: p.relative_to(LAB).as_posix())
def test_every_lab_file_comes_back_byte_identical(path: Path) -> None:
    text = path.read_text()
    assert YamlDoc.parse(text, path.name).render() == text


@pytest.mark.parametrize(
    ("text", "layout"),
    [
        ("a:\n  b:\n    - x: 1\n      y: 2\n", (2, 4, 2)),
        ("a:\n  b:\n  - x: 1\n    y: 2\n", (2, 2, 0)),
        ("a:\n    b:\n        - x: 1\n          y: 2\n", (4, 6, 4)),
        ("a:\n    b:\n    -   x: 1\n        y: 2\n", (4, 4, 0)),
        ("a:\n  b: 1\n", (2, 4, 2)),
    ],
)
def test_layout_is_guessed_from_the_file(text: str, layout: tuple[int, int, int]) -> None:
    found = guess_layout(text)
    assert (found.mapping, found.sequence, found.offset) == layout


def test_block_scalars_do_not_count_as_structure() -> None:
    text = "a:\n  secret: !vault |\n          $ANSIBLE_VAULT;1.1;AES256\n          6162\n  b:\n    - 1\n"
    assert guess_layout(text) == Layout(mapping=2, sequence=4, offset=2, explicit_start=False)


@pytest.mark.parametrize(
    "text",
    [
        "a:\n    b:\n        - x: 1\n    c: 2\n",
        "a:\n  b:\n  - x: 1\n  c: 2\n",
    ],
)
def test_new_nested_entries_follow_the_file_indentation(text: str) -> None:
    doc = YamlDoc.parse(text, "t.yml")
    new = CommentedMap()
    new["k"] = [1, 2]
    doc.data["a"]["d"] = new
    out = doc.render()
    assert out.startswith(text)
    layout = guess_layout(text)
    assert out[len(text) :] == (
        f"{' ' * layout.mapping}d:\n"
        f"{' ' * 2 * layout.mapping}k:\n"
        f"{' ' * (2 * layout.mapping + layout.offset)}- 1\n"
        f"{' ' * (2 * layout.mapping + layout.offset)}- 2\n"
    )


@pytest.mark.parametrize("start", ["", "---\n", "# about this file\n---\n"])
def test_document_start_marker_is_kept_or_left_out(start: str) -> None:
    text = f"{start}a: 1\nb: 2\n"
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["b"] = 3
    assert doc.render() == f"{start}a: 1\nb: 3\n"


def test_long_lines_are_not_rewrapped() -> None:
    long = "word " * 60
    text = f"description: {long.strip()}\nlist: [{', '.join(['203.0.113.1'] * 20)}]\nw: 1\n"
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["w"] = 2
    assert changes(text, doc.render()) == ["-w: 1", "+w: 2"]


def test_quotes_and_comments_survive_an_edit_nearby() -> None:
    text = "a: 'single'   # why a is single\nb: \"double\"\nc: plain\n# closing remark\n"
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["c"] = "changed"
    assert doc.render() == text.replace("c: plain", "c: changed")


def test_padded_flow_mappings_stay_padded_on_changed_lines() -> None:
    text = 'ports:\n  - { name: swp1, peer: "srv1:ext0" }\n  - { name: swp2, peer: "srv1:int0" }\n'
    doc = YamlDoc.parse(text, "t.yml")
    del doc.data["ports"][1]["peer"]
    item = CommentedMap()
    item.fa.set_flow_style()
    item["name"] = "swp3"
    doc.data["ports"].append(item)
    assert changes(text, doc.render()) == [
        '-  - { name: swp2, peer: "srv1:int0" }',
        "+  - { name: swp2 }",
        "+  - { name: swp3 }",
    ]


def test_brackets_inside_quotes_are_not_padded() -> None:
    text = 'a: { b: 1 }\nc: "{{ jinja }}"\nd: 1\n'
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["c"] = DoubleQuotedScalarString("{{ other }}x{y}")
    assert changes(text, doc.render()) == ['-c: "{{ jinja }}"', '+c: "{{ other }}x{y}"']


HOSTS = """\
all:
  children:
    servers:
      hosts:
        srv1:
          ansible_host: 203.0.113.11  # first
        # srv2 is the canary
        srv2:
          ansible_host: 203.0.113.12
        srv4:
          ansible_host: 203.0.113.14

    # control plane
    control:
      hosts:
        ctl1:
"""


@pytest.mark.parametrize(
    ("host", "removed"),
    [
        ("srv4", ["-        srv4:", "-          ansible_host: 203.0.113.14"]),
        ("srv2", ["-        # srv2 is the canary", "-        srv2:", "-          ansible_host: 203.0.113.12"]),
        ("srv1", ["-        srv1:", "-          ansible_host: 203.0.113.11  # first"]),
    ],
)
def test_deleting_an_entry_keeps_the_comments_of_its_neighbours(host: str, removed: list[str]) -> None:
    doc = YamlDoc.parse(HOSTS, "hosts.yml")
    del doc.data["all"]["children"]["servers"]["hosts"][host]
    assert changes(HOSTS, doc.render()) == removed


@pytest.mark.parametrize(("position", "after"), [(3, "          ansible_host: 203.0.113.14\n"), (2, "203.0.113.12\n")])
def test_new_entries_go_above_the_comment_of_what_follows(position: int, after: str) -> None:
    doc = YamlDoc.parse(HOSTS, "hosts.yml")
    entry = CommentedMap()
    entry["ansible_host"] = "203.0.113.15"
    doc.data["all"]["children"]["servers"]["hosts"].insert(position, "srv5", entry)
    out = doc.render()
    added = "        srv5:\n          ansible_host: 203.0.113.15\n"
    assert out == HOSTS.replace(after, after + added, 1)


def test_scalar_like_keeps_the_quoting_and_guards_yaml_1_1() -> None:
    assert isinstance(scalar_like(SingleQuotedScalarString("a"), "b"), SingleQuotedScalarString)
    assert isinstance(scalar_like(DoubleQuotedScalarString("02:00:00:00:01:01"), "x"), DoubleQuotedScalarString)
    # written plain, 12:34:56:00:01:01 is a base-60 number to YAML 1.1 readers (Ansible, the validator)
    assert isinstance(scalar_like("02:00:00:00:01:01", "12:34:56:00:01:01"), DoubleQuotedScalarString)
    assert type(scalar_like("swp1", "swp2")) is str
    assert scalar_like(100, 250) == 250


# --- how the file is encoded around the YAML ----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the edited line is the last one, and has no newline: it still has none
        ("a: 1\nb: 2", "a: 1\nb: 3"),
        ("a: 1\r\nb: 2", "a: 1\r\nb: 3"),
        # CRLF everywhere, the changed line included
        ("---\r\n# c\r\na: 1\r\nb: 2\r\n", "---\r\n# c\r\na: 1\r\nb: 3\r\n"),
        # old Mac line endings
        ("a: 1\rb: 2\r", "a: 1\rb: 3\r"),
        # the byte order mark stays in front
        ("\ufeff---\na: 1\nb: 2\n", "\ufeff---\na: 1\nb: 3\n"),
        ("\ufeffa: 1\r\nb: 2", "\ufeffa: 1\r\nb: 3"),
        # trailing blanks on the changed line and elsewhere
        ("a: 1  \nb: 2   \n\n  \n", "a: 1  \nb: 3   \n\n  \n"),
        ("a: 1\nb: 2   # why\n", "a: 1\nb: 3   # why\n"),
    ],
    ids=["no-eol", "no-eol-crlf", "crlf", "cr", "bom", "bom-crlf-no-eol", "trailing-blanks", "comment"],
)
def test_changed_line_takes_the_file_form(text: str, expected: str) -> None:
    doc = YamlDoc.parse(text, "t.yml")
    assert doc.render() == text
    doc.data["b"] = 3
    assert doc.render() == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\nb: 2", "a: 1\nb: 2\nc: 3"),
        ("a: 1\r\nb: 2\r\n", "a: 1\r\nb: 2\r\nc: 3\r\n"),
        ("\ufeffa: 1\r\nb: 2", "\ufeffa: 1\r\nb: 2\r\nc: 3"),
    ],
)
def test_a_line_added_after_the_last_one(text: str, expected: str) -> None:
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["c"] = 3
    assert doc.render() == expected


def test_deleting_the_last_line_of_a_file_without_final_newline() -> None:
    doc = YamlDoc.parse("a: 1\r\nb: 2\r\nc: 3", "t.yml")
    del doc.data["c"]
    assert doc.render() == "a: 1\r\nb: 2"


def test_mixed_endings_stay_per_line_and_new_lines_take_the_usual_one() -> None:
    text = "a: 1\r\nb: 2\nc: 3\r\nd: 4\r\n"
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["c"] = 30
    doc.data["e"] = 5
    assert doc.render() == "a: 1\r\nb: 2\nc: 30\r\nd: 4\r\ne: 5\r\n"


def test_unicode_line_separators_inside_values_are_not_line_breaks() -> None:
    """str.splitlines() breaks on U+2028 and U+0085; YAML 1.2 text in quotes does not."""
    text = 'a: "x\u2028y\x85z"  # keep\nb: 2\n'
    doc = YamlDoc.parse(text, "t.yml")
    doc.data["b"] = 3
    assert doc.render() == text.replace("b: 2", "b: 3")


def test_a_clone_keeps_the_form_of_its_source() -> None:
    text = "\ufeff---\r\nserver:\r\n  rack: r1\r\n  anycast_weight: 200"
    doc = YamlDoc.parse(text, "srv4.yml").clone("srv5.yml")
    doc.data["server"]["anycast_weight"] = 300
    assert doc.render() == text.replace("200", "300")


def test_a_document_built_from_scratch_takes_the_form_it_is_given() -> None:
    data = CommentedMap()
    data["a"] = 1
    assert YamlDoc("n.yml", data, Layout(), form=TextForm(newline="\r\n")).render() == "---\r\na: 1\r\n"
