"""An Arista EOS configuration model shared by the eAPI and SSH simulators.

What it models, because the push engine depends on it:
- running-config, startup-config and flash:rollback-0 as texts of blocks (a mode line such as
  `interface Ethernet1` with its indented lines) and top-level lines;
- configuration sessions: `configure session NAME` copies the running config, lines edit the copy,
  `rollback clean-config` empties it, `show session-config named NAME diffs` is a unified diff
  against running, `configure session NAME commit` makes it running, `... abort` drops it;
  `show configuration sessions [detail]` lists open sessions as `pending` (NAPALM's lock check);
- commit timers: `configure session NAME commit timer HH:MM:SS` applies the session and keeps the
  previous running config; `configure session NAME commit` before expiry confirms, `abort`
  reverts at once, and the first access after expiry reverts (lazy, but before any answer);
  `configure replace flash:rollback-0`, `copy startup-config flash:rollback-0`, `write memory`;
- editing semantics: a line already present is a no-op, lines with a one-per-mode keyword
  (`hostname`, `description`, `ip address`, `switchport access vlan`, `shutdown`/`no shutdown` …)
  replace their predecessor, `no LINE` removes it, a mode line opens (or re-enters) its block;
- eAPI availability: the HTTP API answers only while the running config has
  `management api http-commands` with `no shutdown` in it, as on a real switch;
- BGP: `router bgp ASN` with `neighbor IP remote-as ASN` lines; a session is Established when the
  simulated remote end (`bgp_remotes`: peer -> its ASN) exists, the configured remote-as matches it
  and the neighbor is not shut down; otherwise Active (or Idle, administratively, when shut);
- rejected lines: a config line matching one of `reject` (regular expressions) is refused with
  EOS's "% Invalid input" error, the way the parser refuses a line it does not know;
- the ARP and IPv6 neighbour tables, as the test feeds them (`set_neighbours`, e.g. from a lab
  namespace's `ip -j neigh` through `neighbours_from_linux`): `show arp vrf all` (what NAPALM's
  `get_arp_table` sends), `show ip arp` and `show ipv6 neighbors`, in EOS's JSON shape (MACs as
  `xxxx.xxxx.xxxx`, an entry learned on a VLAN interface as "Vlan100, Ethernet1").

What it does not model: EOS syntax (any other line is accepted as written, so the simulator
cannot tell a valid config from an invalid one), defaults hidden from `show running-config`,
nested modes (address families are stored flat under their parent), abbreviations, AAA beyond
one user table, interfaces' operational state, ARP ageing and learning (the table is what the test
last fed), and everything outside configuration, BGP and the neighbour tables.
"""

from __future__ import annotations

import copy
import difflib
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

MODE_PREFIXES = (
    "interface ",
    "vlan ",
    "router ",
    "management ",
    "ip access-list ",
    "ipv6 access-list ",
    "route-map ",
    "mlag configuration",
    "address-family ",
    "daemon ",
)
# key = the first words of a line that may appear only once per mode
SINGLETONS = (
    "hostname",
    "description",
    "name",
    "mtu",
    "ip address",
    "switchport access vlan",
    "switchport mode",
    "mlag",
    "channel-group",
    "lacp timer",
    "protocol",
    "router-id",
    "speed",
    "ip domain-name",
)


class CliError(Exception):
    """A command the simulated CLI refuses, with EOS's wording."""


def _key(line: str) -> str:
    bare = line[3:] if line.startswith("no ") else line
    if bare == "shutdown":
        return "shutdown"
    if bare.startswith("neighbor ") and bare.endswith(" shutdown"):
        return bare
    for word in SINGLETONS:
        if bare == word or bare.startswith(word + " "):
            return word
    m = re.match(r"(neighbor \S+ (?:remote-as|description))\b", bare)
    if m:
        return m.group(1)
    return line


@dataclass
class Block:
    line: str
    children: list[str] = field(default_factory=list)


class Config:
    """An ordered list of blocks; a top-level line is a block without children."""

    def __init__(self, blocks: Iterable[Block] = ()) -> None:
        self.blocks = list(blocks)

    @classmethod
    def parse(cls, text: str) -> Config:
        cfg = cls()
        current: Block | None = None
        for raw in text.splitlines():
            if not raw.strip() or raw.strip().startswith("!") or raw.strip() == "end":
                continue
            if raw[0] in " \t" and current is not None:
                current.children.append(raw.strip())
                continue
            current = Block(raw.strip())
            cfg.blocks.append(current)
        return cfg

    def copy(self) -> Config:
        return Config(copy.deepcopy(self.blocks))

    def render(self) -> str:
        out: list[str] = []
        for blk in self.blocks:
            out.append(blk.line)
            out.extend("   " + child for child in blk.children)
            if blk.children or blk.line.startswith(MODE_PREFIXES):
                out.append("!")
        out.append("end")
        return "\n".join(out) + "\n"

    def find(self, line: str) -> Block | None:
        return next((b for b in self.blocks if b.line == line), None)

    def enter(self, line: str) -> Block:
        blk = self.find(line)
        if blk is None:
            blk = Block(line)
            self.blocks.append(blk)
        return blk

    @staticmethod
    def _set(lines: list[str], line: str) -> None:
        if line.startswith("no ") and _key(line) not in ("shutdown",) and not line.endswith(" shutdown"):
            target = line[3:]
            lines[:] = [x for x in lines if x != target and not x.startswith(target + " ")]
            return
        key = _key(line)
        for i, existing in enumerate(lines):
            if existing == line:
                return
            if _key(existing) == key:
                lines[i] = line
                return
        lines.append(line)

    def apply(self, line: str, mode: Block | None) -> Block | None:
        """Apply one stripped config line in `mode`; return the mode the CLI is in afterwards."""
        if line in ("exit", "end"):
            return None
        if line.startswith(MODE_PREFIXES) and not (mode is not None and line.startswith("address-family ")):
            return self.enter(line)
        if mode is None and line.startswith("no ") and line[3:].startswith(MODE_PREFIXES):
            self.blocks = [b for b in self.blocks if b.line != line[3:]]
            return None
        if mode is not None:
            self._set(mode.children, line)
            return mode
        tops = [b.line for b in self.blocks if not b.children and not b.line.startswith(MODE_PREFIXES)]
        before = list(tops)
        self._set(tops, line)
        if tops != before:
            removed = [x for x in before if x not in tops]
            self.blocks = [b for b in self.blocks if b.children or b.line not in removed]
            for new in tops:
                if new not in before:
                    self.blocks.append(Block(new))
        return None

    def lines_of(self, prefix: str) -> list[str]:
        blk = next((b for b in self.blocks if b.line.startswith(prefix)), None)
        return list(blk.children) if blk else []

    def has(self, block: str, child: str) -> bool:
        blk = self.find(block)
        return blk is not None and child in blk.children


@dataclass
class Session:
    name: str
    config: Config
    state: str = "pending"  # pending (open) | completed | pendingCommitTimer
    commit_by: float | None = None  # monotonic deadline of the commit timer
    before: Config | None = None  # running config before a timed commit


class EosDevice:
    """One simulated switch; every public method is safe to call from several server threads."""

    def __init__(
        self,
        running: str,
        *,
        hostname: str = "sim-eos",
        bgp_remotes: dict[str, int] | None = None,
        reject: Iterable[str] = (),
        model: str = "vEOS-lab",
        version: str = "4.31.2F",
    ) -> None:
        self.lock = threading.RLock()
        self.running = Config.parse(running)
        self.startup = self.running.copy()
        self.files: dict[str, Config] = {}
        self.sessions: dict[str, Session] = {}
        self.bgp_remotes = dict(bgp_remotes or {})
        self.reject = [re.compile(p) for p in reject]
        self.model = model
        self.version = version
        self.default_hostname = hostname
        self.booted = time.monotonic()
        self.log: list[str] = []  # every command received, in order, `enable` included
        self.neighbours: list[dict[str, Any]] = []  # {address, hwAddress, interface, age}

    # --- state the tests look at ------------------------------------------------------------

    def running_text(self) -> str:
        with self.lock:
            self._expire()
            return self.running.render()

    def hostname(self) -> str:
        for blk in self.running.blocks:
            if blk.line.startswith("hostname "):
                return blk.line.split(" ", 1)[1]
        return self.default_hostname

    def eapi_enabled(self) -> bool:
        with self.lock:
            self._expire()
            return self.running.has("management api http-commands", "no shutdown")

    def hold_session(self, name: str) -> None:
        """Someone else opens a config session and leaves it open (what NAPALM calls a lock)."""
        with self.lock:
            self.sessions[name] = Session(name, self.running.copy())

    def set_neighbours(self, entries: Iterable[dict[str, Any]]) -> None:
        """Replace the ARP/ND table: `{address, mac, interface}` rows (MACs in any usual notation)."""
        rows = []
        for e in entries:
            digits = re.sub(r"[^0-9a-fA-F]", "", str(e["mac"])).lower()
            rows.append(
                {
                    "address": str(e["address"]),
                    "hwAddress": f"{digits[0:4]}.{digits[4:8]}.{digits[8:12]}",
                    "interface": str(e.get("interface", "Vlan100, Ethernet1")),
                    "age": int(e.get("age", 0)),
                }
            )
        with self.lock:
            self.neighbours = rows

    def commands_matching(self, pattern: str) -> list[str]:
        with self.lock:
            return [c for c in self.log if re.search(pattern, c)]

    # --- the CLI ------------------------------------------------------------------------------

    def _expire(self) -> None:
        now = time.monotonic()
        for sess in list(self.sessions.values()):
            if sess.state == "pendingCommitTimer" and sess.commit_by is not None and now >= sess.commit_by:
                assert sess.before is not None
                self.running = sess.before
                del self.sessions[sess.name]

    def uptime(self) -> float:
        return time.monotonic() - self.booted

    def _session(self, name: str) -> Session:
        sess = self.sessions.get(name)
        if sess is None:
            raise CliError(f"% Session {name} does not exist")
        return sess

    def open_session(self, name: str) -> Session:
        sess = self.sessions.get(name)
        if sess is None:
            sess = self.sessions[name] = Session(name, self.running.copy())
        elif sess.state != "pending":
            raise CliError(f"% Cannot enter session {name} (session already committed)")
        return sess

    def config_line(self, sess: Session | None, mode: Block | None, line: str) -> Block | None:
        """One line typed in configuration mode (a session's, or the running config's)."""
        for pattern in self.reject:
            if pattern.search(line):
                raise CliError(f"% Invalid input (at token 0: '{line.split()[0]}')")
        if sess is not None and line == "rollback clean-config":
            sess.config = Config()
            return None
        target = sess.config if sess is not None else self.running
        return target.apply(line, mode)

    def _commit(self, name: str, timer: str | None) -> None:
        sess = self._session(name)
        if timer is not None:
            if any(s.state == "pendingCommitTimer" and s.name != name for s in self.sessions.values()):
                raise CliError("% Another session has a pending commit timer")
            h, m, s = (int(x) for x in timer.split(":"))
            sess.before = self.running.copy()
            sess.commit_by = time.monotonic() + h * 3600 + m * 60 + s
            sess.state = "pendingCommitTimer"
            self.running = sess.config.copy()
            return
        if sess.state == "pendingCommitTimer":
            sess.state, sess.before, sess.commit_by = "completed", None, None
            return
        self.running = sess.config.copy()
        sess.state = "completed"

    def _abort(self, name: str) -> None:
        sess = self._session(name)
        if sess.state == "pendingCommitTimer" and sess.before is not None:
            self.running = sess.before
        del self.sessions[name]

    def diff(self, name: str) -> str:
        sess = self._session(name)
        lines = difflib.unified_diff(
            self.running.render().splitlines(),
            sess.config.render().splitlines(),
            "system:/running-config",
            f"session:/{name}-session-config",
            lineterm="",
        )
        return "\n".join(lines) + "\n"

    def exec_command(self, cmd: str) -> dict[str, Any] | str:
        """An exec-mode command: a dict for JSON output, a str for text-only output."""
        self._expire()
        if cmd in ("enable", "terminal length 0", "terminal width 511", "configure terminal", "configure"):
            return {}
        if cmd == "show version":
            up = self.uptime()
            return {
                "modelName": self.model,
                "version": self.version,
                "internalVersion": f"{self.version}-sim",
                "serialNumber": "SIM0001",
                "systemMacAddress": "00:1c:73:00:00:01",
                "bootupTimestamp": time.time() - up,
                "uptime": up,
                "architecture": "x86_64",
            }
        if cmd == "show hostname":
            return {"hostname": self.hostname(), "fqdn": self.hostname()}
        if cmd == "show interfaces":
            return {"interfaces": self._interfaces()}
        if cmd.startswith("show running-config"):
            return f"! Command: {cmd}\n! device: {self.hostname()} ({self.model}, EOS-{self.version})\n!\n" + (
                self.running.render()
            )
        if cmd == "show startup-config":
            return self.startup.render()
        if cmd in ("show configuration sessions", "show configuration sessions detail"):
            sessions = {}
            for s in self.sessions.values():
                entry: dict[str, Any] = {"state": s.state, "description": ""}
                if s.commit_by is not None:
                    entry["commitBy"] = self.uptime() + (s.commit_by - time.monotonic())
                sessions[s.name] = entry
            return {"sessions": sessions, "maxSavedSessions": 1, "maxOpenSessions": 5}
        m = re.fullmatch(r"show session-config named (\S+)( diffs)?", cmd)
        if m:
            return self.diff(m.group(1)) if m.group(2) else self._session(m.group(1)).config.render()
        m = re.fullmatch(r"configure session (\S+) (commit(?: timer (\d\d:\d\d:\d\d))?|abort)", cmd)
        if m:
            if m.group(2) == "abort":
                self._abort(m.group(1))
            else:
                self._commit(m.group(1), m.group(3))
            return {}
        if cmd == "copy startup-config flash:rollback-0":
            self.files["flash:rollback-0"] = self.startup.copy()
            return "Copy completed successfully.\n"
        if cmd in ("write memory", "copy running-config startup-config"):
            self.startup = self.running.copy()
            return "Copy completed successfully.\n"
        if cmd == "configure replace flash:rollback-0":
            if "flash:rollback-0" not in self.files:
                raise CliError("% Error opening flash:rollback-0 (No such file or directory)")
            self.running = self.files["flash:rollback-0"].copy()
            return {}
        m = re.fullmatch(r"show (ip|ipv6) bgp (summary|neighbors|peers) vrf all", cmd)
        if m:
            return self._bgp(m.group(1), m.group(2))
        if cmd in ("show arp vrf all", "show ip arp", "show ipv6 neighbors"):
            return self._neighbour_table(cmd)
        raise CliError("% Invalid input")

    def _neighbour_table(self, cmd: str) -> dict[str, Any]:
        v6 = cmd == "show ipv6 neighbors"
        rows = [dict(r) for r in self.neighbours if (":" in r["address"]) == v6]
        if v6:
            return {"ipV6Neighbors": rows}
        table = {"dynamicEntries": len(rows), "staticEntries": 0, "totalEntries": len(rows), "ipV4Neighbors": rows}
        return {"vrfs": {"default": table}} if cmd == "show arp vrf all" else table

    def _interfaces(self) -> dict[str, Any]:
        out = {}
        for blk in self.running.blocks:
            if blk.line.startswith("interface "):
                name = blk.line.split(" ", 1)[1]
                shut = "shutdown" in blk.children
                desc = next((c.split(" ", 1)[1] for c in blk.children if c.startswith("description ")), "")
                out[name] = {
                    "name": name,
                    "lineProtocolStatus": "down" if shut else "up",
                    "interfaceStatus": "disabled" if shut else "connected",
                    "description": desc,
                    "mtu": 1500,
                    "bandwidth": 1_000_000_000,
                    "physicalAddress": "00:1c:73:00:00:02",
                }
        return out

    def bgp_peers(self) -> tuple[int | None, str, list[dict[str, Any]]]:
        blk = next((b for b in self.running.blocks if b.line.startswith("router bgp ")), None)
        if blk is None:
            return None, "", []
        asn = int(blk.line.split()[2])
        rid = next((c.split()[1] for c in blk.children if c.startswith("router-id ")), "0.0.0.0")
        peers = []
        for child in blk.children:
            m = re.fullmatch(r"neighbor (\S+) remote-as (\d+)", child)
            if not m:
                continue
            ip, remote = m.group(1), int(m.group(2))
            shut = f"neighbor {ip} shutdown" in blk.children
            up = not shut and self.bgp_remotes.get(ip) == remote
            state = "Established" if up else ("Idle" if shut else "Active")
            peers.append(
                {
                    "peerAddress": ip,
                    "asn": str(remote),
                    "localAsn": str(asn),
                    "routerId": "198.51.100.254" if up else "0.0.0.0",
                    "state": state,
                    "idleReason": "Administratively shut down" if shut else "",
                    "description": "",
                    "establishedTime": 10 if up else 0,
                    "prefixesReceived": 1 if up else 0,
                    "prefixesSent": 1 if up else 0,
                    "v6PrefixesReceived": 0,
                    "v6PrefixesSent": 0,
                }
            )
        return asn, rid, peers

    def _bgp(self, family: str, what: str) -> dict[str, Any]:
        asn, rid, peers = self.bgp_peers()
        if asn is None:
            return {"vrfs": {}}
        v6 = family == "ipv6"
        mine = [p for p in peers if (":" in p["peerAddress"]) == v6]
        if what == "summary":
            return {
                "vrfs": {
                    "default": {
                        "routerId": rid,
                        "asn": str(asn),
                        "peers": {
                            p["peerAddress"]: {"peerState": p["state"], "prefixAccepted": p["prefixesReceived"]}
                            for p in mine
                        },
                    }
                }
            }
        return {"vrfs": {"default": {"peerList": mine}}}


def neighbours_from_linux(rows: Iterable[dict[str, Any]], interface: str) -> list[dict[str, Any]]:
    """`ip -j neigh` rows of a Linux switch -> `set_neighbours` entries, every one shown on
    `interface` (e.g. "Vlan100, Ethernet1"); entries without a MAC (INCOMPLETE, FAILED) are left out,
    as EOS lists only resolved ones."""
    out = []
    for r in rows:
        if r.get("lladdr") and not {"FAILED", "INCOMPLETE"} & set(r.get("state", [])):
            out.append({"address": r["dst"], "mac": r["lladdr"], "interface": interface})
    return out
