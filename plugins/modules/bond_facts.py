#!/usr/bin/python
# edgepop: the state of the host's bonds, and whether each LACP bond is healthy.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: bond_facts
short_description: Read the host's bonds and judge whether each LACP bond has aggregated
description:
  - Parses C(/proc/net/bonding/BOND) (and, where the file lacks them, C(/sys/class/net/BOND/bonding/))
    into facts - mode, LACP rate, transmit hash policy, MII polling interval, the active aggregator
    and its partner, and per port its MII status, aggregator id, partner MAC, churn states and
    LACP port states.
  - Gives every bond a verdict. An 802.3ad bond is C(ok) when every port is up and in the active
    aggregator, the partner's MAC is known (not all zeros), the LACP rate is the wanted one and,
    when I(members) names them, its ports are exactly those. C(problems) says what is wrong, in words
    that name the bond and the port.
  - Reads only; never changes anything (C(changed) is always false).
version_added: "0.3.0"
author:
  - edgepop maintainers
options:
  names:
    description: Bonds to read; default every bond in C(/proc/net/bonding). A named bond that does
      not exist is a problem of that bond, not an error.
    type: list
    elements: str
    default: []
  members:
    description: Bond name to the ports it must have (from the inventory).
    type: dict
    default: {}
  lacp_rate:
    description: The LACP rate every 802.3ad bond must run.
    type: str
    choices: [fast, slow]
    default: fast
  lacp_rates:
    description: Bond name to the LACP rate it must run, where it differs from I(lacp_rate).
    type: dict
    default: {}
  fail_on_problems:
    description:
      - Fail the task when a bond has a problem, with a message naming each bond and its problems
        (with C(until), a play retries until the bonds have aggregated). The facts are returned
        either way.
    type: bool
    default: false
  root:
    description: Prefix of C(/proc) and C(/sys) (a recorded tree in tests).
    type: path
    default: /
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  facts:
    support: full
"""

EXAMPLES = r"""
- name: Read the bonds
  bond_facts:
    names: [bond0, bond1]
    members: {bond0: [ext0, ext1, ext2], bond1: [int0, int1, int2]}
  register: bonds

- name: Show what is wrong
  ansible.builtin.debug:
    var: bonds.problems
  when: not bonds.ok
"""

RETURN = r"""
ansible_facts:
  description: C(bond_facts), the parsed state of every bond read, by name.
  returned: always
  type: dict
  contains:
    bond_facts:
      description: Bond name to its state and verdict.
      type: dict
      sample:
        bond0:
          mode: 802.3ad
          lacp_rate: fast
          xmit_hash_policy: layer3+4
          miimon: 100
          mii_status: up
          aggregator_id: 1
          partner_mac: 44:4c:a8:12:34:56
          slaves:
            ext0: {mii_status: up, aggregator_id: 1, partner_mac: 44:4c:a8:12:34:56,
                   actor_churn: none, partner_churn: none, actor_port_state: 63, partner_port_state: 63}
          ok: true
          problems: []
ok:
  description: Every bond read is healthy.
  returned: always
  type: bool
problems:
  description: Bond name to the list of what is wrong with it (only bonds with problems).
  returned: always
  type: dict
"""

import os
import re

from ansible.module_utils.basic import AnsibleModule

ZERO_MAC = "00:00:00:00:00:00"
MODES = {"IEEE 802.3ad Dynamic link aggregation": "802.3ad"}


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_proc(text):
    """/proc/net/bonding/BOND -> dict (the bond's settings, the active aggregator, each port)."""
    head, *slave_blocks = re.split(r"^Slave Interface: ", text, flags=re.MULTILINE)
    fields = {}
    for line in head.splitlines():
        key, sep, value = line.strip().partition(": ")
        if sep:
            fields.setdefault(key, value.strip())  # the first one: "Aggregator ID" of the active aggregator
    mode = fields.get("Bonding Mode", "")
    bond = {
        "mode": MODES.get(mode, mode),
        "lacp_rate": fields.get("LACP rate"),
        "xmit_hash_policy": (fields.get("Transmit Hash Policy") or "").split(" ")[0] or None,
        "miimon": _int(fields.get("MII Polling Interval (ms)")),
        "mii_status": fields.get("MII Status"),
        "aggregator_id": _int(fields.get("Aggregator ID")),
        "partner_mac": fields.get("Partner Mac Address"),
        "slaves": {},
    }
    for block in slave_blocks:
        name, _, rest = block.partition("\n")
        slave, section = {}, "slave"
        for line in rest.splitlines():
            stripped = line.strip()
            if stripped.startswith("details actor lacp pdu"):
                section = "actor"
                continue
            if stripped.startswith("details partner lacp pdu"):
                section = "partner"
                continue
            key, sep, value = stripped.partition(": ")
            if sep:
                slave[(section, key)] = value.strip()
        bond["slaves"][name.strip()] = {
            "mii_status": slave.get(("slave", "MII Status")),
            "speed": slave.get(("slave", "Speed")),
            "aggregator_id": _int(slave.get(("slave", "Aggregator ID"))),
            "partner_mac": slave.get(("partner", "system mac address")),
            "actor_churn": slave.get(("slave", "Actor Churn State")),
            "partner_churn": slave.get(("slave", "Partner Churn State")),
            "actor_churned_count": _int(slave.get(("slave", "Actor Churned Count"))),
            "partner_churned_count": _int(slave.get(("slave", "Partner Churned Count"))),
            "link_failures": _int(slave.get(("slave", "Link Failure Count"))),
            "actor_port_state": _int(slave.get(("actor", "port state"))),
            "partner_port_state": _int(slave.get(("partner", "port state"))),
        }
    return bond


def read_sysfs(root, name):
    """The bond's sysfs settings, the first word of each ("fast 1" -> "fast")."""
    base = os.path.join(root, "sys/class/net", name, "bonding")
    values = {}
    for key in ("mode", "lacp_rate", "xmit_hash_policy", "miimon", "ad_aggregator", "ad_partner_mac", "slaves"):
        try:
            with open(os.path.join(base, key)) as fh:
                values[key] = fh.read().strip()
        except OSError:
            continue
    return values


def read_bond(root, name):
    bond = {}
    proc = os.path.join(root, "proc/net/bonding", name)
    if os.path.exists(proc):
        with open(proc) as fh:
            bond = parse_proc(fh.read())
    sysfs = read_sysfs(root, name)
    if not bond and not sysfs:
        return None
    fallback = {
        "mode": (sysfs.get("mode") or "").split(" ")[0] or None,
        "lacp_rate": (sysfs.get("lacp_rate") or "").split(" ")[0] or None,
        "xmit_hash_policy": (sysfs.get("xmit_hash_policy") or "").split(" ")[0] or None,
        "miimon": _int(sysfs.get("miimon")),
        "aggregator_id": _int(sysfs.get("ad_aggregator")),
        "partner_mac": sysfs.get("ad_partner_mac"),
    }
    for key, value in fallback.items():
        if bond.get(key) is None:
            bond[key] = value
    if not bond.get("slaves"):
        bond["slaves"] = {s: {} for s in (sysfs.get("slaves") or "").split()}
    return bond


def judge(name, bond, lacp_rate="fast", members=None):
    """What is wrong with one bond, as sentences that name it; empty when it is healthy."""
    if bond is None:
        return [f"{name} does not exist (no /proc/net/bonding/{name})"]
    problems = []
    if bond.get("mode") != "802.3ad":
        return [f"{name} is in mode {bond.get('mode')}, not 802.3ad"]
    slaves = bond.get("slaves") or {}
    if members is not None and sorted(slaves) != sorted(members):
        missing = sorted(set(members) - set(slaves))
        extra = sorted(set(slaves) - set(members))
        parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"extra {', '.join(extra)}"] if extra else []
        )
        problems.append(f"{name} ports are not the inventory's: {'; '.join(parts)}")
    if not slaves:
        problems.append(f"{name} has no ports")
    if bond.get("lacp_rate") != lacp_rate:
        problems.append(f"{name} LACP rate is {bond.get('lacp_rate')}, not {lacp_rate}")
    partner = bond.get("partner_mac")
    if not partner or partner == ZERO_MAC:
        problems.append(f"{name} has no LACP partner (partner MAC {partner or 'unknown'}): the switch sends no LACPDUs")
    active = bond.get("aggregator_id")
    for port, state in sorted(slaves.items()):
        if state.get("mii_status") not in (None, "up"):
            problems.append(f"{name} port {port} is {state.get('mii_status')}")
        if state.get("aggregator_id") is not None and state.get("aggregator_id") != active:
            problems.append(
                f"{name} port {port} is in aggregator {state.get('aggregator_id')}, not the active aggregator {active}"
            )
        port_partner = state.get("partner_mac")
        if port_partner and partner and partner != ZERO_MAC and port_partner not in (partner, ZERO_MAC):
            problems.append(f"{name} port {port} has partner {port_partner}, the bond {partner}")
    return problems


def main():
    module = AnsibleModule(
        argument_spec={
            "names": {"type": "list", "elements": "str", "default": []},
            "members": {"type": "dict", "default": {}},
            "lacp_rate": {"type": "str", "choices": ["fast", "slow"], "default": "fast"},
            "lacp_rates": {"type": "dict", "default": {}},
            "fail_on_problems": {"type": "bool", "default": False},
            "root": {"type": "path", "default": "/"},
        },
        supports_check_mode=True,
    )
    root = module.params["root"]
    names = module.params["names"]
    if not names:
        proc = os.path.join(root, "proc/net/bonding")
        names = sorted(os.listdir(proc)) if os.path.isdir(proc) else []
    facts, problems = {}, {}
    for name in names:
        bond = read_bond(root, name)
        wanted = module.params["members"].get(name)
        rate = module.params["lacp_rates"].get(name) or module.params["lacp_rate"]
        found = judge(name, bond, rate, wanted)
        facts[name] = dict(bond or {}, ok=not found, problems=found)
        if found:
            problems[name] = found
    result = {"changed": False, "ok": not problems, "problems": problems, "ansible_facts": {"bond_facts": facts}}
    if problems and module.params["fail_on_problems"]:
        module.fail_json(msg="; ".join(p for found in problems.values() for p in found), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
