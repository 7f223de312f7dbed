"""Controller half of `edgepop_files`: render shared templates, resolve secrets, run the module once.

Each entry of `files` with a `template` is rendered here with `edgepop.templating.render_template` (the
code `edgepop render` uses offline) and the host's `edgepop_device` (or the entry's `sc`). Secret
placeholders `<vault:EXPR>` are resolved from the task's variables; the content of an entry that held
one travels in the module's `secrets` option (no_log), so it is neither logged nor shown in a diff.
Everything else is the module's work: one call installs the whole set, all or nothing.
"""

from __future__ import annotations

import sys
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


ENTRY_KEYS = {
    "path",
    "state",
    "content",
    "template",
    "sc",
    "src",
    "mode",
    "owner",
    "group",
    "validate",
    "unsafe_writes",
}


class ActionModule(ActionBase):
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        from edgepop.templating import SecretUnresolved, render_template, secret_lookup, swap_secrets

        args = dict(self._task.args)
        files = args.get("files")
        if not isinstance(files, list):
            raise AnsibleActionFail("files must be a list of entries with a path")
        templar = self._templar.copy_with_new_env(available_variables=task_vars)

        value_of = secret_lookup(lambda expr: templar.template(_trusted("{{ " + expr + " }}")))

        entries: list[dict[str, Any]] = []
        secrets: dict[str, str] = {}
        for index, raw in enumerate(files):
            if not isinstance(raw, dict) or not raw.get("path"):
                raise AnsibleActionFail(f"files[{index}] must be a mapping with a path")
            unknown = sorted(set(raw) - ENTRY_KEYS)
            if unknown:
                raise AnsibleActionFail(f"files[{index}] ({raw['path']}): unknown keys {', '.join(unknown)}")
            entry = {k: v for k, v in raw.items() if k not in ("template", "sc") and v is not None}
            if "mode" in entry:
                entry["mode"] = str(entry["mode"])
            content = raw.get("content")
            if raw.get("template"):
                sc = raw.get("sc") or task_vars.get("edgepop_device")
                if not sc:
                    raise AnsibleActionFail("no structured config: run edgepop_facts first or pass sc=")
                try:
                    content = render_template(raw["template"], sc=sc)
                except Exception as exc:  # a template error names the template and line
                    raise AnsibleActionFail(f"rendering {raw['template']} failed: {exc}") from exc
            if content is not None:
                try:
                    content, secret = swap_secrets(str(content), value_of)
                except SecretUnresolved as exc:
                    raise AnsibleActionFail(f"files[{index}] ({raw['path']}): {exc}") from exc
                if secret:
                    secrets[str(index)] = content
                    entry.pop("content", None)
                else:
                    entry["content"] = content
            entries.append(entry)

        module_args = {
            "files": entries,
            "prune": args.get("prune") or [],
            "requires": args.get("requires") or [],
            "secrets": secrets,
        }
        result.update(self._execute_module(module_name="edgepop_files", module_args=module_args, task_vars=task_vars))
        return result
