"""Validate a PoP inventory on the controller before any play touches a device.

Every edgepop playbook starts with this action (playbooks/validate.yml). It is a thin wrapper over
`edgepop.validate.validate_inventory`, the same check `edgepop validate` runs, so a playbook and the
CLI can never disagree on what a valid inventory is. It reads files only and changes nothing, so it
runs the same in check mode.

Options (documented for ansible-doc in plugins/modules/edgepop_validate.py):
  inventory  path of the PoP inventory directory. Default: the `inventory_dir` of the host the task
             runs for, else the first inventory source Ansible was given (`-i` or ansible.cfg),
             or its parent directory when that source is a file. A relative path is taken from the
             playbook directory, like any other file argument.

Result: `failed` with `msg` "inventory <path> is invalid: N errors" and every message in `errors`,
or `changed: false` with `msg` "inventory <path> valid (N hosts)".
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "inventory": {"type": "path"},
}

# plugins/action/edgepop_validate.py -> repository root -> src/
_SOURCE_TREE = Path(__file__).resolve().parents[2] / "src"

SETUP_HINT = (
    "run `make setup` (or `pip install -e .` with the Python that runs Ansible) so that the "
    "edgepop package is importable"
)


def _import_validate() -> Any:
    """Import edgepop.validate, falling back to this checkout's src/ when the package is not installed.

    The fallback lets the playbooks run from a plain checkout (an AWX project, an execution
    environment) where only the dependencies were installed; an installed package always wins.
    """
    try:
        return importlib.import_module("edgepop.validate")
    except ModuleNotFoundError as exc:
        if exc.name != "edgepop" or not (_SOURCE_TREE / "edgepop" / "__init__.py").is_file():
            raise
    sys.path.append(str(_SOURCE_TREE))
    return importlib.import_module("edgepop.validate")


def _default_inventory(task_vars: dict[str, Any]) -> str | None:
    """Where the inventory is when the task does not say: the host's, else the first source's."""
    # A host from a host-list source ("-i web1,") gets the text "None" here, not a directory.
    inventory_dir = task_vars.get("inventory_dir")
    if inventory_dir and os.path.isdir(str(inventory_dir)):
        return str(inventory_dir)
    # Implicit localhost belongs to no inventory file; the sources Ansible was given still count.
    for source in task_vars.get("ansible_inventory_sources") or []:
        source = str(source)
        if os.path.isdir(source):
            return source
        if os.path.isfile(source):
            return os.path.dirname(source)
    return None


def _host_count(report: Any, task_vars: dict[str, Any]) -> int:
    """Hosts in the validated PoP model; Ansible's own host list if the report carries no model."""
    hostnames = getattr(getattr(report, "model", None), "hostnames", None)
    if hostnames is not None:
        return len(hostnames)
    return len((task_vars.get("groups") or {}).get("all", []))


def _message(issue: Any, base: str) -> str:
    """The full message, with the file shown under the inventory path so it can be opened as is."""
    render = getattr(issue, "render", None)
    return str(render(base)) if callable(render) else str(issue)


class ActionModule(ActionBase):
    """Run edgepop's inventory validation on the controller and report every error at once."""

    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True
    _supports_async = False

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        del tmp  # deprecated by Ansible; this action uses no remote temporary directory
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)

        validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        del validation  # validate_argument_spec raises on invalid arguments

        raw_path = args.get("inventory") or _default_inventory(task_vars)
        if not raw_path:
            raise AnsibleActionFail(
                "no inventory directory to validate: the task's host has no inventory_dir and no "
                "inventory source is a path; pass inventory=<directory>"
            )
        path = Path(self._loader.path_dwim(str(raw_path)))
        if not path.is_dir():
            raise AnsibleActionFail(f"inventory {path} is not a directory")

        try:
            validate = _import_validate()
        except ImportError as exc:
            raise AnsibleActionFail(
                f"cannot import edgepop.validate with {sys.executable}: {exc}; {SETUP_HINT}"
            ) from exc
        validate_inventory = getattr(validate, "validate_inventory", None)
        if validate_inventory is None:
            raise AnsibleActionFail(
                f"edgepop.validate ({validate.__file__}) has no validate_inventory(); the installed "
                f"edgepop is older than these playbooks: {SETUP_HINT}"
            )

        try:
            report = validate_inventory(path)
        except Exception as exc:
            # validate_inventory reports bad content in the report; an exception is an edgepop bug.
            raise AnsibleActionFail(
                f"validating inventory {path} crashed ({type(exc).__name__}: {exc}); this is a bug in "
                f"edgepop, `edgepop validate {path}` shows the traceback"
            ) from exc

        result["inventory"] = str(path)
        result["changed"] = False
        if not report.ok:
            errors = [_message(issue, str(path)) for issue in report.errors]
            count = len(errors)
            result["failed"] = True
            result["errors"] = errors
            result["msg"] = f"inventory {path} is invalid: {count} error{'' if count == 1 else 's'}"
            return result

        count = _host_count(report, task_vars)
        result["msg"] = f"inventory {path} valid ({count} host{'' if count == 1 else 's'})"
        return result
