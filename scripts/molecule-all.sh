#!/usr/bin/env bash
# Run every role's Molecule scenario. Roles without one are listed, not silently passed over.
set -uo pipefail
cd "$(dirname "$0")/.."
mapfile -t scenarios < <(find roles -path '*/molecule/*/molecule.yml' 2>/dev/null | sort)
if [ "${#scenarios[@]}" -eq 0 ]; then
  echo "no role has a Molecule scenario yet"
  exit 77
fi
rc=0
for s in "${scenarios[@]}"; do
  role_dir=${s%%/molecule/*}
  scenario=$(basename "$(dirname "$s")")
  echo "--- molecule test ${role_dir#roles/} ($scenario)"
  (cd "$role_dir" && molecule test -s "$scenario") || rc=1
done
exit $rc
