#!/usr/bin/python
# edgepop: provider next hops on a host, for the ARP-relay design.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: provider_nexthop
short_description: Make a host reach each provider directly, by its MAC, through the switch
description:
  - For each provider next hop, makes exist exactly (over netlink, with pyroute2) a point-to-point
    address C(ip addr add LOCAL peer PROVIDER dev IF), a permanent neighbour entry
    C(ip neigh replace PROVIDER lladdr MAC nud permanent dev IF), a routing table of the provider's
    own with C(default via PROVIDER) and a rule C(fwmark TABLE lookup TABLE) (used by
    C(edgepop st-ping) to probe over one provider).
  - Everything it creates carries the protocol number I(proto), and its tables lie in
    I(table_min)-I(table_max). Objects carrying I(proto) that are not in I(nexthops) are stale and
    removed; nothing without that mark is ever removed, so an operator's routes stay.
  - The arprelay host agent applies the relay's mapping with the same code, so a run of this module
    and the agent agree on what the host should have.
  - All input is checked (and every named interface looked up) before the first change; when the
    kernel refuses a change part-way, the changes already made are undone.
version_added: "0.4.0"
author:
  - edgepop maintainers
requirements:
  - pyroute2 (Debian python3-pyroute2) on the host
options:
  nexthops:
    description: The provider next hops the host must have; an empty list removes every one.
    type: list
    elements: dict
    required: true
    suboptions:
      provider:
        description: Provider name (inventory).
        type: str
        required: true
      address:
        description: The provider's IPv4 or IPv6 address on its link.
        type: str
        required: true
      mac:
        description: The provider's MAC address, lower-case, colon-separated.
        type: str
        required: true
      interface:
        description: Host interface toward the switch (external bond or NIC).
        type: str
        required: true
      local:
        description: The host's own address of the same family used toward the provider.
        type: str
        required: true
      table:
        description: The provider's routing table (also its firewall mark); one per provider.
        type: int
        required: true
  proto:
    description: Protocol number that marks addresses, neighbours, routes and rules as managed here.
    type: int
    default: 200
  table_min:
    description: Lowest routing table id this module owns.
    type: int
    default: 1000
  table_max:
    description: Highest routing table id this module owns.
    type: int
    default: 1999
  rule_priority:
    description: Priority (C(pref)) of the per-provider rules; below the main table's 32766.
    type: int
    default: 1000
  netns:
    description: Network namespace to work in (a lab); the default is the host's own.
    type: str
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Reach both transits straight through the switch
  provider_nexthop:
    nexthops:
      - {provider: transit-a, address: 203.0.113.81, mac: "02:00:5e:00:53:01", interface: ext0,
         local: 198.51.100.11, table: 1001}
      - {provider: transit-b, address: 203.0.113.83, mac: "02:00:5e:00:53:02", interface: ext0,
         local: 198.51.100.11, table: 1002}
"""

RETURN = r"""
commands:
  description: The changes made (in check mode, that would be made), as the equivalent iproute2 commands.
  returned: always
  type: list
  elements: str
  sample: ["ip neigh replace 203.0.113.81 lladdr 02:00:5e:00:53:01 nud permanent dev ext0 proto 200"]
nexthops:
  description: The next hops as applied, normalised and sorted.
  returned: success
  type: list
  elements: dict
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgepop_nexthop import NexthopError, Settings, converge, parse_nexthops

NEXTHOP_SPEC = {
    "provider": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
    "mac": {"type": "str", "required": True},
    "interface": {"type": "str", "required": True},
    "local": {"type": "str", "required": True},
    "table": {"type": "int", "required": True},
}


def main():
    module = AnsibleModule(
        argument_spec={
            "nexthops": {"type": "list", "elements": "dict", "required": True, "options": NEXTHOP_SPEC},
            "proto": {"type": "int", "default": 200},
            "table_min": {"type": "int", "default": 1000},
            "table_max": {"type": "int", "default": 1999},
            "rule_priority": {"type": "int", "default": 1000},
            "netns": {"type": "str"},
        },
        supports_check_mode=True,
    )
    p = module.params
    settings = Settings(p["proto"], p["table_min"], p["table_max"], p["rule_priority"])
    try:
        settings.check()
        nexthops = parse_nexthops(p["nexthops"], settings)
        result = converge(nexthops, settings, check=module.check_mode, netns=p["netns"])
    except NexthopError as exc:
        module.fail_json(msg=str(exc), changed=False, commands=[])
    out = result.as_dict()
    out["nexthops"] = [
        {"provider": n.provider, "address": n.address, "mac": n.mac, "interface": n.interface, "local": n.local,
         "table": n.table}
        for n in nexthops
    ]  # fmt: skip
    if module._diff:
        out["diff"] = {
            "before_header": "provider next hops",
            "after_header": "provider next hops",
            "before": "".join(line + "\n" for line in result.before),
            "after": "".join(line + "\n" for line in result.after),
        }
    module.exit_json(**out)


if __name__ == "__main__":
    main()
