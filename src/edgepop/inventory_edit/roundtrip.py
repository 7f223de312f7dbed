"""Round-trip YAML for operator edits: change the data, keep everything a person wrote.

ruamel.yaml's round-trip mode keeps comments, key order, quoting and flow style, and this module
configures it per file (indentation guessed from the text, `---` kept when present, no re-wrapping
of long lines). A few layout details it still normalises, the spacing inside flow mappings above
all (`{ a: 1 }` comes back as `{a: 1}`). So the text written back is not ruamel's dump as such:
the lines an edit changes are worked out by comparing the dump before the edit with the dump after
it, and only those lines are replaced in the original text. Lines the edit did not touch stay
byte-identical, whichever formatter last went over the file. The patched text is parsed again and
must give the same data as ruamel's dump, otherwise the plain dump is used.

The YAML layer only ever sees LF text. How the file is encoded around that (a UTF-8 byte order
mark, CRLF or LF line endings, whether the last line ends with a newline) is its TextForm: taken
from the file when it is read and put back when it is written. Lines the edit did not touch are
copied from the file as they were, line ending and all; new and changed lines take the file's
usual line ending.
"""

from __future__ import annotations

import difflib
import io
import itertools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString

from edgepop.model.loader import YamlProblem, load_yaml_text

WIDTH = 4096  # wide enough that ruamel never folds a long line of its own accord
_BLOCK_SCALAR_RE = re.compile(r"(^|[:\s-])[|>][0-9+-]*\s*(#.*)?$")


class RoundTripError(Exception):
    """A file that cannot be edited as YAML (syntax error, several documents ...)."""


BOM = "\ufeff"
_LINE = re.compile(r"[^\r\n]*(\r\n|\r|\n)|[^\r\n]+$")


def _lines(text: str) -> list[str]:
    """Lines with their endings, split on LF only.

    str.splitlines() also splits on \\x85, \\u2028, \\x0c and others, which may sit inside a
    quoted value; ruamel's dump and the LF text fed to it only ever break lines with LF."""
    out = [line + "\n" for line in text.split("\n")]
    last = out.pop()  # what follows the last LF (the whole text when there is none)
    if last != "\n":
        out.append(last[:-1])
    return out


@dataclass(frozen=True)
class TextForm:
    """How a file is encoded around its YAML: byte order mark, line ending, final newline."""

    bom: bool = False
    newline: str = "\n"
    final_newline: bool = True

    def apply(self, lf_text: str) -> str:
        """LF text (as ruamel writes it) in this form."""
        text = lf_text.replace("\n", self.newline) if self.newline != "\n" else lf_text
        if not self.final_newline and text.endswith(self.newline):
            text = text[: -len(self.newline)]
        return BOM + text if self.bom else text


@dataclass(frozen=True)
class _Source:
    """A file's text split for editing: LF lines for the YAML layer, the raw lines to copy back."""

    form: TextForm
    lf_lines: list[str]  # every line ending in exactly one LF
    raw_lines: list[str]  # the same lines as in the file (the last one maybe without an ending)

    @classmethod
    def of(cls, text: str) -> _Source:
        bom = text.startswith(BOM)
        body = text[len(BOM) :] if bom else text
        raw = [m.group(0) for m in _LINE.finditer(body)]
        endings = Counter(m.group(1) for m in _LINE.finditer(body) if m.group(1))
        # the most frequent line ending; a tie goes to the ending the file starts with
        first = next((m.group(1) for m in _LINE.finditer(body) if m.group(1)), "\n")
        newline = max(endings, key=lambda e: (endings[e], e == first)) if endings else "\n"
        lf = [line.rstrip("\r\n") + "\n" for line in raw]
        form = TextForm(bom=bom, newline=newline, final_newline=not raw or raw[-1] != raw[-1].rstrip("\r\n"))
        return cls(form, lf, raw)

    @property
    def lf_text(self) -> str:
        return "".join(self.lf_lines)


@dataclass(frozen=True)
class Layout:
    """How one file is laid out; new and changed lines follow it."""

    mapping: int = 2
    sequence: int = 4
    offset: int = 2
    explicit_start: bool = True
    pad_flow_map: bool = False  # `{ a: 1 }` rather than `{a: 1}`
    pad_flow_seq: bool = False  # `[ a, b ]` rather than `[a, b]`


def _content(line: str) -> tuple[int, str]:
    """Column where the line's node starts (after any `- ` indicators) and the rest of the line."""
    col = len(line) - len(line.lstrip(" "))
    rest = line[col:]
    while rest.startswith("- ") or rest == "-":
        step = len(rest) - len(rest[1:].lstrip(" "))
        col += step
        rest = rest[step:]
    return col, rest


def _opens_block(rest: str) -> bool:
    """True for `key:` (or `key: &anchor`) with at most a comment after it: the value is below."""
    body = re.sub(r"\s+#.*$", "", rest).rstrip()
    return bool(re.search(r":(\s+&\S+)?$", body))


def guess_layout(text: str) -> Layout:
    """Indentation and flow spacing of an existing file, by majority of what it does."""
    maps: Counter[int] = Counter()
    seqs: Counter[tuple[int, int]] = Counter()
    lines: list[str] = []
    scalar_indent: int | None = None
    for raw in text.split("\n"):
        if not raw.strip() or raw.lstrip().startswith("#") or raw.startswith(("---", "...", "%")):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if scalar_indent is not None:
            if indent > scalar_indent:
                continue  # inside a block scalar (`|`, `>`): text, not structure
            scalar_indent = None
        if _BLOCK_SCALAR_RE.search(raw.rstrip()):
            scalar_indent = indent
        lines.append(raw)
    for line, nxt in itertools.pairwise(lines):
        col, rest = _content(line)
        if not _opens_block(rest):
            continue
        nindent = len(nxt) - len(nxt.lstrip(" "))
        item = nxt[nindent:]
        if item.startswith("- "):
            item_col = nindent + 1 + len(item[1:]) - len(item[1:].lstrip(" "))
            if nindent >= col:
                seqs[(item_col - col, nindent - col)] += 1
        elif nindent > col:
            maps[nindent - col] += 1
    mapping = maps.most_common(1)[0][0] if maps else 2
    if seqs:
        sequence, offset = seqs.most_common(1)[0][0]
    else:
        sequence, offset = mapping + 2, mapping
    map_pad, seq_pad = _flow_padding(text)
    first = next((ln for ln in text.split("\n") if ln.strip() and not ln.startswith("#")), "")
    return Layout(
        mapping=mapping,
        sequence=max(sequence, offset + 2),
        offset=offset,
        explicit_start=first.startswith("---"),
        pad_flow_map=map_pad,
        pad_flow_seq=seq_pad,
    )


# --- flow collection spacing --------------------------------------------------------------------


def _flow_indicators(line: str) -> list[tuple[int, str]]:
    """Positions of the flow collection brackets on one line, outside quotes and comments.

    A bracket opens a flow collection only where a node may start (line start, after `:`, `-`,
    `,`, `?` or another bracket); elsewhere it is part of a plain scalar."""
    found: list[tuple[int, str]] = []
    depth = 0
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if quote == '"' and c == "\\":
                i += 2
                continue
            if c == quote:
                if quote == "'" and line[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                quote = ""
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            break
        else:
            before = line[:i].rstrip()
            node_start = not before or before[-1] in ":-,?[{"
            if c in "\"'" and (node_start or depth):
                quote = c
            elif c in "[{" and (node_start or depth):
                depth += 1
                found.append((i, c))
            elif c in "]}" and depth:
                depth -= 1
                found.append((i, c))
        i += 1
    return found


def _flow_padding(text: str) -> tuple[bool, bool]:
    """Whether the file's flow mappings and sequences put a space inside their brackets."""
    votes = {"{": Counter[bool](), "[": Counter[bool]()}
    for line in text.split("\n"):
        for i, c in _flow_indicators(line):
            if c in "[{":
                nxt = line[i + 1 : i + 2]
                if nxt and nxt not in "]}":
                    votes[c][nxt == " "] += 1
    return (votes["{"][True] > votes["{"][False], votes["["][True] > votes["["][False])


def _pad(line: str, layout: Layout) -> str:
    """Apply the file's bracket spacing to a line ruamel wrote (ruamel never pads)."""
    if not (layout.pad_flow_map or layout.pad_flow_seq):
        return line
    out = line
    for i, c in reversed(_flow_indicators(line)):
        if (c in "{}" and not layout.pad_flow_map) or (c in "[]" and not layout.pad_flow_seq):
            continue
        if c in "[{" and out[i + 1 : i + 2] not in ("", " ", "]", "}", "\n"):
            out = out[: i + 1] + " " + out[i + 1 :]
        elif c in "]}" and i > 0 and out[i - 1] not in " [{":
            out = out[:i] + " " + out[i:]
    return out


# --- the document ---------------------------------------------------------------------------------


def _yaml(layout: Layout) -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = WIDTH
    yaml.indent(mapping=layout.mapping, sequence=layout.sequence, offset=layout.offset)
    yaml.explicit_start = layout.explicit_start
    return yaml


def _parse(text: str, label: str) -> Any:
    try:
        return _yaml(Layout()).load(text)
    except YAMLError as exc:
        raise RoundTripError(f"{label}: cannot be edited as YAML: {exc}") from None


def _dump(data: Any, layout: Layout) -> str:
    out = io.StringIO()
    _yaml(layout).dump(data, out)
    return out.getvalue()


class YamlDoc:
    """One YAML file held for editing: `data` is ruamel's tree, `render()` the text to write."""

    def __init__(
        self,
        label: str,
        data: Any,
        layout: Layout,
        source: str | None = None,
        form: TextForm | None = None,
    ) -> None:
        self.label = label
        self.data = data
        self.layout = layout
        # the text the edit started from, as read; None for a document built from scratch
        self.text = source
        self._source = _Source.of(source) if source is not None else None
        self.form = self._source.form if self._source is not None else (form or TextForm())
        self._baseline = _dump(data, layout) if source is not None else ""

    @property
    def source(self) -> str | None:
        """The starting text as the YAML layer sees it (LF line endings, no byte order mark)."""
        return self._source.lf_text if self._source is not None else None

    @classmethod
    def parse(cls, text: str, label: str, layout: Layout | None = None) -> YamlDoc:
        lf_text = _Source.of(text).lf_text
        return cls(label, _parse(lf_text, label), layout or guess_layout(lf_text), text)

    def clone(self, label: str) -> YamlDoc:
        """An independent copy parsed from the same text, so a new file takes this one's shape."""
        if self.text is None:
            raise RoundTripError(f"{self.label}: has no text to copy")
        return YamlDoc.parse(self.text, label, self.layout)

    def render(self) -> str:
        dumped = _dump(self.data, self.layout)
        if self._source is None:
            padded = "".join(_pad(line, self.layout) for line in _lines(dumped))
            return self.form.apply(padded if _same_data(padded, dumped) else dumped)
        pieces = _patch(self._source.lf_lines, _lines(self._baseline), _lines(dumped), self.layout)
        if pieces is not None:
            lf_text = "".join(self._source.lf_lines[p] if isinstance(p, int) else p for p in pieces)
            if _same_data(lf_text, dumped):
                return self._assemble(pieces)
        return self.form.apply(dumped)

    def _assemble(self, pieces: list[int | str]) -> str:
        """The file's own lines where the edit kept them, new lines in the file's line ending."""
        assert self._source is not None
        newline = self.form.newline
        out = [self._source.raw_lines[p] if isinstance(p, int) else p[:-1] + newline for p in pieces]
        for i in range(len(out) - 1):
            if out[i] == out[i].rstrip("\r\n"):  # the file's last line, without an ending, is last no more
                out[i] += newline
        if out and not self.form.final_newline:
            out[-1] = out[-1].removesuffix("\n").removesuffix("\r")  # one ending: LF, CR or CRLF
        text = "".join(out)
        return BOM + text if self.form.bom else text


def _positions(base: list[str], orig: list[str]) -> tuple[dict[int, int], dict[int, int]]:
    """Map line boundaries of ruamel's dump onto the original text.

    Two maps, for where a change starts and where it ends, so that lines only the original has
    (ruamel dropped or merged them) stay outside the change."""
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    matcher = difflib.SequenceMatcher(None, base, orig, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal" or (tag == "replace" and i2 - i1 == j2 - j1):
            for k in range(i2 - i1 + 1):
                starts[i1 + k] = j1 + k
                ends.setdefault(i1 + k, j1 + k)
        else:
            starts[i1] = j2 if i1 == i2 else j1
            ends.setdefault(i1, j1)
            starts[i2] = j2
            ends[i2] = j1 if i1 == i2 else j2
    return starts, ends


def _patch(orig: list[str], base: list[str], new: list[str], layout: Layout) -> list[int | str] | None:
    """The original lines with the lines that changed between `base` and `new` replaced.

    The result names each original line kept by its index (so the caller can copy it as it was in
    the file) and gives new lines as text."""
    starts, ends = _positions(base, orig) if orig != base else ({}, {})
    out: list[int | str] = []
    cursor = 0
    matcher = difflib.SequenceMatcher(None, base, new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        if orig == base:
            o1, o2 = i1, i2
        else:
            if i1 not in starts or i2 not in ends:
                return None
            o1 = starts[i1]
            o2 = starts[i1] if i1 == i2 else ends[i2]
        if o1 < cursor or o2 < o1:
            return None
        if tag == "delete":
            o1, o2 = _settle_deletion(orig, o1, o2, cursor)
        elif tag == "insert":
            o1 = o2 = _settle_insertion(orig, o1, cursor, new[j1:j2])
        out.extend(range(cursor, o1))
        added = [_pad(line, layout) for line in new[j1:j2]]
        if tag == "replace" and o2 - o1 == len(added):
            added = [_keep_tail(old, line) for old, line in zip(orig[o1:o2], added, strict=True)]
        out.extend(added)
        cursor = o2
    out.extend(range(cursor, len(orig)))
    return out


def _keep_tail(old: str, new: str) -> str:
    """A changed line keeps the trailing blanks the original line had (ruamel drops them)."""
    tail = old[len(old.rstrip("\n").rstrip(" \t")) :].rstrip("\n")
    if tail and new.rstrip("\n") == new.rstrip("\n").rstrip(" \t"):
        return new.rstrip("\n") + tail + "\n"
    return new


def _is_trivia(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _settle_deletion(orig: list[str], o1: int, o2: int, cursor: int) -> tuple[int, int]:
    """Comments introduce what follows them; ruamel files them under what precedes them.

    So when an entry is deleted, the comment lines at the end of the deleted range that are no
    deeper than the entry (they introduce the next entry, or the next section) stay, and the
    comment block directly above the entry, at its indentation, goes with it."""
    indent = _indent(orig[o1])
    while o2 > o1 and _is_trivia(orig[o2 - 1]) and (not orig[o2 - 1].strip() or _indent(orig[o2 - 1]) <= indent):
        o2 -= 1
    if o2 > o1 and not _is_trivia(orig[o1]):
        while o1 > cursor and orig[o1 - 1].strip().startswith("#") and _indent(orig[o1 - 1]) == indent:
            o1 -= 1
    return o1, o2


def _settle_insertion(orig: list[str], at: int, cursor: int, lines: list[str]) -> int:
    """New entries go above the comment block that introduces the next, shallower or equal, entry."""
    first = next((line for line in lines if not _is_trivia(line)), None)
    if first is None:
        return at
    indent = _indent(first)
    while at > cursor and _is_trivia(orig[at - 1]) and (not orig[at - 1].strip() or _indent(orig[at - 1]) <= indent):
        at -= 1
    return at


def _same_data(a: str, b: str) -> bool:
    try:
        return bool(load_yaml_text(a) == load_yaml_text(b))
    except YamlProblem:
        return False


# --- values -------------------------------------------------------------------------------------


def _plain_is_string(value: str) -> bool:
    """Whether `value` written without quotes reads back as this string under YAML 1.1 too
    (Ansible and the validator read YAML 1.1: `12:30:00` is a number there)."""
    try:
        return bool(load_yaml_text(f"v: {value}\n") == {"v": value})
    except YamlProblem:
        return False


def scalar_like(old: Any, new: Any) -> Any:
    """`new`, quoted the way `old` was; quoted anyway where a plain scalar would change type."""
    if isinstance(new, str):
        if isinstance(old, ScalarString):
            return type(old)(new)
        if not _plain_is_string(new):
            return DoubleQuotedScalarString(new)
    return new


def map_like(sibling: Any) -> CommentedMap:
    """An empty mapping written in the same style (flow or block) as a sibling."""
    out = CommentedMap()
    if isinstance(sibling, CommentedMap) and sibling.fa.flow_style():
        out.fa.set_flow_style()
    return out
