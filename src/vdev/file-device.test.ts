/**
 * FileDevice's write aggregation: writes issued together go down as runs of adjacent ones, and what a
 * read finds afterwards is exactly what each write said, whatever the order, sizes and overlaps (a
 * seeded model), also for runs longer than one aggregated write.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Random, testSeed } from '../testing/random.js';
import { openFileDevice } from './file-device.js';

const MiB = 1024 * 1024;

test('file device: concurrent writes (adjacent, scattered, overlapping, runs past 1 MiB) read back as a model says', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  const dir = await mkdtemp(join(tmpdir(), 'cairn-fdev-'));
  try {
    const path = join(dir, 'dev');
    const size = 8 * MiB;
    const device = await openFileDevice(path, { create: size });
    const model = Buffer.alloc(size);
    const between = (lo: number, hi: number): number => lo + random.int(hi - lo + 1);
    for (let round = 0; round < 20; round++) {
      const writes: Array<{ offset: number; data: Buffer }> = [];
      // a run of adjacent blocks issued out of order, longer than one aggregated write
      const runStart = between(0, (4 * MiB) / 4096) * 4096;
      const blocks = between(1, 400);
      for (let b = 0; b < blocks; b++) writes.push({ offset: runStart + b * 4096, data: random.bytes(4096) });
      // scattered writes of odd sizes
      for (let k = 0; k < 30; k++) {
        const length = between(1, 20_000);
        writes.push({ offset: between(0, size - length), data: random.bytes(length) });
      }
      for (let k = writes.length - 1; k > 0; k--) {
        const j = between(0, k);
        [writes[k], writes[j]] = [writes[j]!, writes[k]!];
      }
      // Overlapping writes issued together have no order on a disk; the model takes issue order, as
      // the device promises for them, so only non-overlapping ones are checked against each other.
      await Promise.all(writes.map((w) => device.write(w.offset, w.data)));
      for (const w of writes) w.data.copy(model, w.offset);
      // How many writes cover each byte: a write no other one touches must read back as itself.
      const cover = new Uint8Array(size);
      for (const w of writes) for (let at = w.offset; at < w.offset + w.data.length; at++) cover[at] = Math.min(255, (cover[at] as number) + 1);
      for (const w of writes) {
        const back = await device.read(w.offset, w.data.length);
        const overlapped = cover.subarray(w.offset, w.offset + w.data.length).some((n) => n > 1);
        if (!overlapped) assert.ok(back.equals(w.data), `round ${round}: write at ${w.offset} (${w.data.length} bytes) reads back (seed ${seed})`);
        assert.ok(back.equals(model.subarray(w.offset, w.offset + w.data.length)), `round ${round}: at ${w.offset} the device holds the last write issued (seed ${seed})`);
      }
    }
    await device.flush();
    await device.close();
    assert.ok((await readFile(path)).equals(model), `the file holds the model (seed ${seed})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('file device: flush and close finish the writes issued before them, even when the writer did not wait', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-fdev-'));
  try {
    const path = join(dir, 'dev');
    const device = await openFileDevice(path, { create: MiB });
    const order: string[] = [];
    const first = device.write(0, Buffer.alloc(4096, 1)).then(() => order.push('write'));
    await device.flush().then(() => order.push('flush'));
    assert.deepEqual(order, ['write', 'flush'], 'the fdatasync covered the write queued before it');
    await first;
    const second = device.write(4096, Buffer.alloc(4096, 2));
    await device.close();
    await second; // landed before the close, not refused by it
    const onDisk = await readFile(path);
    assert.ok(onDisk.subarray(0, 4096).equals(Buffer.alloc(4096, 1)));
    assert.ok(onDisk.subarray(4096, 8192).equals(Buffer.alloc(4096, 2)));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
