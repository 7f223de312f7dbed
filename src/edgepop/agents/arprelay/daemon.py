"""arprelay's processes.

Relay: reads the switch's table (netlink events, or eAPI every poll interval), keeps the providers'
entries, and serves the versioned mapping (server.py). Host: long-polls the relay and applies each
new complete mapping with `edgepop.nexthop` (the provider_nexthop module's code), then keeps it in
its state file. A host that cannot reach the relay, or gets an incomplete mapping, keeps what it
has: forwarding never depends on the relay being up. On start a host applies its state file first,
so a rebooted server forwards before the relay answers.

SIGTERM/SIGINT stop either process. Neither removes anything on the way out: the next hops are what
the servers forward with, and taking them away would cut traffic that does not need the agent.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

from edgepop.agents.arprelay.config import HostConfig, RelayConfig
from edgepop.agents.arprelay.core import HostState, Mapping, RelayState
from edgepop.agents.arprelay.server import RelayServer
from edgepop.agents.arprelay.sources import EapiSource, NetlinkSource, Source, SourceError
from edgepop.agents.healthd.logs import get_logger
from edgepop.arp_table import provider_nexthops
from edgepop.nexthop import Nexthop, NexthopError, converge


class Stopped(Exception):
    """SIGTERM or SIGINT: raised out of whatever the process waits on (a long poll, say)."""


class _Stop:
    def __init__(self) -> None:
        self.event = threading.Event()

    def install(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            del signum, frame
            self.event.set()
            raise Stopped

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


class RelayDaemon:
    def __init__(self, config: RelayConfig, source: Source | None = None) -> None:
        self.config = config
        self.log = get_logger(agent="arprelay", role="relay")
        self.state = RelayState(remove_after_s=config.remove_after_s)
        self.providers = [p.model_dump() for p in config.providers]
        self._source = source
        self.stop = _Stop()
        token = config.token.get_secret_value() if config.token else None
        self.server = RelayServer(self.state, config.listen, config.port, token, config.max_wait_s)

    def _open_source(self) -> Source:
        if self._source is not None:
            return self._source
        if self.config.source == "eapi":
            assert self.config.eapi is not None
            return EapiSource(self.config.eapi, self.config.poll_interval_ms / 1000)
        return NetlinkSource()

    def step(self, source: Source) -> None:
        try:
            entries = source.read()
        except SourceError as exc:
            if self.state.source_failed():
                self.log.warning("cannot read the switch's table: serving the mapping as incomplete", error=str(exc))
            return
        nexthops, missing = provider_nexthops(entries, self.providers)
        before = {dict(n)["address"]: dict(n)["mac"] for n in self.state.mapping.nexthops}
        if self.state.observe(nexthops):
            m = self.state.mapping
            after = {dict(n)["address"]: dict(n)["mac"] for n in m.nexthops}
            for addr in sorted(set(before) | set(after)):
                if before.get(addr) != after.get(addr):
                    self.log.info("next hop changed", address=addr, before=before.get(addr), after=after.get(addr),
                                  version=m.version)  # fmt: skip
            self.log.debug("mapping", version=m.version, complete=m.complete, missing=",".join(missing))

    def run(self) -> int:
        self.stop.install()
        source = self._open_source()
        self.server.start()
        self.log.info("serving", listen=self.config.listen, port=self.server.port, providers=len(self.providers),
                      source=self.config.source)  # fmt: skip
        try:
            while not self.stop.event.is_set():
                self.step(source)
                poll = self.config.poll_interval_ms / 1000
                timeout = self.config.resync_s if self.config.source == "netlink" else poll
                if self.state.pending_removals():
                    timeout = min(timeout, max(self.config.remove_after_s / 2, 0.05))
                source.wait(timeout)
        except Stopped:
            pass
        finally:
            self.server.stop()
            source.close()
            self.log.info("stopped", version=self.state.mapping.version)
        return os.EX_OK


def nexthops_for_host(m: Mapping, config: HostConfig) -> list[Nexthop]:
    """The mapping's entries this host can use: those of a family it has a local address for."""
    out = []
    for item in m.nexthops:
        n = dict(item)
        local = config.local_v6 if ":" in str(n["address"]) else config.local_v4
        if local is None:
            continue
        out.append(Nexthop(str(n["provider"]), str(n["address"]), str(n["mac"]).lower(), config.interface, local,
                           int(n["table"])))  # fmt: skip
    return sorted(out)


class HostDaemon:
    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.log = get_logger(agent="arprelay", role="host")
        self.state = HostState()
        self.stop = _Stop()
        self.seen: Mapping | None = None  # the relay's last answer, applied or not

    # --- the state file: the last good mapping, as applied -------------------------------------

    def load_state(self) -> Mapping | None:
        path = Path(self.config.state_file)
        try:
            return Mapping.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            self.log.warning("ignoring an unreadable state file", path=str(path), error=str(exc))
            return None

    def save_state(self, m: Mapping) -> None:
        path = Path(self.config.state_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {**m.to_json(), "interface": self.config.interface}
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(path)

    def apply(self, m: Mapping) -> bool:
        """Make the host match `m`; True when it does (changed or not)."""
        try:
            result = converge(nexthops_for_host(m, self.config), self.config.settings, netns=self.config.netns)
        except NexthopError as exc:
            self.log.error("cannot apply the mapping: keeping what the host has", version=m.version, error=str(exc))
            return False
        for command in result.commands:
            self.log.info("applied", command=command, version=m.version)
        self.state.applied = m
        self.save_state(m)
        return True

    # --- the relay ------------------------------------------------------------------------------

    def fetch(self, wait: float) -> Mapping | None:
        """The relay's mapping if it differs from the last one seen, None when nothing changed in `wait`."""
        query: dict[str, Any] = {"wait": f"{wait:g}"}
        if self.seen is not None:
            query.update(epoch=self.seen.epoch, version=self.seen.version)
        url = f"{self.config.relay_url}?{urllib.parse.urlencode(query)}"
        headers = {}
        if self.config.token is not None:
            headers["Authorization"] = f"Bearer {self.config.token.get_secret_value()}"
        req = urllib.request.Request(url, headers=headers)
        ctx = None
        if url.startswith("https"):
            import ssl

            ctx = ssl.create_default_context(cafile=self.config.ca_file)
        try:
            with urllib.request.urlopen(req, timeout=wait + 5, context=ctx) as resp:
                if resp.status == 304:
                    return None
                m = Mapping.from_json(json.loads(resp.read(16 << 20)))
        except urllib.error.HTTPError as exc:
            if exc.code == 304:
                return None
            raise
        self.seen = m
        return m

    def step(self, wait: float) -> None:
        m = self.fetch(wait)
        if m is None:
            if self.state.applied is not None:  # nothing new: repair any drift (an entry deleted by hand)
                self.apply(self.state.applied)
            return
        if self.state.wants(m):
            self.apply(m)
        elif not m.complete:
            self.log.warning("the relay's mapping is incomplete: keeping the last good one", version=m.version)

    def run(self) -> int:
        self.stop.install()
        kept = self.load_state()
        if kept is not None:
            self.log.info("applying the last good mapping", version=kept.version)
            self.apply(kept)
        failing = False
        try:
            while not self.stop.event.is_set():
                try:
                    self.step(self.config.long_poll_s)
                    if failing:
                        self.log.info("relay reachable again", url=self.config.relay_url)
                    failing = False
                except (OSError, ValueError) as exc:
                    if not failing:
                        self.log.warning("relay unreachable: keeping the last good mapping",
                                         url=self.config.relay_url, error=str(exc))  # fmt: skip
                    failing = True
                    self.stop.event.wait(self.config.retry_s)
        except Stopped:
            pass
        self.log.info("stopped")
        return os.EX_OK
