#!/usr/bin/env bash
# Run every Molecule scenario with `molecule test`: the project's own (molecule/*/, run from the
# repository root; they converge several roles together on lab-shaped boxes) and any role's own
# (roles/*/molecule/*/, run from the role). Exit 77 (skipped) when there is none, 1 when any fails.
#
# The boxes carry the label edgepop.molecule=1. A scenario that leaves any behind (an interrupted
# run, a failed destroy) is destroyed again and counts as failed; so does an interrupted run.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
root=$PWD
[ -d .venv/bin ] && PATH="$root/.venv/bin:$PATH"
label=edgepop.molecule=1

scenarios=()
while IFS= read -r f; do scenarios+=("$f"); done < <(
  { find molecule -mindepth 2 -maxdepth 2 -name molecule.yml 2>/dev/null
    find roles -path '*/molecule/*/molecule.yml' 2>/dev/null; } | sort)
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "no Molecule scenario yet (molecule/*/ or roles/*/molecule/*/)"
  exit 77
fi

leftovers() { podman ps --all --quiet --filter "label=$label" 2>/dev/null; }

# Run `molecule ARGS...` for scenario file $1 from the directory Molecule expects.
in_scenario() {
  local file=$1; shift
  local dir=${file%%/molecule/*}
  [ "$dir" = "$file" ] && dir=.  # molecule/<name>/molecule.yml: the repository root
  (cd "$dir" && molecule "$@" -s "$(basename "$(dirname "$file")")")
}

current=
# shellcheck disable=SC2317  # called through the trap
interrupted() {
  echo "interrupted: destroying ${current:-nothing}" >&2
  [ -n "$current" ] && in_scenario "$current" destroy >/dev/null 2>&1
  exit 1
}
trap interrupted INT TERM

rc=0
for s in "${scenarios[@]}"; do
  current=$s
  name=$(basename "$(dirname "$s")")
  where=${s%%/molecule/*}; [ "$where" = "$s" ] && where=project || where=${where#roles/}
  echo "--- molecule test $where ($name)"
  start=$(date +%s)
  if ! in_scenario "$s" test; then
    echo "--- FAILED: $where ($name)"
    rc=1
  fi
  if [ -n "$(leftovers)" ]; then
    echo "--- $where ($name) left boxes behind; destroying them"
    in_scenario "$s" destroy || true
    rc=1
  fi
  echo "--- $where ($name): $(( $(date +%s) - start )) s"
done
current=

# Roles without a scenario of their own are named, not silently passed over; the project
# scenarios' converge.yml files say which of them they cover.
for role in roles/*/; do
  role=$(basename "$role")
  if ! compgen -G "roles/$role/molecule/*/molecule.yml" >/dev/null; then
    covered=$(grep -lE "(role|name): $role\$" molecule/*/converge.yml 2>/dev/null | xargs -r -n1 dirname | xargs -r -n1 basename | paste -sd, -)
    echo "role $role: no scenario of its own${covered:+; converged by molecule/$covered}"
  fi
done
exit $rc
