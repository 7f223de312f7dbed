"""Structured config -> text, for every device of a PoP. Pure functions over Jinja2 templates.

Which files a device gets depends only on its kind and platform (`outputs_for`). Templates live in
the repository's top-level `templates/` so the CLI and the Ansible roles render from the same source;
each device template includes one template per config section in a fixed order.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath
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


class RenderOutError(Exception):
    """The output directory cannot take this render: it holds files render did not write, or it is
    not a directory. Nothing has been written."""


class RenderPathError(RenderOutError):
    """A rendered path (from the inventory: device names) would land outside the output directory."""


def _checked_path(rel: str) -> PurePosixPath:
    """A rendered file's path, refused unless it is relative and stays inside the output directory
    (device names and manifest entries come from the inventory, so they are input, not trusted)."""
    path = PurePosixPath(rel)
    if not rel or "\\" in rel or "\0" in rel or path.is_absolute():
        raise RenderPathError(f"refusing to write {rel!r}: not a relative path")
    if any(part in ("", ".", "..") for part in rel.split("/")):
        raise RenderPathError(f"refusing to write {rel!r}: it would leave the output directory")
    if path.parts[0] == MANIFEST:
        raise RenderPathError(f"refusing to write {rel!r}: the name of render's own manifest")
    return path


def _previous_render(out_dir: Path) -> set[str]:
    """The files a previous render wrote into out_dir (its manifest); refuses a directory that holds
    anything else, so that replacing it loses nothing render did not make."""
    if out_dir.is_symlink():
        raise RenderOutError(f"{out_dir} is a symlink: give the directory it points to")
    if not out_dir.exists():
        return set()
    if not out_dir.is_dir():
        raise RenderOutError(f"{out_dir} exists and is not a directory")
    present: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(out_dir):  # symlinks are not followed: they are entries
        here = Path(dirpath).relative_to(out_dir)
        present.update((here / name).as_posix() for name in filenames)
        present.update((here / name).as_posix() for name in dirnames if os.path.islink(os.path.join(dirpath, name)))
    manifest = out_dir / MANIFEST
    if not present:
        return set()
    if not manifest.is_file() or manifest.is_symlink():
        raise RenderOutError(
            f"{out_dir} is not empty and holds no {MANIFEST}: not a previous render's output, refusing to replace it"
        )
    listed = set(manifest.read_text(encoding="utf-8").split())
    foreign = sorted(present - listed - {MANIFEST})
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise RenderOutError(f"{out_dir} holds files render did not write ({shown}): move them away first")
    return listed


def write_tree(files: dict[str, str], out_dir: Path) -> tuple[list[str], list[str]]:
    """Replace out_dir with exactly `files` (plus the manifest), all or nothing.

    out_dir belongs to render: it must be missing, empty, or a previous render's output (every file
    in it listed in its manifest). Every path is checked before anything is written. The new tree is
    built in a sibling temporary directory (same filesystem); unchanged files are hard links to the
    old ones, so they keep their modification time. Then the old directory is renamed aside, the new
    one renamed into place, and only then is the old one removed: a failure before the swap leaves
    out_dir exactly as it was. Returns (changed, removed) relative paths."""
    checked = {rel: _checked_path(rel) for rel in files}
    previous = _previous_render(out_dir)
    parent = out_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.render-", dir=parent))
    try:
        mode = out_dir.stat().st_mode & 0o7777 if out_dir.is_dir() else _default_dir_mode()
        changed: list[str] = []
        for rel in sorted(files):
            target = build.joinpath(*checked[rel].parts)
            old = out_dir.joinpath(*checked[rel].parts)
            data = files[rel].encode()
            target.parent.mkdir(parents=True, exist_ok=True)
            if rel in previous and _same_content(old, data):
                try:
                    os.link(old, target)
                    continue
                except OSError:
                    pass  # a filesystem without hard links: write the same bytes
            else:
                changed.append(rel)
            target.write_bytes(data)
        (build / MANIFEST).write_text("\n".join(sorted(files)) + "\n", encoding="utf-8")
        os.chmod(build, mode)
        _swap_into_place(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    removed = sorted(previous - set(files))
    return changed, removed


def _same_content(path: Path, data: bytes) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.read_bytes() == data
    except OSError:
        return False


def _default_dir_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o777 & ~umask


def _swap_into_place(build: Path, out_dir: Path) -> None:
    """Rename `build` to out_dir, keeping the old out_dir until the new one is in place."""
    if not out_dir.exists():
        os.rename(build, out_dir)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
    os.rmdir(aside)  # only the unique name is needed: rename() does not replace a directory that has files
    os.rename(out_dir, aside)
    try:
        os.rename(build, out_dir)
    except BaseException:
        os.rename(aside, out_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)
