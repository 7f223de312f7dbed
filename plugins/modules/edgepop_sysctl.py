#!/usr/bin/python
# edgepop: bring running kernel settings to the wanted values in one step.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgepop_sysctl
short_description: Set the running kernel settings that differ from the wanted ones
description:
  - Reads every named setting from C(/proc/sys) and writes only those whose value differs,
    compared field by field (whitespace between fields does not matter).
  - One call for the whole set; C(changed_keys) names what changed. Check mode only compares.
  - A setting the kernel does not have fails the task before anything is written.
  - Persisting the values across reboots is the job of a C(/etc/sysctl.d) file, installed
    separately.
version_added: "0.2.0"
author:
  - edgepop maintainers
options:
  settings:
    description: Setting name (dotted, as sysctl prints it) to wanted value.
    type: dict
    required: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Apply kernel settings that differ from the running ones
  edgepop_sysctl:
    settings:
      net.ipv4.ip_forward: 1
      net.core.rmem_max: 67108864
"""

RETURN = r"""
changed_keys:
  description: The settings that were (or in check mode would be) written.
  returned: always
  type: list
  elements: str
"""

import os

from ansible.module_utils.basic import AnsibleModule


def proc_path(key):
    return os.path.join("/proc/sys", *key.split("."))


def main():
    module = AnsibleModule(argument_spec={"settings": {"type": "dict", "required": True}}, supports_check_mode=True)
    wanted = {str(k): str(v) for k, v in module.params["settings"].items()}
    missing = [key for key in wanted if not os.path.exists(proc_path(key))]
    if missing:
        module.fail_json(msg=f"this kernel has no setting {', '.join(sorted(missing))}", changed=False)
    differ = []
    for key, value in wanted.items():
        with open(proc_path(key)) as fh:
            running = fh.read()
        if running.split() != value.split():
            differ.append(key)
    if differ and not module.check_mode:
        for key in differ:
            try:
                with open(proc_path(key), "w") as fh:
                    fh.write(wanted[key])
            except OSError as exc:
                module.fail_json(msg=f"cannot set {key}={wanted[key]}: {exc}", changed=differ.index(key) > 0)
    module.exit_json(changed=bool(differ), changed_keys=differ)


if __name__ == "__main__":
    main()
