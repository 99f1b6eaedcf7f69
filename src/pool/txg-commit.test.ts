/**
 * The txg commit (device flushes and uberblock) runs after the txg gate reopened: writes of the next txg
 * go on while the last one is made durable, and nothing that sync() acknowledged is lost in a power cut
 * at any point of it. The device's flush is held open here, so "while the commit runs" is exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool, importPool } from './index.js';
import type { DeviceOpenFn } from './api.js';
import type { Pool } from './pool.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random, testSeed } from '../testing/random.js';
import { isCairnError } from '../util/errors.js';

const MiB = 1024 * 1024;

/** One FaultyDevice (writes past the last flush may be dropped or torn at a power cut) whose flush can be held. */
function heldFlushDisk(seed: number) {
  let device: FaultyDevice | null = null;
  const held: { waiting: Array<() => void>; holding: boolean; flushes: number; failing: boolean } = { waiting: [], holding: false, flushes: 0, failing: false };
  let flushStarted: (() => void) | null = null;
  // After a power cut this process is dead as far as the disk goes: nothing it still does reaches it.
  let dead = false;
  const alive = (): void => {
    if (dead) throw new Error('power is off');
  };
  const openDevice: DeviceOpenFn = async (path, options) => {
    device ??= new FaultyDevice({ sizeBytes: options.create ?? 64 * MiB, seed, path });
    const d = device;
    return {
      path: d.path,
      sizeBytes: d.sizeBytes,
      read: (o, l) => d.read(o, l),
      write: async (o, data) => {
        alive();
        return d.write(o, data);
      },
      flush: async () => {
        alive();
        held.flushes++;
        if (held.holding) {
          flushStarted?.();
          await new Promise<void>((resolve) => held.waiting.push(resolve));
        }
        alive();
        if (held.failing) throw new Error('injected flush failure');
        return d.flush();
      },
      close: () => d.close(),
    };
  };
  return {
    openDevice,
    /** Power cut: unflushed writes dropped or torn (seeded); the pool that was running can write no more. */
    powerCut: (): void => {
      (device as FaultyDevice).powerCut();
      dead = true;
    },
    /** A new boot: the disk answers again. */
    reboot: (): void => {
      dead = false;
    },
    /** From now on a flush waits; resolves when the first one does. */
    hold: (): Promise<void> => {
      held.holding = true;
      return new Promise<void>((resolve) => (flushStarted = resolve));
    },
    /** From now on a flush fails (an I/O error). */
    failFlushes: (): void => {
      held.failing = true;
    },
    release: (): void => {
      held.holding = false;
      for (const go of held.waiting.splice(0)) go();
    },
  };
}

async function writeFile(pool: Pool, name: string, data: Buffer): Promise<void> {
  const st = await pool.fs.create(pool.fs.rootIno, name, { mode: 0o644 });
  await pool.fs.write(st.ino, 0, data);
}

async function readFile(pool: Pool, name: string): Promise<Buffer | null> {
  try {
    const st = await pool.fs.lookup(pool.fs.rootIno, name);
    return await pool.fs.read(st.ino, 0, st.sizeBytes);
  } catch {
    return null;
  }
}

test('writes of the next txg go on while a txg commits, and a power cut at any point of the commit loses nothing synced', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  for (let round = 0; round < 4; round++) {
    const disk = heldFlushDisk(seed + round);
    const path = `/txg-commit/${round}`;
    const pool = (await createPool({ name: 'tc', vdevSpec: [path], openDevice: disk.openDevice, cacheSizeBytes: 8 * MiB })) as Pool;
    const first = random.bytes(300_000);
    const second = random.bytes(200_000);
    await writeFile(pool, 'first', first);

    const flushing = disk.hold();
    const synced = pool.sync();
    await flushing; // txg of `first` is written and its commit waits in a flush
    let secondDone = false;
    const writing = writeFile(pool, 'second', second).then(() => (secondDone = true));
    // The write needs no flush: it finishes while the commit is still held.
    for (let i = 0; i < 100 && !secondDone; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(secondDone, true, `round ${round}: a write waited for the previous txg's commit (seed ${seed})`);
    await writing;
    // A sync asked now must cover `second`, so it cannot resolve before a txg after the held one commits.
    const syncedAgain = pool.sync();
    let againDone = false;
    void syncedAgain.then(() => (againDone = true), () => undefined);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(againDone, false, `round ${round}: sync resolved while its txg was not committed`);

    const cutNow = round % 2 === 0; // half the rounds cut the power with the commit still held
    if (cutNow) {
      disk.powerCut();
      disk.release();
      await synced.catch(() => undefined);
      await syncedAgain.catch(() => undefined);
    } else {
      disk.release();
      await synced;
      await syncedAgain;
      disk.powerCut();
    }
    await pool.abandon();
    disk.reboot();
    const again = (await importPool({ searchPaths: [path], openDevice: disk.openDevice, nameOrGuid: 'tc' })) as Pool;
    const readFirst = await readFile(again, 'first');
    const readSecond = await readFile(again, 'second');
    if (cutNow) {
      // Nothing was acknowledged: either txg may be there, but what is there is whole.
      if (readFirst !== null) assert.ok(readFirst.equals(first), `round ${round}: first is torn`);
      if (readSecond !== null) {
        assert.ok(readSecond.equals(second), `round ${round}: second is torn`);
        assert.notEqual(readFirst, null, `round ${round}: second survived without first, which an earlier txg committed`);
      }
    } else {
      assert.ok(readFirst?.equals(first), `round ${round}: first was acknowledged by sync() and is lost (seed ${seed})`);
      assert.ok(readSecond?.equals(second), `round ${round}: second was acknowledged by sync() and is lost (seed ${seed})`);
    }
    const check = await again.spaceCheck();
    assert.equal(check.allocatedBytes, check.reachableBytes + check.deferredBytes, `round ${round}: space leak after import`);
    await again.export();
  }
});

test('a sync that waited for a txg whose commit failed reports the failure, not success', async () => {
  const disk = heldFlushDisk(testSeed());
  const path = '/txg-commit/failed';
  const pool = (await createPool({ name: 'tf', vdevSpec: [path], openDevice: disk.openDevice, cacheSizeBytes: 8 * MiB })) as Pool;
  for (let i = 0; i < 4; i++) await pool.sync(); // let deferred frees pass, so an empty txg does not run
  await writeFile(pool, 'w', Buffer.alloc(10_000, 7));
  const flushing = disk.hold();
  const first = pool.sync(); // writes the txg holding w; its commit waits in the flush
  await flushing;
  const second = pool.sync(); // a caller that wants w durable waits for that txg
  disk.failFlushes();
  disk.release();
  await assert.rejects(first);
  await assert.rejects(second, (e: unknown) => isCairnError(e, 'EIO'), 'the second sync must not report w durable');
  assert.equal(pool.health(), 'SUSPENDED');
  await pool.abandon();
});
