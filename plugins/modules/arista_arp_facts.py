#!/usr/bin/python
# edgepop: the providers' next hops (IP -> MAC, interface) from an Arista switch's ARP table.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: arista_arp_facts
short_description: Read the providers' MAC addresses from an Arista switch's ARP table
description:
  - Opens the switch with NAPALM's C(eos) driver (eAPI over HTTPS by default), reads its ARP table
    with C(get_arp_table) and keeps the entries of the given provider addresses, each with its MAC,
    the interface it was learned on and, for a VLAN interface, the physical port.
  - "Runs on the controller (C(delegate_to: localhost)); it changes nothing on the switch."
  - A provider address the table does not have (yet), or has without a MAC, is listed in
    C(missing); with I(require_all) the task fails instead.
version_added: "0.4.0"
author:
  - edgepop maintainers
requirements:
  - napalm (the controller's virtualenv)
options:
  hostname:
    description: Address of the switch's management plane.
    type: str
    required: true
  username:
    description: eAPI user.
    type: str
    required: true
  password:
    description: eAPI password.
    type: str
    required: true
    no_log: true
  port:
    description: eAPI port (default 443).
    type: int
  transport:
    description: NAPALM transport.
    type: str
    choices: [https, http, ssh]
    default: https
  timeout:
    description: Seconds before the switch counts as unreachable.
    type: int
    default: 10
  vrf:
    description: VRF whose table is read; empty reads every VRF.
    type: str
    default: default
  providers:
    description: The provider addresses to look for.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Provider name.
        type: str
        required: true
      address:
        description: Its IPv4 address on its link.
        type: str
        required: true
      table:
        description: Its routing table on the hosts, carried through to C(nexthops).
        type: int
  require_all:
    description: Fail when a provider address is missing from the table.
    type: bool
    default: false
  optional_args:
    description: Extra NAPALM optional_args (C(verify) for eAPI certificates, say).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
    details: Reads only.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Read the transits' MACs from the switch
  arista_arp_facts:
    hostname: "{{ ansible_host }}"
    username: admin
    password: "{{ vault_eapi_password }}"
    providers:
      - {name: transit-a, address: 203.0.113.81, table: 1001}
  delegate_to: localhost
  register: arprelay__register_arp
"""

RETURN = r"""
nexthops:
  description: The providers found, sorted by name.
  returned: success
  type: list
  elements: dict
  sample:
    - {provider: transit-a, address: 203.0.113.81, mac: "02:00:5e:00:53:01", interface: Vlan100, port: Ethernet1,
       table: 1001}
missing:
  description: Provider addresses not in the ARP table, or there without a MAC.
  returned: success
  type: list
  elements: str
entries:
  description: How many ARP entries the switch returned.
  returned: success
  type: int
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgepop_arp import ArpError, provider_nexthops

PROVIDER_SPEC = {
    "name": {"type": "str", "required": True},
    "address": {"type": "str", "required": True},
    "table": {"type": "int"},
}


def read_arp_table(params):
    """The switch's ARP table through NAPALM; raises ArpError naming the switch."""
    try:
        from napalm import get_network_driver
    except ImportError:
        raise ArpError("napalm is not installed on the controller") from None
    args = dict(params["optional_args"] or {})
    if params["port"]:
        args["port"] = params["port"]
    args["transport"] = params["transport"]
    driver = get_network_driver("eos")(
        params["hostname"], params["username"], params["password"], timeout=params["timeout"], optional_args=args
    )
    try:
        driver.open()
    except Exception as exc:
        raise ArpError(f"cannot open {params['hostname']}: {exc}") from None
    try:
        return driver.get_arp_table(vrf=params["vrf"])
    except Exception as exc:
        raise ArpError(f"{params['hostname']}: get_arp_table failed: {exc}") from None
    finally:
        driver.close()


def main():
    module = AnsibleModule(
        argument_spec={
            "hostname": {"type": "str", "required": True},
            "username": {"type": "str", "required": True},
            "password": {"type": "str", "required": True, "no_log": True},
            "port": {"type": "int"},
            "transport": {"type": "str", "choices": ["https", "http", "ssh"], "default": "https"},
            "timeout": {"type": "int", "default": 10},
            "vrf": {"type": "str", "default": "default"},
            "providers": {"type": "list", "elements": "dict", "required": True, "options": PROVIDER_SPEC},
            "require_all": {"type": "bool", "default": False},
            "optional_args": {"type": "dict", "default": {}},
        },
        supports_check_mode=True,
    )
    params = module.params
    providers = [{k: v for k, v in p.items() if v is not None} for p in params["providers"]]
    try:
        entries = read_arp_table(params)
        nexthops, missing = provider_nexthops(entries, providers)
    except ArpError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if missing and params["require_all"]:
        module.fail_json(msg=f"not in the ARP table of {params['hostname']}: {', '.join(missing)}", changed=False,
                         nexthops=nexthops, missing=missing)  # fmt: skip
    module.exit_json(changed=False, nexthops=nexthops, missing=missing, entries=len(entries))


if __name__ == "__main__":
    main()
