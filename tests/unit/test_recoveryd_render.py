"""The recovery role's configuration template, rendered from the lab inventory with the role's
defaults, then loaded by recoveryd's own validator: the role and the agent cannot disagree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgepop.agents.recoveryd.config import parse_config
from edgepop.derive import derive_all
from edgepop.templating import render_template, swap_secrets
from edgepop.validate import load_valid

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "roles" / "recovery" / "defaults" / "main.yml"
# secrets with the characters that break naive YAML quoting
VAULT = {"vault_ipmi_password": "p'w\"d: #x", "vault_pdu_community": "c0mm'unity"}


def render(**settings: Any) -> tuple[str, str]:
    configs = derive_all(load_valid(ROOT / "inventory" / "lab"))
    defaults = yaml.safe_load(DEFAULTS.read_text())
    rc = {key.removeprefix("recovery__"): value for key, value in defaults.items()}
    rc.update(settings)
    rc["servers"] = [sc for sc in configs.values() if sc["kind"] == "server"]
    text = render_template("recovery/recoveryd.yml.j2", sc={**configs["ctl1"], "recovery": rc})
    resolved, _secret = swap_secrets(text, lambda expr: VAULT[expr])
    return text, resolved


def test_lab_config_validates_and_keeps_secrets_as_placeholders() -> None:
    text, resolved = render()
    assert "<vault:vault_ipmi_password>" in text and VAULT["vault_ipmi_password"] not in text
    cfg = parse_config(yaml.safe_load(resolved), "recoveryd.yml")
    assert [s.name for s in cfg.servers] == ["srv1", "srv2", "srv3", "srv4"]
    srv1 = cfg.servers[0]
    assert srv1.reach.address == "198.51.100.11" and srv1.reach.port == 22
    assert srv1.healthd_url == "http://198.51.100.41:9180/status"
    assert srv1.router_protocols == ["server_srv1_v4", "server_srv1_v6"]
    assert srv1.ipmi is not None and srv1.ipmi.address == "203.0.113.21"
    assert srv1.ipmi.password.get_secret_value() == VAULT["vault_ipmi_password"]
    assert srv1.pdu is not None and (srv1.pdu.pdu, srv1.pdu.outlet) == ("pdu1", 1)
    assert cfg.pdus[0].community.get_secret_value() == VAULT["vault_pdu_community"]
    assert cfg.pdus[0].model.outlet_oid == "1.3.6.1.4.1.318.1.1.4.4.2.1.3"
    # no router socket by default: no BGP signal and no route hold
    assert cfg.router.socket is None and cfg.router.hold_routes is False
    assert cfg.dry_run is False and cfg.limits.max_in_flight == 1


def test_dry_run_router_socket_and_per_pdu_model() -> None:
    other = {"outlet_oid": "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4", "on": 1, "off": 2, "reboot": 3}
    _text, resolved = render(dry_run=True, router_socket="/run/edgepop/rtr1-bird.ctl", pdu_models={"pdu1": other})
    cfg = parse_config(yaml.safe_load(resolved), "recoveryd.yml")
    assert cfg.dry_run is True
    assert cfg.router.socket == "/run/edgepop/rtr1-bird.ctl" and cfg.router.hold_routes is True
    assert cfg.pdus[0].model.outlet_oid == other["outlet_oid"]
