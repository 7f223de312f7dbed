"""Push a Junos or EOS device's rendered config through NAPALM, with commit-confirm and rollback.

A thin action over `edgepop.netdev.push` (the engine, with the whole safety sequence documented
there): this file renders the device's template from its `edgepop_device` fact, resolves secret
placeholders on the controller (the same way `edgepop_render` does), builds the connection from
the task's options and turns the engine's result or error into an Ansible result. It runs on the
controller and opens its own NAPALM connections; the task's connection plugin is never used.

Check mode: the candidate is loaded, compared and discarded; `changed` is whether there was a
diff. Diff mode: the device's own diff is returned as `diff.prepared`.

Options are documented for ansible-doc in plugins/modules/edgepop_netdev.py.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_SRC = Path(__file__).resolve().parents[2] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.append(str(_SRC))  # appended: an installed edgepop package wins

try:  # ansible-core 2.19 renders only strings marked as trusted templates
    from ansible.template import trust_as_template as _trusted
except ImportError:  # older ansible-core renders any string

    def _trusted(text: str) -> str:
        return text


ARGS: dict[str, dict[str, Any]] = {
    "platform": {"type": "str", "choices": ["eos", "junos"]},
    "address": {"type": "str", "required": True},
    "port": {"type": "int"},
    "username": {"type": "str", "required": True},
    "password": {"type": "str", "no_log": True, "default": ""},
    "transport": {"type": "str", "choices": ["https", "http", "ssh"]},
    "timeout": {"type": "int", "default": 30},
    "optional_args": {"type": "dict", "default": {}},
    "template": {"type": "str"},
    "config": {"type": "str"},
    "mode": {"type": "str", "choices": ["merge", "replace"], "default": "merge"},
    "revert_in": {"type": "int", "default": 300},
    "archive_dir": {"type": "path"},
    "expect_bgp_up": {"type": "list", "elements": "str", "default": []},
    "bgp_wait": {"type": "float", "default": 60.0},
    "sc": {"type": "dict"},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def _render(self, args: dict[str, Any], sc: dict[str, Any], task_vars: dict[str, Any]) -> tuple[str, list[str]]:
        """The config to push and the secret values resolved into it (longest first, for masking)."""
        from edgepop.render import outputs_for
        from edgepop.templating import render_template

        if args.get("config"):
            return str(args["config"]), []
        name = args.get("template")
        if not name:
            templates = [t for f, t in outputs_for(sc).items() if f in ("junos.conf", "eos.cfg")]
            if not templates:
                raise AnsibleActionFail(
                    f"{sc.get('hostname')}: platform {sc.get('platform')} is not pushed with NAPALM"
                )
            name = templates[0]
        try:
            text = render_template(name, sc=sc)
        except Exception as exc:
            raise AnsibleActionFail(f"rendering {name} failed: {exc}") from exc
        from edgepop.templating import SecretUnresolved, secret_lookup, swap_secrets

        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        values: set[str] = set()
        value_of = secret_lookup(lambda expr: templar.template(_trusted("{{ " + expr + " }}")), values)
        try:
            resolved, _ = swap_secrets(text, value_of)
        except SecretUnresolved as exc:
            raise AnsibleActionFail(str(exc)) from exc
        secrets = sorted(values, key=len)
        return str(resolved), secrets[::-1]

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGS, mutually_exclusive=[["template", "config"]])
        from edgepop.netdev.drivers import Target, opener
        from edgepop.netdev.errors import NetdevError
        from edgepop.netdev.push import PushRequest, push_config

        sc = args.get("sc") or task_vars.get("edgepop_device") or {}
        host = str(sc.get("hostname") or task_vars.get("inventory_hostname"))
        platform = args.get("platform") or sc.get("platform")
        if platform not in ("eos", "junos"):
            raise AnsibleActionFail(f"{host}: platform {platform!r} is not pushed with NAPALM (eos or junos)")
        if not args.get("config") and not sc:
            raise AnsibleActionFail("no structured config: run edgepop_facts first, or pass sc= or config=")
        config, secret = self._render(args, sc, task_vars)
        archive = args.get("archive_dir")
        request = PushRequest(
            host=host,
            config=config,
            mode=args["mode"],
            check=bool(self._task.check_mode),
            revert_in=args["revert_in"],
            archive_dir=Path(archive) if archive else None,
            expect_hostname=sc.get("hostname") if not args.get("config") else None,
            expect_bgp_up=tuple(args["expect_bgp_up"]),
            bgp_wait=args["bgp_wait"],
            revert_multiple=60 if platform == "junos" else 1,
        )
        target = Target(
            host=host,
            platform=platform,
            address=args["address"],
            username=args["username"],
            password=args["password"],
            port=args.get("port"),
            transport=args.get("transport"),
            timeout=args["timeout"],
            optional_args=dict(args["optional_args"]),
        )
        try:
            pushed = push_config(request, opener(target))
        except NetdevError as exc:
            msg = _mask(str(exc), secret)
            result.update(failed=True, changed=exc.committed, msg=msg, error=exc.kind, committed=exc.committed)
            return result
        result.update(pushed.as_dict())
        # a device that shows secrets in its diff (EOS, or Junos before it encrypts a key) must not
        # put them in the task's output
        result["diff"] = _mask(pushed.diff, secret)
        result["changed"] = pushed.changed
        if self._task.diff and pushed.diff:
            result["diff"] = {"prepared": _mask(pushed.diff, secret)}
        if secret:
            result["secrets_resolved"] = True
        return result


def _mask(text: str, secrets: list[str]) -> str:
    for value in secrets:
        if value:
            text = text.replace(value, "********")
    return text
