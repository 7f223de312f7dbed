"""Where the relay reads the switch's neighbour table: a Linux switch's kernel (netlink, event
driven) or an EOS switch's eAPI (polled). Both return NAPALM-shaped entries `{ip, mac, interface}`,
matched to the providers by `edgepop.arp_table` (the arista_arp_facts module's code)."""

from __future__ import annotations

import base64
import json
import select
import socket
import ssl
import urllib.error
import urllib.request
from typing import Any, Protocol

from edgepop.agents.arprelay.config import Eapi
from edgepop.arp_table import ArpError, eapi_entries

NETLINK_ROUTE = 0
RTMGRP_NEIGH = 0x4
# states in which the kernel knows the neighbour's MAC (FAILED and INCOMPLETE do not)
_VALID = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80  # REACHABLE STALE DELAY PROBE NOARP PERMANENT


class SourceError(Exception):
    """The table could not be read; the message says why."""


class Source(Protocol):
    def read(self) -> list[dict[str, Any]]: ...

    def wait(self, timeout: float) -> None:
        """Return after `timeout` seconds, or earlier when the table may have changed."""

    def close(self) -> None: ...


class NetlinkSource:
    """The kernel's neighbour table (IPv4 ARP and IPv6 ND), re-read on every neighbour event."""

    def __init__(self) -> None:
        from pyroute2 import IPRoute

        self._ipr = IPRoute()
        self._events = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._events.bind((0, RTMGRP_NEIGH))
        self._events.setblocking(False)

    def read(self) -> list[dict[str, Any]]:
        try:
            links = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ipr.get_links()}
            out = []
            for n in self._ipr.get_neighbours():
                if not n["state"] & _VALID or not n.get_attr("NDA_LLADDR"):
                    continue
                out.append(
                    {"ip": n.get_attr("NDA_DST"), "mac": n.get_attr("NDA_LLADDR"), "interface": links.get(n["ifindex"])}
                )
            return out
        except OSError as exc:
            raise SourceError(f"netlink: {exc}") from None

    def wait(self, timeout: float) -> None:
        ready, _, _ = select.select([self._events], [], [], timeout)
        if ready:
            while True:  # drain: one re-read covers every event so far
                try:
                    self._events.recv(65536)
                except BlockingIOError:
                    break

    def close(self) -> None:
        self._events.close()
        self._ipr.close()


class EapiSource:
    """`show arp vrf all` and `show ipv6 neighbors` over eAPI, every `interval` seconds."""

    def __init__(self, eapi: Eapi, interval: float) -> None:
        self.eapi = eapi
        self.interval = interval
        self._ctx: ssl.SSLContext | None = None
        if eapi.url.startswith("https"):
            self._ctx = ssl.create_default_context(cafile=eapi.ca_file)
            if not eapi.verify_tls:
                self._ctx.check_hostname = False
                self._ctx.verify_mode = ssl.CERT_NONE
        creds = f"{eapi.username}:{eapi.password.get_secret_value()}".encode()
        self._auth = "Basic " + base64.b64encode(creds).decode()
        self._id = 0

    def run_cmds(self, cmds: list[str]) -> list[Any]:
        self._id += 1
        body = {"jsonrpc": "2.0", "method": "runCmds", "params": {"version": 1, "cmds": cmds, "format": "json"}}
        body["id"] = f"arprelay-{self._id}"
        req = urllib.request.Request(
            self.eapi.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": self._auth},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=self.eapi.timeout_s, context=self._ctx) as resp:
                answer = json.loads(resp.read(16 << 20))
        except urllib.error.HTTPError as exc:
            raise SourceError(f"eAPI {self.eapi.url}: HTTP {exc.code} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"eAPI {self.eapi.url}: {exc}") from None
        if "error" in answer:
            err = answer["error"]
            raise SourceError(f"eAPI {self.eapi.url}: {err.get('message', err)}")
        result = answer.get("result")
        if not isinstance(result, list) or len(result) != len(cmds):
            raise SourceError(f"eAPI {self.eapi.url}: unexpected answer {str(answer)[:200]}")
        return result

    def read(self) -> list[dict[str, Any]]:
        arp, nd = self.run_cmds(["show arp vrf all", "show ipv6 neighbors"])
        try:
            return eapi_entries(arp, self.eapi.vrf) + eapi_entries(nd, self.eapi.vrf)
        except ArpError as exc:
            raise SourceError(f"eAPI {self.eapi.url}: {exc}") from None

    def wait(self, timeout: float) -> None:
        select.select([], [], [], min(timeout, self.interval))

    def close(self) -> None:
        pass
