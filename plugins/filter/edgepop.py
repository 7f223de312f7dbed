"""Jinja filters over edgepop's pure library, for roles that build several files from one template.

`sc | edgepop_render('networkd/server.yml.j2')` renders a shared template with the host's structured
config. It refuses output that holds a secret placeholder: files with secrets go through the
`edgepop_render` action, which resolves them without putting plaintext into variables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError

_SRC = Path(__file__).resolve().parents[2] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.append(str(_SRC))


def edgepop_render(sc: dict[str, Any], template: str) -> str:
    from edgepop.templating import render_template

    text = render_template(template, sc=dict(sc))
    if "<vault:" in text:
        raise AnsibleFilterError(f"{template} renders a secret: use the edgepop_render action for it")
    return text


def bird_not_established(text: str) -> list[str]:
    from edgepop.bird.parse import bgp_not_established

    return bgp_not_established(str(text))


def bird_protocol_states(text: str) -> dict[str, str]:
    from edgepop.bird.parse import protocol_states

    return protocol_states(str(text))


def kernel_nexthops(route_json: list[dict[str, Any]]) -> list[str]:
    from edgepop.bird.parse import kernel_nexthops as parse

    return parse(list(route_json))


def expected_nexthops(servers: list[dict[str, Any]], service: str, family: int = 4) -> list[str]:
    from edgepop.bird.parse import expected_nexthops as expect

    return expect([dict(s) for s in servers], str(service), int(family))


class FilterModule:
    def filters(self) -> dict[str, Callable[..., Any]]:
        return {
            "edgepop_render": edgepop_render,
            "bird_not_established": bird_not_established,
            "bird_protocol_states": bird_protocol_states,
            "kernel_nexthops": kernel_nexthops,
            "expected_nexthops": expected_nexthops,
        }
