#!/usr/bin/env bash
# Every test: lint, type checks and unit tests first, then the cross-process tests (real processes,
# brokers and timing-sensitive detection) on their own, so they never share two cores with tsc.
# Ends with one line: "tests: N passed, N failed, N skipped".
set -u
cd "$(dirname "$0")/.."
export TURBO_TELEMETRY_DISABLED=1
status=0
pnpm exec turbo run lint typecheck test --continue --filter='!@vigil/tests' || status=1
pnpm exec turbo run lint typecheck test --continue --filter=@vigil/tests || status=1
node scripts/test-summary.mjs || status=1
exit $status
