#!/usr/bin/env bash
# `make demo`: the new-PoP job on the embedded lab PoP, stage by stage, with timings.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
INV=inventory/lab
OUT=out/lab
declare -a STAGES=()

stage() {  # stage NAME COMMAND...
  local name=$1; shift
  printf '\n\033[1m== %s\033[0m\n' "$name"
  local t0; t0=$(date +%s%N)
  "$@"
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  STAGES+=("$(printf '%-28s %4d.%01d s' "$name" $((ms / 1000)) $((ms % 1000 / 100)))")
}

show_summary() {
  sed -n '/^## Devices/,/^## Cabling/p;/^## Anycast/,$p' "$OUT/summary.md" | grep -v '^## Cabling'
}

stage "validate inventory" edgepop validate "$INV"
stage "render device configs" edgepop render "$INV" --out "$OUT"
stage "PoP summary" show_summary

printf '\n\033[1m== timings\033[0m\n'
printf '  %s\n' "${STAGES[@]}"
