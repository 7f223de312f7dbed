#!/usr/bin/python
# edgepop: install a set of files, links and removals on a box in one step.
from __future__ import annotations

DOCUMENTATION = r"""
---
module: edgepop_files
short_description: Install a set of files, symlinks and removals in one step, all or nothing
description:
  - Brings every listed path to its wanted state in one module call, the way C(copy), C(file) and
    C(find) + C(file state=absent) would one at a time.
  - All or nothing. First every path is compared and every changed file's candidate is written to a
    temporary file beside it and checked with its I(validate) command; only when all candidates
    pass is anything replaced (each file by an atomic rename). A failing candidate fails the task
    with nothing changed.
  - C(changed) is honest; a path whose content, link target, mode, owner and group are already as
    wanted is not touched. C(changed_paths) lists the paths that changed, so handlers can tell
    which of the set did.
  - Check mode reports what would change (and the diff) without writing or validating.
  - The action plugin of the same name runs first on the controller. It renders the edgepop shared
    templates named by I(template) with the host's C(edgepop_device), resolves secret placeholders,
    and hands secret contents to the module separately so they are never logged or diffed.
version_added: "0.2.0"
author:
  - edgepop maintainers
options:
  files:
    description: The paths to manage, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path on the box.
        type: path
        required: true
      state:
        description:
          - C(file) (content), C(link) (a symlink to I(src)), C(directory) (created with its
            parents, attributes set) or C(absent) (a file or link; a directory only when it is in
            I(prune) with C(directories)).
        type: str
        choices: [file, link, directory, absent]
        default: file
      content:
        description: The file's content (state C(file)).
        type: str
      template:
        description:
          - Name of an edgepop shared template (under C(templates/)) rendered on the controller with
            the host's C(edgepop_device), or with I(sc); instead of I(content).
        type: str
      sc:
        description: Structured config to render I(template) with, instead of C(edgepop_device).
        type: dict
      src:
        description: Target of the symlink (state C(link)).
        type: str
      mode:
        description: Octal mode as a string, e.g. C("0644").
        type: str
      owner:
        description: Owner name.
        type: str
      group:
        description: Group name.
        type: str
      validate:
        description: Command run on the candidate before it replaces the file; C(%s) is its path.
        type: str
      unsafe_writes:
        description:
          - Rewrite the file in place instead of renaming a new one over it (a bind-mounted file,
            such as C(/etc/hostname) in a container, cannot be replaced).
        type: bool
        default: false
  prune:
    description:
      - Directories to tidy, each C(path) with C(patterns) (shell globs of file names). Files and
        links there that match a pattern and are not in I(files) are removed; with
        C(directories=true), matching directories too (with their contents). Names listed in
        C(keep) are never removed.
    type: list
    elements: dict
    default: []
  requires:
    description:
      - Paths that must exist on the box before anything is done (the programs that will read
        these files). A missing one fails the task with nothing changed.
    type: list
    elements: path
    default: []
  secrets:
    description: Set by the action plugin; the contents of secret files, by index into I(files).
    type: dict
    default: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: Install the systemd-networkd files and remove the ones no longer rendered
  edgepop_files:
    files: "{{ networkd_files }}"
    prune:
      - path: /etc/systemd/network
        patterns: ["[0-9][0-9]-*.network", "[0-9][0-9]-*.netdev"]
    requires: [/lib/systemd/systemd-networkd]
  register: networkd_result
  notify: Reload systemd-networkd

- name: A file, a link and a removal
  edgepop_files:
    files:
      - path: /etc/nginx/sites-available/edgepop-http.conf
        content: "{{ lookup('ansible.builtin.template', 'site.conf.j2') }}"
        mode: "0644"
      - path: /etc/nginx/sites-enabled/edgepop-http.conf
        state: link
        src: /etc/nginx/sites-available/edgepop-http.conf
      - path: /etc/nginx/sites-enabled/default
        state: absent
"""

RETURN = r"""
changed_paths:
  description: The paths that were (or in check mode would be) changed, created or removed.
  returned: always
  type: list
  elements: str
"""

import fnmatch
import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile

from ansible.module_utils.basic import AnsibleModule

_DIFF_LIMIT = 64 * 1024


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _ids(spec):
    uid = pwd.getpwnam(spec["owner"]).pw_uid if spec.get("owner") else None
    gid = grp.getgrnam(spec["group"]).gr_gid if spec.get("group") else None
    mode = int(spec["mode"], 8) if spec.get("mode") else None
    return uid, gid, mode


def _attrs_differ(st, uid, gid, mode):
    return (
        (uid is not None and st.st_uid != uid)
        or (gid is not None and st.st_gid != gid)
        or (mode is not None and stat.S_IMODE(st.st_mode) != mode)
    )


def _text(data):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


class Plan:
    """What one path needs: nothing, new content, new attributes, a link or a removal."""

    def __init__(self, spec, content):
        self.spec = spec
        self.path = spec["path"]
        self.state = spec.get("state") or "file"
        self.content = content
        self.write = False
        self.attrs = False
        self.relink = False
        self.remove = False
        self.before = None
        self.candidate = None

    @property
    def changed(self):
        return self.write or self.attrs or self.relink or self.remove


def plan_path(spec, content):
    plan = Plan(spec, content)
    path = plan.path
    if plan.state == "absent":
        if os.path.isdir(path) and not os.path.islink(path) and not spec.get("tree"):
            raise ValueError(f"{path} is a directory; only files and links are removed")
        plan.remove = os.path.lexists(path)
        return plan
    if plan.state == "directory":
        if os.path.lexists(path) and not (os.path.isdir(path) and not os.path.islink(path)):
            raise ValueError(f"{path} exists and is not a directory")
        plan.write = not os.path.isdir(path)
        if not plan.write:
            uid, gid, mode = _ids(spec)
            plan.attrs = _attrs_differ(os.stat(path), uid, gid, mode)
        return plan
    if plan.state == "link":
        if not spec.get("src"):
            raise ValueError(f"{path}: state link needs src")
        plan.relink = not (os.path.islink(path) and os.readlink(path) == spec["src"])
        return plan
    if content is None:
        raise ValueError(f"{path}: state file needs content or template")
    if os.path.isdir(path) and not os.path.islink(path):
        raise ValueError(f"{path} is a directory")
    plan.before = _read(path)
    plan.write = plan.before != content.encode("utf-8")
    if not plan.write:
        uid, gid, mode = _ids(spec)
        plan.attrs = _attrs_differ(os.stat(path), uid, gid, mode)
    return plan


def _makedirs(path):
    parent = os.path.dirname(path)
    if parent and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)


def _apply_attrs(path, spec):
    uid, gid, mode = _ids(spec)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None:
        os.chmod(path, mode)


def stage(plan):
    """Write the candidate beside the file (same filesystem, so the final rename is atomic)."""
    _makedirs(plan.path)
    fd, tmp = tempfile.mkstemp(prefix=".edgepop-", dir=os.path.dirname(plan.path))
    with os.fdopen(fd, "wb") as fh:
        fh.write(plan.content.encode("utf-8"))
    plan.candidate = tmp
    _apply_attrs(tmp, plan.spec)
    if plan.spec.get("mode") is None:
        os.chmod(tmp, 0o644 if plan.before is None else stat.S_IMODE(os.stat(plan.path).st_mode))


def check(plan):
    command = plan.spec.get("validate")
    if not command:
        return None
    if "%s" not in command:
        return f"{plan.path}: validate must contain %s"
    argv = [part.replace("%s", plan.candidate) for part in shlex.split(command)]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{plan.path}: validation could not run: {exc}"
    if done.returncode != 0:
        return f"{plan.path}: validation failed (rc {done.returncode}): {(done.stderr or done.stdout).strip()}"
    return None


def commit(plan):
    path = plan.path
    if plan.remove and plan.spec.get("tree") and not os.path.islink(path):
        shutil.rmtree(path)
    elif plan.remove:
        os.unlink(path)
    elif plan.state == "directory":
        os.makedirs(path, mode=0o755, exist_ok=True)
        _apply_attrs(path, plan.spec)
    elif plan.relink:
        _makedirs(path)
        tmp = os.path.join(os.path.dirname(path), f".edgepop-link-{os.getpid()}-{os.path.basename(path)}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(plan.spec["src"], tmp)
        os.replace(tmp, path)
    elif plan.write and plan.spec.get("unsafe_writes") and plan.before is not None:
        with open(path, "wb") as fh:  # in place: the inode (a bind mount) stays
            fh.write(plan.content.encode("utf-8"))
        os.unlink(plan.candidate)
        _apply_attrs(path, plan.spec)
    elif plan.write:
        os.replace(plan.candidate, path)
    elif plan.attrs:
        _apply_attrs(path, plan.spec)


def diff_of(plan, secret):
    if plan.state == "link":
        return {"before_header": plan.path, "after_header": plan.path,
                "before": "" if not os.path.islink(plan.path) else f"-> {os.readlink(plan.path)}\n",
                "after": f"-> {plan.spec['src']}\n"}  # fmt: skip
    if plan.state == "absent":
        return {"before_header": plan.path, "after_header": plan.path, "before": "present\n", "after": "absent\n"}
    if plan.state == "directory":
        return {"before_header": plan.path, "after_header": plan.path, "before": "", "after": "(directory)\n"}
    if secret:
        return {"before_header": plan.path, "after_header": plan.path, "before": "", "after": "(secret: not shown)\n"}
    before = _text(plan.before or b"")
    if before is None or len(plan.before or b"") > _DIFF_LIMIT or len(plan.content) > _DIFF_LIMIT:
        return {"before_header": plan.path, "after_header": plan.path, "before": "", "after": "(not shown: large)\n"}
    return {"before_header": plan.path, "after_header": plan.path, "before": before, "after": plan.content}


def main():
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True},
            "prune": {"type": "list", "elements": "dict", "default": []},
            "requires": {"type": "list", "elements": "path", "default": []},
            "secrets": {"type": "dict", "default": {}, "no_log": True},
        },
        supports_check_mode=True,
    )
    files = module.params["files"]
    secrets = {int(k): v for k, v in module.params["secrets"].items()}

    missing = [p for p in module.params["requires"] if not os.path.exists(p)]
    if missing:
        module.fail_json(msg=f"required on the box but missing: {', '.join(missing)}", changed=False)

    plans = []
    try:
        for index, spec in enumerate(files):
            if not spec.get("path") or not os.path.isabs(spec["path"]):
                raise ValueError(f"files[{index}]: path must be absolute, got {spec.get('path')!r}")
            content = secrets.get(index, spec.get("content"))
            plans.append(plan_path(spec, content))
        managed = {p.path for p in plans}
        for entry in module.params["prune"]:
            directory, patterns = entry.get("path"), entry.get("patterns") or []
            if not directory or not os.path.isdir(directory):
                continue
            for name in sorted(os.listdir(directory)):
                full = os.path.join(directory, name)
                if full in managed or name in (entry.get("keep") or []):
                    continue
                if not any(fnmatch.fnmatch(name, pat) for pat in patterns):
                    continue
                if os.path.islink(full) or os.path.isfile(full):
                    plans.append(plan_path({"path": full, "state": "absent"}, None))
                elif os.path.isdir(full) and entry.get("directories"):
                    plans.append(plan_path({"path": full, "state": "absent", "tree": True}, None))
    except (ValueError, KeyError, OSError) as exc:
        module.fail_json(msg=f"cannot plan the files: {exc}", changed=False)

    changed = [p for p in plans if p.changed]
    result = {"changed": bool(changed), "changed_paths": [p.path for p in changed]}
    if module._diff:
        indexes = {id(p): i for i, p in enumerate(plans)}
        result["diff"] = [diff_of(p, indexes[id(p)] in secrets) for p in changed if not p.attrs or p.write]
    if module.check_mode or not changed:
        module.exit_json(**result)

    # Every candidate is written and checked before anything is replaced: all or nothing.
    staged = [p for p in changed if p.write and p.state == "file"]
    try:
        errors = []
        for plan in staged:
            stage(plan)
            error = check(plan)
            if error:
                errors.append(error)
        if errors:
            module.fail_json(msg="; ".join(errors) + " (nothing was changed)", changed=False)
        for plan in changed:
            commit(plan)
    except (OSError, KeyError) as exc:
        module.fail_json(
            msg=f"installing the files failed: {exc}", changed=True, **{"changed_paths": result["changed_paths"]}
        )
    finally:
        for plan in staged:
            if plan.candidate and os.path.exists(plan.candidate):
                os.unlink(plan.candidate)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
