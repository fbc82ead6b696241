#!/usr/bin/env bash
# The test suite (make test): vitest over every workspace, then one plain
# closing line ("N passed, N failed, N skipped") that any CI can read.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

results=$(mktemp)
trap 'rm -f "$results"' EXIT

vitest run --reporter=default --reporter=json --outputFile="$results" "$@"
status=$?

if [[ -s "$results" ]]; then
  # shellcheck disable=SC2016 # JavaScript, not shell
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + r.numTodoTests;
    console.log(`\n${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
    if (r.numTotalTests === 0) { console.error("no test ran"); process.exit(1); }
  ' "$results" || status=1
else
  echo "vitest wrote no results" >&2
  status=1
fi
exit "$status"
