/**
 * The txg gate asks for an early sync at a count of dirty objects, so a txg of many small files stays
 * small (its sync is a pause for every writer), and a pool counts the objects its writes dirty.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TxgGate } from './txg-gate.js';
import { createPool } from './index.js';
import { DIRTY_OBJECTS_SYNC } from './pool.js';

describe('TxgGate early sync by dirty objects', () => {
  it('asks for a sync when a hold ends with the count reached, not before', async () => {
    let asked = 0;
    const gate = new TxgGate(1 << 30, async () => void asked++, 3);
    for (let i = 0; i < 2; i++) await gate.hold(async () => void gate.dirtyObjects++);
    assert.equal(asked, 0);
    await gate.hold(async () => void gate.dirtyObjects++);
    assert.equal(asked, 1);
  });

  it('a pool syncs one txg once DIRTY_OBJECTS_SYNC objects are dirty, not before, long before its timer', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-gate-'));
    const pool = await createPool({ name: 'gate', vdevSpec: [join(dir, 'd.img')], createSizeBytes: 256 * 1024 * 1024 });
    try {
      const fs = pool.fs;
      const d = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
      await pool.sync();
      const txg = pool.status().txg;
      const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
      let created = 0;
      // Each new file dirties its own object (and the directory's, once per txg). Creates alone run on
      // promises only: pauses let a sync's device I/O complete.
      const createUpTo = async (count: number): Promise<void> => {
        while (created < count) {
          await fs.create(d.ino, `f${created++}`, { mode: 0o644 });
          if (created % 64 === 0) await pause(0);
        }
      };
      await createUpTo(DIRTY_OBJECTS_SYNC - 16);
      await pause(50);
      assert.equal(pool.status().txg, txg, 'a txg synced before the count');
      // Past the count with eight writers at once: one txg, and the files after it wait for the next.
      await Promise.all(Array.from({ length: 8 }, () => createUpTo(DIRTY_OBJECTS_SYNC + 64)));
      for (let waited = 0; pool.status().txg === txg && waited < 3000; waited += 10) await pause(10);
      await pause(500); // a second txg, had one been queued, would have committed by now
      assert.equal(pool.status().txg, txg + 1, 'one txg after the count');
      assert.equal((await fs.readdir(d.ino, 0n, 10)).entries.length, 10);
    } finally {
      await pool.destroy();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
