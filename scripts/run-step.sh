#!/usr/bin/env bash
# Run one `make test` step, record ok/failed for the summary, and keep going so that one run
# shows every failure. Usage: run-step.sh NAME COMMAND...
set -uo pipefail
name=$1; shift
results=${RESULTS:-build/test-results}
mkdir -p "$results"
start=$(date +%s)
printf '\n=== %s: %s\n' "$name" "$*"
"$@"
rc=$?
took=$(( $(date +%s) - start ))
if [ "$rc" -eq 0 ]; then
  echo "ok" > "$results/$name.step"
  printf '=== %s ok (%ss)\n' "$name" "$took"
elif [ "$rc" -eq 77 ]; then  # the automake convention for "skipped", with the reason printed above
  echo "skipped" > "$results/$name.step"
  printf '=== %s skipped\n' "$name"
else
  echo "failed (exit $rc)" > "$results/$name.step"
  printf '=== %s FAILED with exit %s (%ss)\n' "$name" "$rc" "$took"
fi
exit 0
