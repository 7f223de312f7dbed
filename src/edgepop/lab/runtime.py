"""Run a PoP inventory as a lab on this machine: podman containers, veth cables, a small internet.

`up` builds (or reuses) the project's image, starts one systemd container per device on an
`--internal` management network (the host reaches it for SSH; nothing is forwarded off the
machine), cables the data ports with veth pairs exactly as the inventory says, and brings up the
lab's providers and client. The PoP's own devices are left bare, as a new PoP would be: converging
them is the playbooks' job. `down` removes everything `up` made, found by label and by the state
file, so it also cleans up after an `up` that failed half-way.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edgepop.image.build import build_rootfs, import_container_image
from edgepop.image.container import podman_run_argv
from edgepop.lab.topology import LabError, LabTopology, Link, Node, Provider, build_topology
from edgepop.model.pop import PopModel
from edgepop.render import render_template

LABEL = "edgepop.lab"
Log = Callable[[str], None]


def container_name(pop: str, node: str) -> str:
    return f"edgepop-{pop}-{node}"


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed (run `make setup`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}\n  " + "\n  ".join(tail))
    return proc.stdout


@dataclass
class LabPaths:
    """Where a lab keeps its state: key pair, state file, image cache."""

    root: Path
    pop: str

    @property
    def dir(self) -> Path:
        return self.root / "lab" / self.pop

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def image_cache(self) -> Path:
        return self.root / "image"


class Lab:
    """One lab PoP on this machine."""

    def __init__(self, model: PopModel, cache_root: Path, log: Log = print) -> None:
        self.model = model
        self.topo: LabTopology = build_topology(model)
        self.paths = LabPaths(cache_root, model.pop.name)
        self.log = log
        self.network = f"edgepop-{model.pop.name}-mgmt"
        self.nft_table = f"edgepop_lab_{model.pop.name.replace('-', '_')}"

    # --- state ---------------------------------------------------------------------------------

    def _state(self) -> dict[str, list[str]]:
        if self.paths.state.is_file():
            data: dict[str, list[str]] = json.loads(self.paths.state.read_text())
            return data
        return {"host_links": []}

    def _save_state(self, state: dict[str, list[str]]) -> None:
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.state.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.paths.state)

    # --- up ------------------------------------------------------------------------------------

    def up(self, *, wait_ssh: float = 120.0) -> None:
        if os.geteuid() != 0:
            raise LabError("the lab needs root (network namespaces, veths, nftables)")
        for tool in ("podman", "nft", "ip", "nsenter", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise LabError(f"{tool} is not installed (run `make setup`)")
        if self._containers():
            raise LabError(f"lab {self.model.pop.name} is already up (run `edgepop lab down` first)")
        started = time.monotonic()
        tag = self._image()
        self._keypair()
        bridge = self._mgmt_network()
        self._guard(bridge)
        for node in self.topo.nodes:
            self._start(node, tag)
        pids = {n.name: self._pid(n.name) for n in self.topo.nodes}
        for link in self.topo.links:
            self._cable(link, pids)
        for prov in self.topo.providers:
            self._provider(prov, pids)
        if self.topo.client is not None:
            self._client(pids)
        self._wait_ssh(wait_ssh)
        self.log(
            f"lab {self.model.pop.name} up: {len(self.topo.nodes)} containers, "
            f"{len(self.topo.links)} links ({time.monotonic() - started:.1f} s)"
        )

    def _image(self) -> str:
        self.log("image: building or reusing the edgepop container image")
        tarball = build_rootfs("container", self.paths.image_cache)
        return import_container_image(tarball)

    def _keypair(self) -> None:
        if self.paths.key.is_file():
            return
        self.paths.dir.mkdir(parents=True, exist_ok=True)
        _run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"edgepop-lab-{self.model.pop.name}",
                "-f",
                str(self.paths.key),
            ]
        )

    def _mgmt_network(self) -> str:
        net = ipaddress.ip_network(self.topo.mgmt_subnet)
        gateway = str(net[1])
        taken = {n.mgmt_ip for n in self.topo.nodes}
        if gateway in taken:
            raise LabError(f"{gateway} is the lab host's own address on the management network; no device may use it")
        self.log(f"network: {self.network} {net} (internal; the host is {gateway})")
        _run(
            [
                "podman",
                "network",
                "create",
                "--internal",
                "--subnet",
                str(net),
                "--gateway",
                gateway,
                "--label",
                f"{LABEL}={self.model.pop.name}",
                self.network,
            ]
        )
        return _run(["podman", "network", "inspect", self.network, "--format", "{{.NetworkInterface}}"]).strip()

    def _guard(self, bridge: str) -> None:
        """Nothing that enters the host from the lab's bridge is forwarded anywhere else (podman
        disables IPv4 forwarding on internal networks, but not IPv6)."""
        rules = (
            f"table inet {self.nft_table} {{\n"
            f"  chain forward {{\n"
            f"    type filter hook forward priority filter; policy accept;\n"
            f'    iifname "{bridge}" oifname != "{bridge}" counter drop\n'
            f'    oifname "{bridge}" iifname != "{bridge}" counter drop\n'
            f"  }}\n}}\n"
        )
        _run(["nft", "-f", "-"], input=rules)

    def _start(self, node: Node, tag: str) -> None:
        name = container_name(self.model.pop.name, node.name)
        if node.mgmt_ip is not None:
            opts = [f"ip={node.mgmt_ip}", "interface_name=mgmt0"]
            if node.mgmt_mac:
                opts.append(f"mac={node.mgmt_mac}")
            network = f"{self.network}:{','.join(opts)}"
        else:
            network = "none"
        argv = podman_run_argv(
            name,
            tag,
            network=network,
            authorized_keys=self.paths.key.with_suffix(".pub"),
            labels=[f"{LABEL}={self.model.pop.name}", f"{LABEL}.node={node.name}", f"{LABEL}.role={node.role}"],
            sysctls=node.sysctls,
        )
        argv[argv.index("--hostname") + 1] = node.name
        self.log(f"start: {node.name} ({node.role}{', ' + node.mgmt_ip if node.mgmt_ip else ''})")
        _run(argv)

    def _pid(self, node: str) -> int:
        name = container_name(self.model.pop.name, node)
        return int(_run(["podman", "inspect", "--format", "{{.State.Pid}}", name]).strip())

    def _cable(self, link: Link, pids: dict[str, int]) -> None:
        digest = hashlib.sha1(f"{self.model.pop.name}:{link}".encode()).hexdigest()[:8]
        tmp_a, tmp_b = f"ep{digest}a", f"ep{digest}b"
        state = self._state()
        state["host_links"] = sorted({*state["host_links"], tmp_a, tmp_b})
        self._save_state(state)
        _run(["ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b])
        for tmp, end in ((tmp_a, link.a), (tmp_b, link.b)):
            pid = str(pids[end.node])
            _run(["ip", "link", "set", tmp, "netns", pid])
            cmd = ["nsenter", "-t", pid, "-n", "ip", "link", "set", tmp, "name", end.ifname]
            if end.mac:
                cmd += ["address", end.mac]
            _run(cmd)
            _run(["nsenter", "-t", pid, "-n", "ip", "link", "set", end.ifname, "up"])

    def _in(self, node: str, pids: dict[str, int], *argv: str) -> str:
        return _run(["nsenter", "-t", str(pids[node]), "-n", *argv])

    def _exec(self, node: str, *argv: str, input: str | None = None) -> str:
        return _run(["podman", "exec", "-i", container_name(self.model.pop.name, node), *argv], input=input)

    def _provider(self, prov: Provider, pids: dict[str, int]) -> None:
        self.log(
            f"internet: {prov.name} AS{prov.asn} announces "
            f"{len(prov.prefixes_v4)} IPv4 + {len(prov.prefixes_v6)} IPv6 prefixes"
        )
        for addr in (prov.address_v4, prov.address_v6):
            if addr:
                self._in(prov.name, pids, "ip", "addr", "add", addr, "dev", prov.ifname)
        if self.topo.client is not None and self.topo.client.provider == prov.name:
            for addr in (prov.client_link_v4, prov.client_link_v6):
                if addr:
                    self._in(prov.name, pids, "ip", "addr", "add", addr, "dev", "eth-client")
        password = self._secret(prov.password_ref) if prov.password_ref else None
        conf = render_template(
            "lab/provider-bird.conf.j2",
            prov=prov,
            password=password,
            pop_asn=self.model.pop.asn,
            accept_v4=self.model.pop.ranges.anycast_v4,
            accept_v6=self.model.pop.ranges.anycast_v6,
        )
        self._exec(prov.name, "sh", "-c", "cat > /etc/bird/bird.conf", input=conf)
        self._exec(prov.name, "bird", "-p", "-c", "/etc/bird/bird.conf")
        self._exec(prov.name, "systemctl", "enable", "--now", "bird.service")

    def _client(self, pids: dict[str, int]) -> None:
        client = self.topo.client
        assert client is not None
        self.log(f"internet: client {client.address_v4.split('/')[0]} behind {client.provider}")
        self._in(client.name, pids, "ip", "addr", "add", client.address_v4, "dev", "eth0")
        self._in(client.name, pids, "ip", "-6", "addr", "add", client.address_v6, "dev", "eth0", "nodad")
        self._in(client.name, pids, "ip", "route", "add", "default", "via", client.gateway_v4)
        self._in(client.name, pids, "ip", "-6", "route", "add", "default", "via", client.gateway_v6)

    def _secret(self, ref: str) -> str:
        """Decrypt a provider's session password so the lab's provider can use the same one."""
        from edgepop.lab.vault import resolve_secret

        return resolve_secret(self.model, ref)

    def _wait_ssh(self, timeout: float) -> None:
        pending = {n.name: n.mgmt_ip for n in self.topo.nodes if n.mgmt_ip}
        self.log(f"ssh: waiting for {len(pending)} devices")
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for name, ip in list(pending.items()):
                try:
                    with socket.create_connection((str(ip), 22), timeout=1) as sock:
                        if sock.recv(4).startswith(b"SSH"):
                            del pending[name]
                except OSError:
                    pass
            if pending:
                time.sleep(0.3)
        if pending:
            raise LabError(f"sshd did not answer within {timeout:.0f} s on: {', '.join(sorted(pending))}")

    # --- down / status -------------------------------------------------------------------------

    def _containers(self) -> list[str]:
        out = _run(
            ["podman", "ps", "-a", "--filter", f"label={LABEL}={self.model.pop.name}", "--format", "{{.Names}}"],
            check=False,
        )
        return [line for line in out.split() if line]

    def down(self) -> None:
        """Remove every container, network, firewall table and host link the lab made. Idempotent."""
        names = self._containers()
        if names:
            self.log(f"remove: {len(names)} containers")
            _run(["podman", "rm", "--force", "--time", "3", *names], timeout=180)
        nets = _run(
            ["podman", "network", "ls", "--filter", f"label={LABEL}={self.model.pop.name}", "--format", "{{.Name}}"],
            check=False,
        ).split()
        for net in nets:
            self.log(f"remove: network {net}")
            _run(["podman", "network", "rm", "--force", net])
        if (
            subprocess.run(
                ["nft", "list", "table", "inet", self.nft_table], capture_output=True, check=False
            ).returncode
            == 0
        ):
            self.log(f"remove: nftables table {self.nft_table}")
            _run(["nft", "delete", "table", "inet", self.nft_table])
        state = self._state()
        for link in state.get("host_links", []):
            if Path(f"/sys/class/net/{link}").exists():
                _run(["ip", "link", "del", link], check=False)
        if self.paths.state.is_file():
            self.paths.state.unlink()

    def status(self) -> list[tuple[str, str, str]]:
        """(node, role, podman state) for every node of the topology."""
        rows = []
        for node in self.topo.nodes:
            name = container_name(self.model.pop.name, node.name)
            state = _run(["podman", "inspect", "--format", "{{.State.Status}}", name], check=False).strip()
            rows.append((node.name, node.role, state or "absent"))
        return rows
