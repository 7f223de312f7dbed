# Documentation for the edgepop_validate action plugin (plugins/action/edgepop_validate.py).
# The action does all the work on the controller; this file only describes it to ansible-doc and
# ansible-lint, the usual pattern for an action plugin without a module.

DOCUMENTATION = r"""
---
module: edgepop_validate
short_description: Validate an edgepop PoP inventory before anything is changed
description:
  - Runs edgepop's inventory validation (schema and cross-checks) on the controller, the same
    check as C(edgepop validate).
  - Reports every error at once, each naming its file, key path and what was expected, and fails
    the task when there is any; nothing on any device is touched by this task.
  - Every edgepop playbook imports C(playbooks/validate.yml), which runs this once per run.
version_added: "0.1.0"
author:
  - edgepop maintainers
options:
  inventory:
    description:
      - Path of the PoP inventory directory (the one holding C(hosts.yml), C(group_vars/) and
        C(host_vars/)).
      - Defaults to the C(inventory_dir) of the host the task runs for, else the first inventory
        source given to Ansible (C(-i) or C(ansible.cfg)), or its directory when that source is a
        file.
      - A relative path is taken from the playbook directory.
    type: path
attributes:
  action:
    support: full
    description: Runs on the controller as an action plugin.
  check_mode:
    support: full
    description: Reads files only, so it runs unchanged in check mode.
  diff_mode:
    support: none
  platform:
    platforms: all
requirements:
  - the edgepop Python package importable by the Python that runs Ansible (C(make setup))
notes:
  - Always returns C(changed=false).
"""

EXAMPLES = r"""
- name: Validate the inventory Ansible was given
  edgepop_validate:
  run_once: true

- name: Validate another PoP's inventory
  edgepop_validate:
    inventory: "{{ playbook_dir }}/../inventory/examples/ams1"
  run_once: true
"""

RETURN = r"""
inventory:
  description: The inventory directory that was validated.
  returned: when an inventory directory was found
  type: str
  sample: /srv/edgepop/inventory/lab
msg:
  description: One line summary, with the number of hosts or of errors.
  returned: always
  type: str
  sample: inventory /srv/edgepop/inventory/lab valid (6 hosts)
errors:
  description: Every validation error, one full message each (file, key path, what was expected).
  returned: failed
  type: list
  elements: str
  sample:
    - "inventory/lab/host_vars/edge1.yml: bgp.asn: expected an integer between 1 and 4294967295, got 'x'"
"""
