#!/usr/bin/python
# edgepop: release the frontline proxy on this box one core at a time.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: frontline_release
short_description: Move the frontline proxy's per-core instances to a new version, one core at a time
description:
  - For each core in order, stops the old single-worker NGINX instance gracefully (its unit's
    KillSignal is SIGQUIT), points the core at the new version's config, starts it, and checks
    that it answers its health endpoint with the new version and that its processes may run on that
    core only. A failed check stops the release and rolls every core already done back.
  - Memory stays flat (never two instances for one core) and two workers never share a core,
    unlike NGINX's own binary upgrade.
  - Cores already on the new version are left alone; nothing to do is C(changed=false). Check mode
    reports which cores would move.
version_added: "0.2.0"
author:
  - edgepop maintainers
options:
  cores:
    description: The cores running an instance, in release order.
    type: list
    elements: int
    required: true
  version:
    description: The version to release (its configs are C(<versions_dir>/<version>-<core>.conf)).
    type: str
    required: true
  versions_dir:
    description: Where the versions' configs and the C(current-<core>) links are.
    type: path
    default: /etc/edgepop/frontline
  health_base:
    description: Core I(k)'s instance answers C(http://127.0.0.1:<health_base + k>/health).
    type: int
    default: 9100
  check_timeout:
    description: Seconds a new instance has to pass its checks.
    type: float
    default: 10
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Release version 2 core by core
  frontline_release:
    cores: [0, 1, 2, 3]
    version: "2"
"""

RETURN = r"""
cores:
  description: Per released core, its old version and the seconds its stop, start and check took.
  returned: always
  type: list
  elements: dict
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.edgepop_frontline import Release, ReleaseError, SystemdInstances


def main():
    module = AnsibleModule(
        argument_spec={
            "cores": {"type": "list", "elements": "int", "required": True},
            "version": {"type": "str", "required": True},
            "versions_dir": {"type": "path", "default": "/etc/edgepop/frontline"},
            "health_base": {"type": "int", "default": 9100},
            "check_timeout": {"type": "float", "default": 10.0},
        },
        supports_check_mode=True,
    )
    p = module.params

    def run(argv):
        rc, out, err = module.run_command(argv)
        if rc != 0:
            raise ReleaseError(f"{' '.join(argv)}: {err.strip() or out.strip()}")
        return out

    instances = SystemdInstances(versions_dir=Path(p["versions_dir"]), health_base=p["health_base"], run=run)
    todo = [core for core in p["cores"] if instances.current(core) != p["version"]]
    configs = {core: instances.config(core, p["version"]) for core in todo}
    missing = [str(path) for path in configs.values() if not path.exists()]
    if missing:
        module.fail_json(msg=f"no config for version {p['version']}: {', '.join(missing)}", changed=False)
    if not todo or module.check_mode:
        module.exit_json(changed=bool(todo), cores=[{"core": c, "old": instances.current(c)} for c in todo])
    olds = {core: instances.current(core) for core in todo}
    log = []
    done = []
    try:
        for core in todo:
            release = Release(instances, [core], old=olds[core], new=p["version"], drain_s=0,
                              check_timeout_s=p["check_timeout"], log=log.append)  # fmt: skip
            report = release.run()[0]
            done.append(core)
            log.append({"core": core, "old": olds[core], "stop_s": round(report.stop_s, 3),
                        "start_s": round(report.start_s, 3), "check_s": round(report.check_s, 3)})  # fmt: skip
    except ReleaseError as exc:
        # this core was rolled back by the release itself; roll back the ones already done
        for core in done:
            if olds[core]:
                Release(instances, [core], old=olds[core], new=olds[core], log=log.append).rollback([core])
            else:  # a first install has nothing to go back to
                instances.stop(core, 0)
        module.fail_json(msg=f"{exc}; cores {done} rolled back to their old version", changed=True, log=log)
    module.exit_json(changed=True, cores=[entry for entry in log if isinstance(entry, dict)])


if __name__ == "__main__":
    main()
