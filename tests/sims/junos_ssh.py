"""A Junos CLI over SSH (paramiko server) in front of `junos_model.JunosDevice`, for netmiko.

What it models, because netmiko's `juniper_junos` driver and `edgepop netdev bootstrap --platform
junos` depend on it:
- password login for one user table; `root` lands in the FreeBSD shell (`root@:RE:0% `) of a
  factory-fresh box and `cli` starts the CLI there, every other user lands in the CLI;
- the operational prompt `user@host> ` and, after `configure` ("Entering configuration mode",
  `[edit]`), the configuration prompt `user@host# ` with its `[edit]` line; the host is the
  committed `system host-name` (the device's default name without one);
- the `set cli screen-width N` / `screen-length 0` / `complete-on-space off` answers netmiko
  waits for; `show version` as text in the layout ntc-templates' TextFSM template parses;
  `show configuration [PATH] [| display set]` of the committed config (nothing when the path is
  not configured); `exit`/`quit`;
- in configuration mode, on the one shared candidate of the device (the one NETCONF edits):
  `set PATH` and `delete PATH`, `show | compare`, `commit` ("commit complete"), `commit and-quit`
  (commits and returns to operational mode), `rollback 0` (drops uncommitted changes),
  `exit configuration-mode`/`exit`/`quit` (asks "Exit with uncommitted changes?" when the
  candidate differs; `yes` leaves, keeping them in the candidate, as Junos does), and `run CMD`;
- refusals as Junos words them: statements the device rejects (`JunosDevice.reject`) print
  "syntax error." and are not loaded; a commit while another session holds the exclusive lock
  prints "error: configuration database locked" and commits nothing; unknown operational
  commands print "unknown command.".

`set PATH` turns the words into hierarchy one word per level, with the last word the leaf,
except that a word followed by a number joins it (`unit 0`) and that the keywords in
`LEAF_VALUES` (`host-name NAME`, `address A/L` …) form the leaf with their value: enough for
`set system services netconf ssh` and simple paths, not Junos's grammar.

What it does not model: Junos syntax (any path is accepted), keys and keyboard-interactive login,
`edit`/`up`/`top` navigation, `configure private|exclusive`, `commit confirmed`/`check`,
`rollback N` above 0, `load`, pipes other than `| display set`, completion, paging, more than one
command per line, and anything `junos_model` leaves out.
"""

from __future__ import annotations

from typing import Any

from sims.eos_ssh import SshServer
from sims.junos_model import JunosDevice, Node
from sims.junos_netconf import MODEL, VERSION

LEAF_VALUES = {
    "host-name",
    "address",
    "mtu",
    "description",
    "peer-as",
    "local-address",
    "router-id",
    "autonomous-system",
}
"""Keywords whose statement is `keyword value;` rather than a level of hierarchy."""

SHELL_PROMPT = "root@:RE:0% "


def set_path(words: list[str]) -> list[str]:
    """`set` words as hierarchy levels, the last one the leaf statement."""
    levels: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in LEAF_VALUES and i + 2 == len(words):
            levels.append(f"{word} {words[i + 1]}")
            break
        if i + 1 < len(words) and words[i + 1][:1].isdigit() and i + 2 < len(words):
            levels.append(f"{word} {words[i + 1]}")
            i += 2
            continue
        levels.append(word)
        i += 1
    return levels


def as_text(levels: list[str], leaf_prefix: str = "") -> str:
    """Curly-brace text for one statement at `levels` (the last is the leaf)."""
    head = "".join(f"{level} {{ " for level in levels[:-1])
    return f"{head}{leaf_prefix}{levels[-1]}; " + "} " * (len(levels) - 1)


def set_lines(node: Node, path: list[str]) -> list[str]:
    """`| display set`: one `set` line per leaf and per empty block under `node`."""
    assert node.children is not None
    out: list[str] = []
    for child in node.children.values():
        here = [*path, child.words]
        if child.children is None or not child.children:
            out.append("set " + " ".join(here))
        else:
            out.extend(set_lines(child, here))
    return out


def locate(root: Node, words: list[str]) -> tuple[Node | None, list[str]]:
    """The statement a `show configuration` path names (block headers may be several words)."""
    node: Node | None = root
    path: list[str] = []
    i = 0
    while i < len(words):
        if node is None or node.children is None:
            return None, path
        for take in range(len(words) - i, 0, -1):
            wanted = " ".join(words[i : i + take])
            hit = next((c for c in node.children.values() if c.words == wanted), None)
            if hit is not None:
                node, i = hit, i + take
                path.append(wanted)
                break
        else:
            return None, path
    return node, path


class JunosShell:
    """One SSH session: shell or CLI, operational or configuration mode."""

    def __init__(self, dev: JunosDevice, user: str) -> None:
        self.dev = dev
        self.user = user
        self.in_shell = user == "root"
        self.config = False
        self.confirm_exit = False

    def prompt(self) -> str:
        if self.confirm_exit:
            return ""  # the question is the prompt
        if self.in_shell:
            return SHELL_PROMPT
        host = self.dev.hostname()
        if self.config:
            return f"\r\n[edit]\r\n{self.user}@{host}# "
        return f"{self.user}@{host}> "

    def show_version(self) -> str:
        return (
            f"Hostname: {self.dev.hostname()}\nModel: {MODEL}\nJunos: {VERSION}\n"
            f"JUNOS OS Kernel 64-bit  [20231116.1b2c3d4_builder_stable_12]\n"
            f"JUNOS OS libs [20231116.1b2c3d4_builder_stable_12]\n"
            f"JUNOS Routing Software Suite [{VERSION}]\n"
        )

    def show_configuration(self, args: str) -> str:
        display_set = False
        if "|" in args:
            args, pipe = (part.strip() for part in args.split("|", 1))
            if pipe != "display set":
                return f"error: unsupported pipe: {pipe}\n"
            display_set = True
        with self.dev.lock:
            node, path = locate(self.dev.running, args.split())
            if node is None:
                return ""
            if node.children is None:
                return f"set {' '.join(path)}\n" if display_set else f"{node.words};\n"
            if display_set:
                return "".join(line + "\n" for line in set_lines(node, path))
            return "".join(line + "\n" for child in node.children.values() for line in child.text())

    def run(self, line: str) -> str | None:
        cmd = " ".join(line.split())
        with self.dev.lock:
            if cmd:
                self.dev.log.append(f"cli {self.user} {cmd}")
        if self.in_shell:
            if cmd == "cli":
                self.in_shell = False
                return ""
            if cmd in ("exit", "logout"):
                return None
            return "" if not cmd else f"sh: {cmd.split()[0]}: not found\n"
        if self.confirm_exit:
            self.confirm_exit = False
            if cmd in ("", "yes"):
                self.config = False
                return "Exiting configuration mode\n"
            return ""
        if not cmd:
            return ""
        if self.config:
            return self._configure(cmd)
        return self._operational(cmd)

    def _operational(self, cmd: str) -> str | None:
        if cmd in ("exit", "quit"):
            return None
        if cmd.startswith("set cli screen-width "):
            return f"Screen width set to {cmd.split()[-1]}\n"
        if cmd == "set cli screen-length 0":
            return "Screen length set to 0\n"
        if cmd == "set cli complete-on-space off":
            return "Disabling complete-on-space\n"
        if cmd in ("show version", "show ver"):
            return self.show_version()
        if cmd == "show configuration" or cmd.startswith("show configuration "):
            return self.show_configuration(cmd.removeprefix("show configuration").strip())
        if cmd in ("configure", "edit"):
            self.config = True
            return "Entering configuration mode\n"
        return f"{' ' * len(cmd)}^\nunknown command.\n"

    def _configure(self, cmd: str) -> str:
        dev = self.dev
        words = cmd.split()
        if cmd in ("exit", "quit", "exit configuration-mode"):
            with dev.lock:
                changed = dev.candidate_modified()
            if changed:
                self.confirm_exit = True
                return (
                    "The configuration has been changed but not committed\n"
                    "Exit with uncommitted changes? [yes,no] (yes) "
                )
            self.config = False
            return "Exiting configuration mode\n"
        if words[0] == "run":
            out = self._operational(" ".join(words[1:]))
            return out or ""
        if cmd == "show | compare":
            return dev.compare()
        if cmd == "rollback 0":
            dev.load_rollback(0)
            return "load complete\n"
        if words[0] == "commit":
            return self._commit(words[1:])
        if words[0] in ("set", "delete") and len(words) > 1:
            levels = set_path(words[1:])
            if words[0] == "delete":
                text = as_text(levels, "delete: ") if len(levels) > 1 else f"delete: {levels[0]};"
            else:
                text = as_text(levels)
            errors = dev.load(text, "merge")
            if errors:
                return "syntax error.\n"
            return ""
        return f"{' ' * len(cmd)}^\nsyntax error.\n"

    def _commit(self, args: list[str]) -> str:
        dev = self.dev
        if args not in ([], ["and-quit"]):
            return f"{' ' * 7}^\nsyntax error.\n"
        with dev.lock:
            if dev.holder is not None:
                return (
                    "error: configuration database locked by:\n"
                    f"  netconf session {dev.holder}\n"
                    "error: commit failed: (configuration database locked)\n"
                )
            dev.commit(comment=f"cli {self.user}")
        if args == ["and-quit"]:
            self.config = False
            return "commit complete\nExiting configuration mode\n"
        return "commit complete\n"


class JunosSshServer(SshServer):
    """The Junos CLI on an ephemeral port of 127.0.0.1 (see `SshServer`)."""

    def __init__(self, device: JunosDevice, users: dict[str, str] | None = None) -> None:
        super().__init__(device, users or {"admin": "admin"})

    def make_shell(self, username: str) -> Any:
        return JunosShell(self.device, username)
