import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Filesystem } from './filesystem.js';
import { runFileOpsAgainstOracle } from './conformance.js';

/** A deterministic clock: every call advances 1 µs. */
function fakeClock(): () => bigint {
  let nowNs = 1_700_000_000_000_000_000n;
  return () => (nowNs += 1000n);
}

const SEEDS = (process.env['CAIRN_FS_SEEDS'] ?? '1,2,3,4')
  .split(',')
  .map((seed) => Number(seed));
const STEPS = Number(process.env['CAIRN_FS_STEPS'] ?? 500);

for (const seed of SEEDS) {
  test(`POSIX layer on MemoryObjectStore matches node:fs (seed ${seed}, ${STEPS} steps)`, async () => {
    const store = new MemoryObjectStore();
    const report = await runFileOpsAgainstOracle({
      seed,
      steps: STEPS,
      // A small recordsize so random writes cross many block boundaries and truncates split blocks.
      makeFs: () => Filesystem.create(store, { uid: 0, gid: 0, recordSizeBytes: 4096, nowNs: fakeClock() }),
      // Reopening must find everything again from the store alone (master node, inodes, directories).
      reopen: () => Filesystem.open(store, { nowNs: fakeClock() }),
      reopenEverySteps: 150,
    });
    // Not vacuous: plenty of operations succeed, and the error paths are exercised too.
    assert.ok(report.succeeded > report.operations * 0.3, `only ${report.succeeded}/${report.operations} succeeded: ${JSON.stringify(report.errors)}`);
    for (const code of ['ENOENT', 'EEXIST', 'ENOTDIR']) assert.ok((report.errors[code] ?? 0) > 0, `no ${code} seen`);
    if (process.env['CAIRN_FS_VERBOSE'] !== undefined) console.log(JSON.stringify(report));
  });
}
