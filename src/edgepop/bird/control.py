"""A client for BIRD 2's control socket, so an agent can change routes without a `birdc` per change.

The protocol is line based text. On connect BIRD greets with `0001 BIRD <version> ready.`. Each
command is one line; the reply is a run of lines, each either `NNNN-text` (more lines follow, with a
new code), ` text` (continues the previous code) or `NNNN text` (the last line). The last line's code
is not always 0000 (`0003 Reconfigured`, `0013 Daemon is up and running`); codes 8xxx are runtime
errors (`8003 No protocols match`) and 9xxx parse errors (`9001 syntax error ...`), both raised as
`BirdError`. Protocol names are sent quoted: BIRD answers an unquoted unknown name with a parse error
but a quoted one with the meaningful 8003.

A broken socket (BIRD restarted or stopped) raises `BirdUnavailable`; the next call connects again,
so a long-running agent needs no reconnect logic of its own beyond noticing that it happened
(`connects` counts the connections made).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from edgepop.bird.parse import protocols as parse_protocols

GREETING = 1
_LINE_RE = re.compile(r"^(\d{4})([ -])(.*)$")
# protocol states that mean "disabled or going down": their routes are not (or no longer) exported
DOWN_STATES = frozenset({"down", "flush"})
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


class BirdError(Exception):
    """BIRD refused a command: `code` is its 8xxx (runtime) or 9xxx (parse) reply code."""

    def __init__(self, code: int, text: str, command: str = "") -> None:
        self.code = code
        self.text = text
        self.command = command
        where = f" (command: {command})" if command else ""
        super().__init__(f"BIRD error {code:04d}: {text}{where}")


class BirdUnavailable(OSError):
    """The control socket cannot be reached or broke mid-reply (BIRD stopped or restarted)."""


class _StaleConnection(Exception):
    """The connection was closed before the command was answered: retry on a fresh one."""


@dataclass(frozen=True)
class Reply:
    """One complete reply: the final code, and every line as (code, text) in order."""

    code: int
    lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Every line's text, one per line: the shape `birdc` prints."""
        return "\n".join(text for _, text in self.lines)


@dataclass(frozen=True)
class Protocol:
    name: str
    proto: str
    table: str
    state: str
    since: str
    info: str

    @property
    def enabled(self) -> bool:
        """Whether the protocol is enabled (up or starting) rather than disabled or going down."""
        return self.state not in DOWN_STATES


@dataclass(frozen=True)
class Status:
    """`show status`: the version and the two timestamps that tell a restart and a reconfigure apart."""

    version: str
    last_reboot: str
    last_reconfiguration: str


def quote(name: str) -> str:
    """A protocol name as a quoted BIRD string (only plain identifiers and shell-style patterns)."""
    if not _NAME_RE.fullmatch(name.replace("*", "x").replace("?", "x")):
        raise ValueError(f"not a BIRD protocol name: {name!r}")
    return f'"{name}"'


class BirdControl:
    """One connection to a BIRD control socket, made lazily and remade after it broke.

    Not thread-safe: one owner sends commands and reads replies.
    """

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout
        self.version: str | None = None
        self.connects = 0
        self._sock: socket.socket | None = None
        self._buf = b""

    # --- connection ----------------------------------------------------------------------------

    def connect(self) -> None:
        self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise BirdUnavailable(f"cannot connect to BIRD at {self.path}: {exc}") from exc
        self._sock = sock
        self._buf = b""
        try:
            greeting = self._read_reply()
        except BaseException:
            self.close()
            raise
        if greeting.code != GREETING:
            self.close()
            raise BirdUnavailable(f"unexpected greeting from {self.path}: {greeting.code:04d} {greeting.text}")
        self.version = greeting.text.removeprefix("BIRD ").removesuffix(" ready.")
        self.connects += 1

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
                self._buf = b""

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> BirdControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- wire ----------------------------------------------------------------------------------

    def _read_line(self) -> str:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except OSError as exc:  # timeouts included: a reply cut short leaves the stream unusable
                self.close()
                raise BirdUnavailable(f"reading from BIRD at {self.path} failed: {exc}") from exc
            if not chunk:
                self.close()
                raise BirdUnavailable(f"BIRD closed the control socket {self.path}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", errors="replace")

    def _read_reply(self, first: str | None = None) -> Reply:
        lines: list[tuple[int, str]] = []
        code = 0
        while True:
            raw, first = (first, None) if first is not None else (self._read_line(), None)
            match = _LINE_RE.match(raw)
            if match is None:
                if not raw.startswith(" "):
                    self.close()
                    raise BirdUnavailable(f"malformed line from BIRD: {raw!r}")
                lines.append((code, raw[1:]))  # continuation of the current code
                continue
            code = int(match.group(1))
            lines.append((code, match.group(3)))
            if match.group(2) == " ":
                return Reply(code, lines)

    def command(self, cmd: str) -> Reply:
        """Send one command and return its reply; raise BirdError on an 8xxx/9xxx reply.

        A connection that broke since the last command (BIRD restarted) is noticed when the send
        fails or the reply ends before its first line; the command is then sent once more on a fresh
        connection. That is safe for what agents send (show, enable, disable, configure: all
        idempotent). A break on a fresh connection raises BirdUnavailable.
        """
        if "\n" in cmd:
            raise ValueError("a BIRD command is one line")
        reused = self._sock is not None
        try:
            return self._exchange(cmd)
        except _StaleConnection:
            if not reused:
                raise BirdUnavailable(f"BIRD at {self.path} closed the connection") from None
        return self._exchange(cmd)

    def _exchange(self, cmd: str) -> Reply:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(cmd.encode() + b"\n")
        except OSError:
            self.close()
            raise _StaleConnection() from None
        try:
            first = self._read_line()
        except BirdUnavailable:
            raise _StaleConnection() from None
        reply = self._read_reply(first)
        if reply.code >= 8000:
            raise BirdError(reply.code, reply.lines[-1][1], cmd)
        return reply

    # --- commands ------------------------------------------------------------------------------

    def show_protocols(self, pattern: str | None = None) -> dict[str, Protocol]:
        """Protocol name -> its row of `show protocols` (optionally only names matching `pattern`)."""
        cmd = "show protocols" if pattern is None else f"show protocols {quote(pattern)}"
        reply = self.command(cmd)
        return {row["name"]: Protocol(**row) for row in parse_protocols(reply.text)}

    def show_status(self) -> Status:
        reply = self.command("show status")
        values = {"version": "", "last_reboot": "", "last_reconfiguration": ""}
        for code, text in reply.lines:
            if code == 1000:
                values["version"] = text.removeprefix("BIRD ")
            elif text.startswith("Last reboot on "):
                values["last_reboot"] = text.removeprefix("Last reboot on ")
            elif text.startswith("Last reconfiguration on "):
                values["last_reconfiguration"] = text.removeprefix("Last reconfiguration on ")
        return Status(**values)

    def enable(self, name: str) -> bool:
        """Enable a protocol; True when it changed (False: it was already enabled)."""
        return self.command(f"enable {quote(name)}").lines[0][0] == 11

    def disable(self, name: str) -> bool:
        """Disable a protocol (its routes are withdrawn); True when it changed."""
        return self.command(f"disable {quote(name)}").lines[0][0] == 9

    def configure(self, path: str | None = None, *, check: bool = False) -> Reply:
        """Reload the configuration (or only check it). Note: BIRD re-enables protocols that were
        disabled from the CLI when it reconfigures, so an agent must re-assert its state after it."""
        cmd = "configure check" if check else "configure"
        if path is not None:
            if '"' in path or "\n" in path:
                raise ValueError(f"unusable configuration path: {path!r}")
            cmd += f' "{path}"'
        return self.command(cmd)
