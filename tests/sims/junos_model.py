"""A Junos configuration database model for the NETCONF simulator (`junos_netconf`).

What it models, because the push engine and NAPALM's `junos` driver depend on it:
- configurations as Junos curly-brace text parsed into a statement tree: a block (`interfaces {`,
  `neighbor 198.51.100.11 {`) is identified by its whole header, a leaf statement (`mtu 1514;`)
  by its first word, so loading `mtu 9192;` replaces it; the leaves named in `MULTI` (`address`,
  `route`, `member` …) are identified by their first two words, so several can coexist;
  `/* … */` annotations and `#` comments are dropped on load; `delete:` and `replace:` tags work;
- one shared candidate database and the committed history: `load-configuration` with action
  `merge`/`replace` (merge, honouring `replace:`), `override` (the text becomes the candidate),
  `rollback N` (history N becomes the candidate); `commit` pushes the candidate to the front of
  the history (rollback 0 is the running config);
- the compare text of `show | compare [rollback N]`: `[edit PATH]` headers with `-`/`+` lines;
- the exclusive lock (`lock-configuration`): held by one session; refused while another session
  holds it, or while the candidate has changes nobody committed ("configuration database
  modified"); released, and its uncommitted changes discarded, when its session ends;
- `commit confirmed N`: the device waits N "minutes" (`minute` real seconds each, 60 by default,
  shortened in tests) for a plain commit, and otherwise commits the config it had before on its
  own timer (a thread), as Junos does;
- rejected statements: a statement matching one of `reject` (regular expressions over the
  statement's words) is refused with Junos's "syntax error"; the rest of the text still loads,
  as on the device, and the error reaches the client;
- management reachability: NETCONF answers only while the committed config has
  `system services netconf ssh`, and the TCP path exists only while it has the management
  statement `management` (an address on fxp0 by default): commit a config without it and every
  session drops;
- BGP: `protocols bgp group G neighbor IP` (also under `routing-instances NAME`) with `peer-as`
  from the neighbour or its group and the local AS from `routing-options autonomous-system` (or
  the group's `type internal`); a session is Established when the simulated remote end
  (`bgp_remotes`: peer -> its ASN) exists and the configured peer AS matches it, otherwise
  Active; tests edit `bgp_remotes` to script peers.

What it does not model: Junos syntax and semantics (any statement is accepted as written, so the
simulator cannot tell a valid config from an invalid one), statement order as Junos sorts it
(statements keep the order they were loaded in), `set`/XML/JSON formats, groups and
inheritance, private and exclusive configuration modes, commit checks, `inactive:`,
annotations, and everything outside configuration and BGP.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

MULTI = {"address", "route", "member", "members", "prefix-list-item", "server", "community", "interface", "unit"}
"""Leaf keywords that can repeat; they are identified by keyword and value, not keyword alone."""


class LoadError(Exception):
    """The device refused a statement: `path` is the hierarchy, `statement` the refused words."""

    def __init__(self, path: list[str], statement: str) -> None:
        super().__init__(f"syntax error: {statement}")
        self.path = path
        self.statement = statement


@dataclass
class Node:
    """A statement: a leaf (`children is None`) or a block with its children in load order."""

    words: str
    children: dict[str, Node] | None = None
    tag: str = ""
    """`delete` or `replace` while the node is part of a text being loaded."""

    @property
    def key(self) -> str:
        if self.children is not None:
            return self.words
        first, _, rest = self.words.partition(" ")
        if first in MULTI and rest:
            return f"{first} {rest.split()[0]}"
        return first

    def text(self, depth: int = 0) -> Iterator[str]:
        pad = "    " * depth
        if self.children is None:
            yield f"{pad}{self.words};"
            return
        yield f"{pad}{self.words} {{"
        for child in self.children.values():
            yield from child.text(depth + 1)
        yield f"{pad}}}"


def _tokens(text: str) -> Iterator[str]:
    """Words, quoted strings, `[ … ]` lists as one word, and the punctuation `{ } ;`."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif c in "{};":
            yield c
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            yield text[i : j + 1]
            i = j + 1
        elif c == "[":
            end = text.find("]", i)
            end = n - 1 if end < 0 else end
            yield "[ " + " ".join(text[i + 1 : end].split()) + " ]"
            i = end + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in '{};"':
                j += 1
            yield text[i:j]
            i = j


def parse(text: str) -> Node:
    """The statement tree of a curly-brace config (the root's `words` is empty)."""
    root = Node("", {})
    stack = [root]
    words: list[str] = []
    for tok in _tokens(text):
        if tok in ("{", ";"):
            tag = ""
            if words and words[0] in ("delete:", "replace:"):
                tag = words.pop(0)[:-1]
            if not words:
                raise ValueError("statement without words")
            node = Node(" ".join(words), {} if tok == "{" else None, tag)
            parent = stack[-1].children
            assert parent is not None
            parent[node.key] = node
            if tok == "{":
                stack.append(node)
            words = []
        elif tok == "}":
            if words or len(stack) == 1:
                raise ValueError("unbalanced braces")
            stack.pop()
        else:
            words.append(tok)
    if words or len(stack) != 1:
        raise ValueError("missing closing brace or semicolon")
    return root


def render(root: Node) -> str:
    assert root.children is not None
    return "".join(line + "\n" for child in root.children.values() for line in child.text())


def merge(into: Node, loaded: Node, path: list[str], reject: list[re.Pattern[str]], errors: list[LoadError]) -> None:
    """Apply `loaded` to `into` as `load merge`/`load replace` does; refused statements go to `errors`."""
    assert into.children is not None and loaded.children is not None
    for key, node in loaded.children.items():
        if any(rx.search(node.words) for rx in reject):
            errors.append(LoadError(path, node.words))
            continue
        if node.tag == "delete":
            into.children.pop(key, None)
            continue
        have = into.children.get(key)
        if node.children is not None and have is not None and have.children is not None and node.tag != "replace":
            merge(have, node, [*path, node.words], reject, errors)
            continue
        fresh = Node(node.words, {} if node.children is not None else None)
        into.children[key] = fresh
        if node.children is not None:
            merge(fresh, node, [*path, node.words], reject, errors)


def compare(old: Node, new: Node) -> str:
    """`show | compare`: per hierarchy level, `[edit PATH]` and the removed/added statements."""
    out: list[str] = []

    def walk(a: Node, b: Node, path: list[str]) -> None:
        assert a.children is not None and b.children is not None
        lines: list[str] = []
        for key, node in a.children.items():
            other = b.children.get(key)
            if (
                other is None
                or (other.children is None) != (node.children is None)
                or (node.children is None and other.words != node.words)
            ):
                lines += ["-" + line[1:] for line in node.text(1)]
        for key, node in b.children.items():
            other = a.children.get(key)
            if (
                other is None
                or (other.children is None) != (node.children is None)
                or (node.children is None and other.words != node.words)
            ):
                lines += ["+" + line[1:] for line in node.text(1)]
        if lines:
            out.append("[edit" + "".join(" " + p for p in path) + "]")
            out.extend(lines)
        for key, node in b.children.items():
            other = a.children.get(key)
            if node.children is not None and other is not None and other.children is not None:
                walk(other, node, [*path, node.words])

    walk(old, new, [])
    return "".join(line + "\n" for line in out)


def find(root: Node, *words: str) -> Node | None:
    """The statement at this path of block headers/leaf words, or None."""
    node: Node | None = root
    for w in words:
        if node is None or node.children is None:
            return None
        node = next((c for c in node.children.values() if c.words == w), None)
    return node


@dataclass
class Commit:
    config: Node
    when: float
    comment: str = ""
    user: str = "admin"


@dataclass
class BgpPeer:
    address: str
    instance: str
    group: str
    peer_as: int
    local_as: int
    description: str = ""


class JunosDevice:
    """The configuration databases, lock, confirm timer and BGP state of one router."""

    def __init__(
        self,
        committed: str,
        *,
        hostname_default: str = "router",
        reject: list[str] | None = None,
        bgp_remotes: dict[str, int] | None = None,
        minute: float = 60.0,
        management: tuple[str, ...] = ("interfaces", "fxp0", "unit 0", "family inet", "address 203.0.113.10/25"),
        router_id: str = "203.0.113.129",
    ) -> None:
        self.lock = threading.RLock()
        self.history: list[Commit] = [Commit(parse(committed), time.time(), "initial")]
        self.candidate = copy.deepcopy(self.history[0].config)
        self.reject = [re.compile(r) for r in reject or []]
        self.bgp_remotes = dict(bgp_remotes or {})
        self.minute = minute
        self.management = management
        self.router_id = router_id
        self.hostname_default = hostname_default
        self.holder: int | None = None
        """Session id holding the exclusive lock."""
        self.confirm_deadline: float | None = None
        self._timer: threading.Timer | None = None
        self.booted = time.time() - 86400
        self.serial = "SIM0001"
        self.log: list[str] = []
        """Every RPC the device received, as `session-id operation attr=value …`."""

    # --- reading -----------------------------------------------------------------------------
    @property
    def running(self) -> Node:
        return self.history[0].config

    def running_text(self) -> str:
        with self.lock:
            return render(self.running)

    def candidate_text(self) -> str:
        with self.lock:
            return render(self.candidate)

    def hostname(self) -> str:
        node = find(self.running, "system")
        if node is not None and node.children is not None:
            leaf = node.children.get("host-name")
            if leaf is not None:
                return leaf.words.split()[1]
        return self.hostname_default

    def netconf_enabled(self) -> bool:
        return find(self.running, "system", "services", "netconf", "ssh") is not None

    def reachable(self) -> bool:
        return not self.management or find(self.running, *self.management) is not None

    def candidate_modified(self) -> bool:
        return render(self.candidate) != render(self.running)

    def pending_confirm(self) -> bool:
        return self.confirm_deadline is not None

    # --- editing -----------------------------------------------------------------------------
    def load(self, text: str, action: str) -> list[LoadError]:
        """Load text into the candidate; return the refused statements (the rest is loaded)."""
        loaded = parse(text)
        errors: list[LoadError] = []
        with self.lock:
            if action == "override":
                fresh = Node("", {})
                merge(fresh, loaded, [], self.reject, errors)
                self.candidate = fresh
            else:
                merge(self.candidate, loaded, [], self.reject, errors)
        return errors

    def load_rollback(self, n: int) -> None:
        with self.lock:
            if n >= len(self.history):
                raise IndexError(n)
            self.candidate = copy.deepcopy(self.history[n].config)

    def compare(self, n: int = 0) -> str:
        with self.lock:
            return compare(self.history[n].config, self.candidate)

    def commit(self, confirm_minutes: int | None = None, comment: str = "") -> None:
        with self.lock:
            self._cancel_timer()
            if confirm_minutes:
                comment = f"commit confirmed, rollback in {confirm_minutes}mins"
                self.confirm_deadline = time.monotonic() + confirm_minutes * self.minute
                self._timer = threading.Timer(confirm_minutes * self.minute, self._expire)
                self._timer.daemon = True
                self._timer.start()
            self.history.insert(0, Commit(copy.deepcopy(self.candidate), time.time(), comment))
            del self.history[50:]

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self.confirm_deadline = None

    def _expire(self) -> None:
        """The confirm timer ran out: commit the configuration from before the confirmed commit."""
        with self.lock:
            if self.confirm_deadline is None:
                return
            self.confirm_deadline = None
            self._timer = None
            previous = copy.deepcopy(self.history[1].config)
            self.history.insert(0, Commit(previous, time.time(), "automatic rollback", user="root"))
            self.candidate = copy.deepcopy(previous)
            self.log.append("- automatic rollback: commit not confirmed in time")

    def stop(self) -> None:
        with self.lock:
            self._cancel_timer()

    # --- BGP ---------------------------------------------------------------------------------
    def bgp_peers(self) -> list[BgpPeer]:
        with self.lock:
            root = self.running
            local = _leaf_value(find(root, "routing-options"), "autonomous-system")
            places: list[tuple[str, Node | None, str | None]] = [("master", find(root, "protocols", "bgp"), local)]
            instances = find(root, "routing-instances")
            for inst in (instances.children or {}).values() if instances else []:
                own = _leaf_value(find(inst, "routing-options"), "autonomous-system") or local
                places.append((inst.words, find(inst, "protocols", "bgp"), own))
            peers = []
            for instance, bgp, local_as in places:
                for group in (bgp.children or {}).values() if bgp else []:
                    if not group.words.startswith("group ") or group.children is None:
                        continue
                    internal = _leaf_value(group, "type") == "internal"
                    for nb in group.children.values():
                        if not nb.words.startswith("neighbor "):
                            continue
                        peer_as = _leaf_value(nb, "peer-as") or _leaf_value(group, "peer-as")
                        if internal and local_as:
                            peer_as = local_as
                        desc = (_leaf_value(nb, "description") or "").strip('"')
                        peers.append(
                            BgpPeer(
                                nb.words.split()[1],
                                instance,
                                group.words.split()[1],
                                int(peer_as or 0),
                                int(local_as or 0),
                                desc,
                            )
                        )
            return peers

    def established(self, peer: BgpPeer) -> bool:
        return self.bgp_remotes.get(peer.address) == peer.peer_as and peer.peer_as != 0

    def instances(self) -> list[str]:
        with self.lock:
            names = ["master"]
            node = find(self.running, "routing-instances")
            names += [c.words for c in (node.children or {}).values()] if node else []
            return names

    def interfaces(self) -> list[str]:
        with self.lock:
            node = find(self.running, "interfaces")
            return [c.words for c in (node.children or {}).values() if c.children is not None] if node else []


def _leaf_value(block: Node | None, keyword: str) -> str | None:
    if block is None or block.children is None:
        return None
    leaf = block.children.get(keyword)
    if leaf is None or leaf.children is not None:
        return None
    return leaf.words.partition(" ")[2] or None
