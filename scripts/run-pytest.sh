#!/usr/bin/env bash
# Run one pytest suite with a JUnit report for the summary. pytest's exit 5 ("no tests collected")
# is a failure here: a suite that silently runs nothing must not pass.
set -uo pipefail
name=$1; shift
results=${RESULTS:-build/test-results}
mkdir -p "$results"
printf '\n=== pytest %s: %s\n' "$name" "$*"
.venv/bin/python -m pytest -q -p no:cacheprovider --junitxml="$results/$name.xml" -o junit_suite_name="$name" "$@"
rc=$?
case "$rc" in
  0|1) ;;  # the JUnit report holds the passes and failures
  5) echo "pytest $name collected no tests" >&2
     echo "failed (no tests collected)" > "$results/$name-run.step" ;;
  *) echo "failed (pytest exit $rc)" > "$results/$name-run.step" ;;
esac
exit 0
