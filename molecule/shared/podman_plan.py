"""Plan the Molecule platforms as lab boxes: podman command lines and the cables between them.

create.yml runs this and carries the plan out, so the Molecule boxes are started with the lab's own
podman flags (`edgepop.image.container`) and cabled exactly as `edgepop lab up` cables the same
devices (`edgepop.lab.topology`): same interface names, same MACs, same per-kind sysctls. Only the
platforms Molecule declares are planned, and only the cables whose two ends are both platforms.

Pure: reads the inventory and a JSON spec on stdin, prints the plan as JSON on stdout, touches
nothing. Spec: {"inventory", "platforms": [names], "tag", "network", "subnet", "gateway" (the host's
address there; the boxes get the next free ones, in platform order), "key" (private key; its .pub is
mounted), "label", "prefix"}. Plan: {"boxes": [{name,
container, argv, instance}], "links": [{a, b}], "ends": [every link end]}, where `instance` is the
box's entry of Molecule's instance config and each end is {node, container, ifname, mac}.
"""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path
from typing import Any

from edgepop.image.container import podman_run_argv
from edgepop.lab.topology import Endpoint, build_topology
from edgepop.validate import validate_inventory


def plan(spec: dict[str, Any]) -> dict[str, Any]:
    report = validate_inventory(Path(spec["inventory"]))
    if report.model is None:
        raise SystemExit(f"inventory {spec['inventory']} is invalid:\n{report.format()}")
    topo = build_topology(report.model)
    known = {node.name: node for node in topo.nodes}
    names: list[str] = list(spec["platforms"])
    unknown = [name for name in names if name not in known]
    if unknown:
        raise SystemExit(f"platforms {', '.join(unknown)} are not devices of the lab built from {spec['inventory']}")
    free = [str(ip) for ip in ipaddress.ip_network(spec["subnet"]).hosts() if str(ip) != spec["gateway"]]
    if len(free) < len(names):
        raise SystemExit(f"{len(names)} platforms do not fit into {spec['subnet']}")

    boxes = []
    for name, address in zip(names, free, strict=False):
        container = f"{spec['prefix']}{name}"
        argv = podman_run_argv(
            container,
            spec["tag"],
            # the management interface keeps podman's name (eth0): the inventory's own management
            # NIC (mgmt0, with the lab's address) must never be the path Molecule logs in over
            network=f"{spec['network']}:ip={address}",
            authorized_keys=Path(f"{spec['key']}.pub"),
            labels=[spec["label"], f"{spec['label'].split('=')[0]}.node={name}"],
            sysctls=known[name].sysctls,
        )
        argv[argv.index("--hostname") + 1] = name
        instance = {"instance": name, "address": address, "user": "root", "port": 22, "identity_file": spec["key"]}
        boxes.append({"name": name, "container": container, "argv": argv, "instance": instance})

    wanted = set(names)
    links = [
        {"a": _end(link.a, spec["prefix"]), "b": _end(link.b, spec["prefix"])}
        for link in topo.links
        if link.a.node in wanted and link.b.node in wanted
    ]
    ends = [link[side] for link in links for side in ("a", "b")]
    return {"boxes": boxes, "links": links, "ends": ends}


def _end(end: Endpoint, prefix: str) -> dict[str, str | None]:
    return {"node": end.node, "container": f"{prefix}{end.node}", "ifname": end.ifname, "mac": end.mac}


if __name__ == "__main__":
    json.dump(plan(json.load(sys.stdin)), sys.stdout, indent=1)
    sys.stdout.write("\n")
