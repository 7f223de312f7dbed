"""Structured config -> text, for every device of a PoP. Pure functions over Jinja2 templates.

Which files a device gets depends only on its kind and platform (`outputs_for`). Templates live in
the repository's top-level `templates/` so the CLI and the Ansible roles render from the same source;
each device template includes one template per config section in a fixed order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from edgepop.derive import StructuredConfig, derive_all
from edgepop.model.pop import PopModel
from edgepop.templating import SECRET_RE, render_template, swap_secrets, templates_dir

__all__ = ["SECRET_RE", "render_template", "swap_secrets", "templates_dir"]

MANIFEST = ".edgepop-render"


def outputs_for(sc: StructuredConfig) -> dict[str, str]:
    """File name -> template for one device."""
    kind = sc["kind"]
    if kind == "router":
        return (
            {"junos.conf": "junos/router.conf.j2"}
            if sc["platform"] == "junos"
            else {
                "bird.conf": "bird/router.conf.j2",
                "network.yml": "networkd/router.yml.j2",
                "pinning.nft": "nftables/router-pinning.nft.j2",
            }
        )
    if kind == "switch":
        return {"eos.cfg": "eos/switch.cfg.j2"} if sc["platform"] == "eos" else {"bird.conf": "bird/switch.conf.j2"}
    if kind == "server":
        return {
            "bird.conf": "bird/server.conf.j2",
            "network.yml": "networkd/server.yml.j2",
            "irq-plan.yml": "irq/plan.yml.j2",
        }
    if kind == "control":
        return {
            "dnsmasq-pxe.conf": "provisioning/dnsmasq.conf.j2",
            "boot.ipxe": "provisioning/boot.ipxe.j2",
            "provisiond.json": "provisioning/provisiond.json.j2",
        }
    return {}


def ipxe_scripts(sc: StructuredConfig) -> dict[str, str]:
    """`ipxe/<mac>.ipxe` for every boot NIC of every known server, and `ipxe/default.ipxe` for the
    rest; the MAC is written as iPXE's `${net0/mac:hexhyp}` prints it."""
    out = {"ipxe/default.ipxe": render_template("provisioning/host.ipxe.j2", sc={**sc, "boot_nic": None})}
    for host in sc["provisioning"]["dhcp_hosts"]:
        for mac in host["macs"]:
            name = f"ipxe/{mac.replace(':', '-')}.ipxe"
            out[name] = render_template("provisioning/host.ipxe.j2", sc={**sc, "boot_nic": {"host": host, "mac": mac}})
    return out


_Dumper: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: same text, 4x faster


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def render_device(sc: StructuredConfig) -> dict[str, str]:
    """Every file of one device, structured config included."""
    files = {"structured.yml": "---\n" + dump_yaml(sc)}
    for fname, template in outputs_for(sc).items():
        files[fname] = render_template(template, sc=sc)
    if sc["kind"] == "control":
        files.update(ipxe_scripts(sc))
    return files


def render_pop(model: PopModel) -> dict[str, str]:
    """Relative path -> content for the whole PoP: one folder per device plus summary.md."""
    configs = derive_all(model)
    out: dict[str, str] = {}
    for host, sc in configs.items():
        for fname, text in render_device(sc).items():
            out[f"{host}/{fname}"] = text
    out["summary.md"] = render_template("summary/pop.md.j2", model=model, configs=configs)
    return out


def write_tree(files: dict[str, str], out_dir: Path) -> tuple[list[str], list[str]]:
    """Write files that changed (atomically) and remove files a previous render wrote but this one
    does not. Returns (changed, removed) relative paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    previous = set(manifest.read_text().split()) if manifest.is_file() else set()
    changed: list[str] = []
    for rel, text in sorted(files.items()):
        target = out_dir / rel
        data = text.encode()
        if target.is_file() and hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        changed.append(rel)
    removed = sorted(previous - set(files))
    for rel in removed:
        stale = out_dir / rel
        if stale.is_file():
            stale.unlink()
        parent = stale.parent
        if parent != out_dir and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    new_manifest = "\n".join(sorted(files)) + "\n"
    if not manifest.is_file() or manifest.read_text() != new_manifest:
        manifest.write_text(new_manifest)
    return changed, removed
