"""Point-to-point cables between qemu guests: two multiqueue taps joined by tc mirred redirects.

A Linux bridge does not forward LACP frames (01:80:c2:00:00:02 is link-local), so a bridge between
two guests would hide exactly what an LACP proof needs. Instead every frame that enters one tap is
redirected out of the other with a u32 match-all filter on its ingress qdisc, both ways: a cable.
Taps are made `multi_queue` so the guests' NICs can have several queues (and interrupt vectors).

Every tap this module makes carries the caller's prefix; `delete()` removes exactly those.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

IFNAMSIZ = 15


class LinkError(RuntimeError):
    """An `ip`/`tc` command failed; carries the command and its stderr."""


def _run(*argv: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise LinkError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")


def redirect_argv(src: str, dst: str) -> list[list[str]]:
    """The tc commands that send every frame arriving on tap `src` out of tap `dst`."""
    return [
        ["tc", "qdisc", "add", "dev", src, "handle", "ffff:", "ingress"],
        # u32 "match u32 0 0" matches every frame; matchall/flower are not in every host kernel.
        [
            *("tc", "filter", "add", "dev", src, "parent", "ffff:", "protocol", "all"),
            *("u32", "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", dst),
        ],
    ]


@dataclass
class Cables:
    """Taps made by this object, and the cables between them; `delete()` undoes all of it."""

    taps: list[str] = field(default_factory=list)

    def tap(self, name: str) -> str:
        if len(name) > IFNAMSIZ:
            raise ValueError(f"tap name {name!r} is longer than {IFNAMSIZ} characters")
        _run("ip", "tuntap", "add", "dev", name, "mode", "tap", "multi_queue")
        self.taps.append(name)
        _run("ip", "link", "set", "dev", name, "up")
        return name

    def cable(self, a: str, b: str) -> None:
        """Join taps `a` and `b` (made with `tap()`) back to back."""
        for src, dst in ((a, b), (b, a)):
            for argv in redirect_argv(src, dst):
                _run(*argv)

    def delete(self) -> list[str]:
        """Delete every tap made here (their qdiscs go with them); return the errors, if any."""
        errors: list[str] = []
        for name in reversed(self.taps):
            try:
                _run("ip", "link", "del", "dev", name)
            except LinkError as exc:
                errors.append(str(exc))
        self.taps.clear()
        return errors


def leftover_taps(prefix: str, names: Sequence[str]) -> list[str]:
    """Names among `names` (e.g. /sys/class/net) that start with `prefix`."""
    return sorted(n for n in names if n.startswith(prefix))
