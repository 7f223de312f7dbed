"""Render one of edgepop's shared device templates for this host and install it like `copy` does.

The text comes from `edgepop.templating.render_template` (the same code `edgepop render` uses offline)
with `sc` = the host's `edgepop_device` fact. Secret placeholders `<vault:EXPR>` are resolved here,
on the controller, from the task's variables; the copy runs with no_log semantics for the diff when
the file holds a secret. Check mode and diff mode behave as with `ansible.builtin.copy`, which does
the transfer: `changed` is honest and nothing is written when the content is already there.

Options: template (name under templates/), dest, mode, owner, group, validate (as copy's: `%s` is
the candidate file), backup.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_SRC = Path(__file__).resolve().parents[2] / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.append(str(_SRC))

try:  # ansible-core 2.19 renders only strings marked as trusted templates
    from ansible.template import trust_as_template as _trusted
except ImportError:  # older ansible-core renders any string

    def _trusted(text: str) -> str:
        return text


ARGS = {
    "template": {"type": "str", "required": True},
    "dest": {"type": "str", "required": True},
    "mode": {"type": "raw"},
    "owner": {"type": "str"},
    "group": {"type": "str"},
    "validate": {"type": "str"},
    "backup": {"type": "bool", "default": False},
    "sc": {"type": "dict"},
}


class ActionModule(ActionBase):
    TRANSFERS_FILES = True
    _supports_check_mode = True

    def _resolve(self, text: str, task_vars: dict[str, Any]) -> tuple[str, bool]:
        from edgepop.templating import SecretUnresolved, secret_lookup, swap_secrets

        templar = self._templar.copy_with_new_env(available_variables=task_vars)
        try:
            return swap_secrets(text, secret_lookup(lambda expr: templar.template(_trusted("{{ " + expr + " }}"))))
        except SecretUnresolved as exc:
            raise AnsibleActionFail(str(exc)) from exc

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        _, args = self.validate_argument_spec(argument_spec=ARGS)
        from edgepop.templating import render_template

        sc = args.get("sc") or task_vars.get("edgepop_device")
        if not sc:
            raise AnsibleActionFail("no structured config: run edgepop_facts first or pass sc=")
        try:
            text = render_template(args["template"], sc=sc)
        except Exception as exc:  # a template error names the template and line
            raise AnsibleActionFail(f"rendering {args['template']} failed: {exc}") from exc
        text, secret = self._resolve(text, task_vars)

        fd, local = tempfile.mkstemp(prefix="edgepop-render-")
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            copy_args = {k: args[k] for k in ("dest", "mode", "owner", "group", "validate", "backup") if args.get(k)}
            copy_args["src"] = local
            task = self._task.copy()
            task.args = copy_args
            if secret:
                task.no_log = True
            copy = self._shared_loader_obj.action_loader.get(
                "ansible.legacy.copy",
                task=task,
                connection=self._connection,
                play_context=self._play_context,
                loader=self._loader,
                templar=self._templar,
                shared_loader_obj=self._shared_loader_obj,
            )
            result.update(copy.run(task_vars=task_vars))
        finally:
            os.unlink(local)
        result["template"] = args["template"]
        return result
