#!/usr/bin/env bash
# `make demo`: the new-PoP job on the embedded lab PoP, stage by stage, with timings.
#
#   validate + render offline -> lab up (bare boxes + the lab's internet) -> new_pop.yml ->
#   verify.yml -> re-run new_pop.yml (must change nothing) -> failure drill (stop the frontline on the
#   preferred server: healthd withdraws, restarts, re-announces) -> maintenance drill (drain.yml)
#   -> lab down
#
# KEEP=1 leaves the lab running at the end (remove it later with `edgepop lab down`).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export ANSIBLE_VAULT_PASSWORD_FILE="$PWD/lab/vault-password"
export ANSIBLE_NOCOLOR=1   # the logs are filtered and kept; plain text is easier to read back
INV=inventory/lab
OUT=out/lab
LOGS=build/demo
CLIENT=edgepop-lab1-client
mkdir -p "$LOGS"
declare -a STAGES=()

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stage() {  # stage NAME COMMAND...: run one stage, record its wall time
  local name=$1; shift
  bold "$name"
  local t0; t0=$(date +%s%N)
  "$@"
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  STAGES+=("$(printf '%-34s %4d.%01d s' "$name" $((ms / 1000)) $((ms % 1000 / 100)))")
}

cleanup() {
  local rc=$?
  if [ "${KEEP:-0}" != 1 ]; then
    bold "lab down"
    edgepop lab down "$INV" || true
  else
    echo "the lab is still running (KEEP=1); remove it with: .venv/bin/edgepop lab down $INV"
  fi
  [ "$rc" -eq 0 ] || echo "demo FAILED (exit $rc); Ansible logs are in $LOGS/"
  exit "$rc"
}

playbook() {  # playbook LOGNAME PLAYBOOK [ARGS...]: run it, keep its log, show progress lines
  local log=$LOGS/$1.log; shift
  ansible-playbook "$@" > >(tee "$log" | grep --line-buffered -E '^(PLAY|TASK) \[|^(fatal|failed):|ok=|changed=' \
    | sed -u -E 's/\*+$//') 2>&1
}

idempotent() {
  playbook rerun playbooks/new_pop.yml
  if grep -E 'changed=[1-9]' "$LOGS/rerun.log"; then
    echo "the second run changed something: not idempotent"; return 1
  fi
  echo "second run: 0 changed on every host"
}

client_requests() {  # client_requests LABEL: 12 flows from the client to the HTTP anycast address
  echo "$1:"
  podman exec "$CLIENT" sh -c 'for i in $(seq 1 12); do
      curl -sS -m 2 -o /dev/null -w "http served by %header{x-served-by}\n" http://203.0.113.100/ 2>&1 || true; done' \
    | sort | uniq -c | sed 's/^/   /'
}

drill() {
  client_requests "before: the preferred server (lowest weight) takes every flow"
  echo "-- take srv1 (weight 100) out of anycast"
  local t0; t0=$(date +%s%N)
  playbook drain-srv1 playbooks/drain.yml -l srv1 >/dev/null
  echo "   withdrawn and gone from the router in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  client_requests "during: flows spread over the next servers (srv2 and srv3, weight 200: ECMP)"
  echo "-- put srv1 back"
  playbook undrain-srv1 playbooks/drain.yml -l srv1 -e drain__state=undrained >/dev/null
  client_requests "after: back on srv1"
}

failure_drill() {
  echo "-- stop the frontline on srv1: healthd withdraws http, restarts the frontline, announces it again"
  local t0; t0=$(date +%s%N)
  podman exec edgepop-lab1-srv1 systemctl stop edgepop-frontline.target
  # one request every 0.1 s for at most 30 s, until the traffic has moved away and come back
  podman exec "$CLIENT" sh -c 'moved=0; end=$(($(date +%s) + 30)); while [ "$(date +%s)" -lt "$end" ]; do
      s=$(curl -s -m 0.5 -o /dev/null -w "%header{x-served-by}" http://203.0.113.100/); echo "${s:-no answer}"
      case "$s" in srv2|srv3) moved=1 ;; srv1) [ "$moved" = 1 ] && break ;; esac; sleep 0.1; done' \
    | uniq -c | sed 's/^/   /' | tee "$LOGS/failure-drill.txt"
  echo "   back on srv1 $(( ($(date +%s%N) - t0) / 1000000 )) ms after the stop; healthd's log on srv1:"
  podman exec edgepop-lab1-srv1 journalctl -u edgepop-healthd -n 6 --no-pager -o cat | sed 's/^/     /'
  grep -qE 'srv2|srv3' "$LOGS/failure-drill.txt" || { echo "traffic never moved to srv2/srv3"; return 1; }
  tail -n 1 "$LOGS/failure-drill.txt" | grep -q srv1 || { echo "srv1 never came back"; return 1; }
}

show_summary() {
  sed -n '/^## Devices/,/^## Cabling/p;/^## Anycast/,$p' "$OUT/summary.md" | grep -v '^## Cabling'
}

trap cleanup EXIT
stage "validate inventory" edgepop validate "$INV"
stage "render device configs (offline)" edgepop render "$INV" --out "$OUT"
stage "PoP summary" show_summary
edgepop lab down "$INV" >/dev/null 2>&1 || true   # a lab left over from an earlier run
stage "lab up (bare PoP + internet)" edgepop lab up "$INV"
stage "new_pop.yml (first run)" playbook new_pop playbooks/new_pop.yml
stage "verify.yml" playbook verify playbooks/verify.yml
pop_report() {
  sed -n '/Print the PoP report/,/PLAY RECAP/p' "$LOGS/verify.log" | sed -n "s/^ *- '\{0,1\}\(.*[^']\)'\{0,1\}$/  \1/p"
}
bold "PoP report"
pop_report
stage "new_pop.yml again (idempotence)" idempotent
stage "failure drill (healthd)" failure_drill
stage "maintenance drill (drain)" drill

bold "timings"
printf '  %s\n' "${STAGES[@]}"
