#!/usr/bin/env bash
# The whole test suite: type check, then every *.test.ts under src/ and test/ with node's test runner.
# Long soak runs are opt-in: CAIRN_SOAK=1 (more simulation seeds).
set -euo pipefail
cd "$(dirname "$0")/.."
# The Debian packages the tests drive (FUSE tools, NBD clients, fio, python3), in case npm skipped the
# postinstall script; quiet and quick when they are there.
bash scripts/deps.sh
npx tsc --noEmit -p .
files=$(find src test -name '*.test.ts' 2>/dev/null | sort)
export CAIRN_TEST=1
exec node --import tsx --test --test-concurrency=2 ${files}
