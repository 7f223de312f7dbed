"""Give each host its structured config (derived from the PoP inventory) as the fact `edgepop_device`.

Roles never read the raw inventory model: they take what `edgepop.derive` computed for their host,
so a role and `edgepop render` always agree. Deriving is pure and runs on the controller; the result
is cached per worker process and inventory, keyed on the files' modification times.

Secrets stay placeholders (`<vault:EXPR>`) here; `edgepop_render` resolves them only when it writes
a file, so no plaintext ends up in facts or fact caches.

Options: inventory (directory; default: the host's inventory_dir); host (default: the task's host;
with `delegate_to: <host>` and `delegate_facts: true`, one task can give every host its fact).
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

_CACHE: dict[str, tuple[tuple[tuple[str, float], ...], dict[str, Any]]] = {}


def _signature(root: Path) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((str(p), p.stat().st_mtime) for p in root.rglob("*.y*ml") if p.is_file()))


def derived(root: Path) -> dict[str, Any]:
    """Structured config of every device of the inventory at `root` (cached while files are unchanged)."""
    from edgepop.derive import derive_all
    from edgepop.validate import validate_inventory

    key = str(root.resolve())
    sig = _signature(root)
    cached = _CACHE.get(key)
    if cached is not None and cached[0] == sig:
        return cached[1]
    report = validate_inventory(root)
    if report.model is None:
        raise AnsibleActionFail(f"inventory {root} is invalid; run `edgepop validate {root}`:\n{report.format()}")
    configs = derive_all(report.model)
    _CACHE[key] = (sig, configs)
    return configs


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp: str | None = None, task_vars: dict[str, Any] | None = None) -> dict[str, Any]:
        del tmp
        task_vars = task_vars or {}
        result = super().run(task_vars=task_vars)
        _, args = self.validate_argument_spec(argument_spec={"inventory": {"type": "path"}, "host": {"type": "str"}})
        root = args.get("inventory") or task_vars.get("inventory_dir")
        if not root:
            raise AnsibleActionFail("no inventory directory: pass inventory=<directory>")
        host = args.get("host") or task_vars["inventory_hostname"]
        configs = derived(Path(self._loader.path_dwim(str(root))))
        if host not in configs:
            raise AnsibleActionFail(f"{host} is not a device of the PoP inventory {root}")
        result["changed"] = False
        result["ansible_facts"] = {"edgepop_device": configs[host]}
        return result
