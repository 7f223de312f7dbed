#!/usr/bin/python
# edgepop: pin NIC queue interrupts by NIC group and CPU socket.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: irq_affinity
short_description: Pin each NIC queue's interrupts to one CPU of its group's socket
description:
  - Reads the host's CPU topology (C(/sys/devices/system/cpu/cpu*/topology)) and each NIC's queue
    vectors (C(device/msi_irqs), named through C(/proc/interrupts)), places every queue of every
    NIC of a group on one CPU of the group's socket, and writes C(/proc/irq/N/smp_affinity_list)
    for the IRQs that are not already there.
  - Placement is dealt round-robin over the socket's CPUs, the first hardware thread of every core
    before any second thread; at most I(queues_per_core) queues per logical CPU. The same code
    renders the offline plan (C(irq-plan.yml) from C(edgepop render)), so both agree.
  - Vectors that are not queues (a NIC's link or misc vector, virtio's config and control) are left
    alone and listed in C(skipped_irqs).
  - Every input is read and the plan checked before the first write; an impossible plan (more
    queues than the socket's CPUs allow, a group without NICs, an unknown NIC, a NIC without queue
    vectors, a socket the host does not have) fails with nothing written. A write that fails puts
    back the affinities already written.
  - irqbalance moves interrupts on its own, so stop it before running this module (or set
    I(stop_irqbalance)).
version_added: "0.3.0"
author:
  - edgepop maintainers
options:
  groups:
    description: The NIC groups, each served by one CPU socket.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Group name (external, internal), used in messages and in C(plan).
        type: str
        required: true
      socket:
        description: Socket ordinal (0 is the lowest physical_package_id).
        type: int
        required: true
      nics:
        description: The group's NICs; their queues are placed in this order.
        type: list
        elements: str
        required: true
  queues_per_core:
    description: Most queues per logical CPU (hardware thread).
    type: int
    default: 2
  channels:
    description:
      - Set every NIC to this many combined channels (C(ethtool -L NIC combined N)) before placing;
        only NICs that differ are changed. Changing channels resets the NIC's affinities, so it is
        done first.
    type: int
  rps:
    description: Set each queue's C(rps_cpus) to the CPUs of its group's socket.
    type: bool
    default: false
  xps:
    description: Set each queue's C(xps_cpus) to the CPU its interrupts go to.
    type: bool
    default: false
  expect_cpu:
    description:
      - The CPU layout the inventory describes (sockets, cores_per_socket, threads_per_core); the
        task fails when the host's differs, since the offline plan would then be wrong.
    type: dict
  root:
    description: Prefix of C(/proc) and C(/sys) (a recorded tree in tests).
    type: path
    default: /
  enabled:
    description:
      - C(auto) pins only where it can be done, that is where C(/proc/irq) is writable and every
        NIC of the plan is a device with interrupt vectors; elsewhere (a container with veths) the
        task changes nothing and says why in C(skip_reasons). C(true) always pins (an impossible
        plan fails); C(false) never does.
    type: str
    choices: [auto, "true", "false"]
    default: "true"
  stop_irqbalance:
    description:
      - When pinning, stop and disable irqbalance first (where its unit is installed), since it
        would move the interrupts again. Only on the real root (I(root) C(/)).
    type: bool
    default: false
attributes:
  check_mode:
    support: partial
    details: With I(channels) to change, the IRQs of queues the NIC does not have yet are unknown.
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Pin the NIC queues, external on socket 0, internal on socket 1
  irq_affinity:
    groups:
      - {name: external, socket: 0, nics: [ext0, ext1, ext2]}
      - {name: internal, socket: 1, nics: [int0, int1, int2]}
    queues_per_core: 2
    expect_cpu: {sockets: 2, cores_per_socket: 6, threads_per_core: 2}
  register: irq
"""

RETURN = r"""
plan:
  description: One entry per queue IRQ, with where it goes and what it was before.
  returned: success
  type: list
  elements: dict
  sample:
    - {irq: 40, name: ext0-TxRx-0, nic: ext0, group: external, queue: 0, cpu: 0, slot: 0/0/0, before: 0-23}
active:
  description: Whether the interrupts were pinned (see I(enabled)).
  returned: always
  type: bool
skip_reasons:
  description: Why C(enabled=auto) left the interrupts alone (empty when it pinned).
  returned: always
  type: list
  elements: str
irqbalance_stopped:
  description: Whether irqbalance was (or in check mode would be) stopped and disabled.
  returned: always
  type: bool
changed_irqs:
  description: IRQs whose affinity was (or in check mode would be) written.
  returned: success
  type: list
  elements: int
changed_queues:
  description: RPS/XPS files written, as C(NIC/queues/rx-K/rps_cpus).
  returned: success
  type: list
  elements: str
changed_channels:
  description: NICs whose channel count was set.
  returned: success
  type: list
  elements: str
skipped_irqs:
  description: The NICs' vectors that are not queues, left alone.
  returned: success
  type: list
  elements: dict
topology:
  description: The host's CPU layout as the plan sees it.
  returned: success
  type: dict
  sample: {sockets: 2, cores_per_socket: 6, threads_per_core: 2, cpus: 24}
commands:
  description: The ethtool commands run (or in check mode, that would run).
  returned: success
  type: list
  elements: list
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgepop_irq import IrqPlanError, apply_plan

GROUP_SPEC = {
    "name": {"type": "str", "required": True},
    "socket": {"type": "int", "required": True},
    "nics": {"type": "list", "elements": "str", "required": True},
}


def skip_reasons(params):
    """Why the interrupts cannot be pinned here: a read-only /proc/irq, or NICs without vectors."""
    reasons = []
    if not os.access(os.path.join(params["root"], "proc/irq/default_smp_affinity"), os.W_OK):
        reasons.append("/proc/irq is read-only")
    nics = [nic for group in params["groups"] for nic in group.get("nics") or []]
    if not nics:
        reasons.append("no NIC in any group")
    for nic in nics:
        if not os.path.exists(os.path.join(params["root"], "sys/class/net", nic, "device")):
            reasons.append(f"{nic} is not a device with interrupt vectors")
    return reasons


def stop_irqbalance(module, run):
    """Stop and disable irqbalance where its unit is installed; True when it was running or enabled."""
    if not os.path.exists("/lib/systemd/system/irqbalance.service"):
        return False
    active = run(["systemctl", "is-active", "--quiet", "irqbalance.service"])[0] == 0
    enabled = run(["systemctl", "is-enabled", "--quiet", "irqbalance.service"])[0] == 0
    if (active or enabled) and not module.check_mode:
        rc, _, err = run(["systemctl", "disable", "--now", "irqbalance.service"])
        if rc != 0:
            module.fail_json(msg=f"cannot stop irqbalance: {err.strip()}", changed=False)
    return active or enabled


def main():
    module = AnsibleModule(
        argument_spec={
            "groups": {"type": "list", "elements": "dict", "required": True, "options": GROUP_SPEC},
            "queues_per_core": {"type": "int", "default": 2},
            "channels": {"type": "int"},
            "rps": {"type": "bool", "default": False},
            "xps": {"type": "bool", "default": False},
            "expect_cpu": {"type": "dict"},
            "root": {"type": "path", "default": "/"},
            "enabled": {"type": "str", "choices": ["auto", "true", "false"], "default": "true"},
            "stop_irqbalance": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    ethtool = module.get_bin_path("ethtool", required=bool(params["channels"])) or "ethtool"

    def run(argv):
        return module.run_command(argv, environ_update={"LC_ALL": "C", "LANG": "C"})

    reasons = skip_reasons(params)
    if params["enabled"] == "false" or (params["enabled"] == "auto" and reasons):
        module.exit_json(changed=False, active=False, irqbalance_stopped=False,
                         skip_reasons=reasons if params["enabled"] == "auto" else ["disabled"])  # fmt: skip
    stopped = False
    if params["stop_irqbalance"] and params["root"] == "/":
        stopped = stop_irqbalance(module, run)

    try:
        outcome = apply_plan(params, root=params["root"], check=module.check_mode, run=run, ethtool=ethtool)
    except IrqPlanError as exc:
        module.fail_json(msg=str(exc), changed=False)
    result = outcome.as_dict()
    result.update(active=True, skip_reasons=[], irqbalance_stopped=stopped)
    result["changed"] = bool(result.get("changed")) or stopped
    if module._diff:
        result["diff"] = {
            "before_header": "NIC queue affinity",
            "after_header": "NIC queue affinity",
            "before": "".join(line + "\n" for line in outcome.before),
            "after": "".join(line + "\n" for line in outcome.after),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
