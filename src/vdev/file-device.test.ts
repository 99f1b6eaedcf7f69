/**
 * FileDevice's aggregation: writes issued together go down as runs of adjacent ones, and what a
 * read finds afterwards is exactly what each write said, whatever the order, sizes and overlaps (a
 * seeded model), also for runs longer than one aggregated write. Reads issued together go down as
 * runs too, each into its own buffer, and a run cut short fails only the reads it did not fill.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Random, testSeed } from '../testing/random.js';
import { openFileDevice } from './file-device.js';

const MiB = 1024 * 1024;

/** Runs fn with the path of a device file in a fresh directory, removed afterwards. */
async function withDevicePath(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-fdev-'));
  try {
    await fn(join(dir, 'dev'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('file device: concurrent writes (adjacent, scattered, overlapping, runs past 1 MiB) read back as a model says', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  await withDevicePath(async (path) => {
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
  });
});

test('file device: flush and close finish the writes issued before them, even when the writer did not wait', async () => {
  await withDevicePath(async (path) => {
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
  });
});

test('file device: reads issued together (adjacent, scattered, overlapping, into given buffers) read the device; adjacent ones go down as one readv', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  await withDevicePath(async (path) => {
    const size = 8 * MiB;
    const content = random.bytes(size);
    await writeFile(path, content);
    const device = await openFileDevice(path);
    // count the readv calls FileHandles make while this test runs
    const handle = await open(path);
    const proto = Object.getPrototypeOf(handle) as { readv: (...args: unknown[]) => Promise<unknown> };
    await handle.close();
    const readv = proto.readv;
    let readvCalls = 0;
    proto.readv = function (this: unknown, ...args: unknown[]) {
      readvCalls++;
      return readv.apply(this, args);
    };
    try {
      const between = (lo: number, hi: number): number => lo + random.int(hi - lo + 1);
      for (let round = 0; round < 20; round++) {
        const reads: Array<{ offset: number; length: number; into?: Buffer }> = [];
        const runStart = between(0, size - 2 * MiB);
        let at = runStart;
        for (let b = between(1, 120); b > 0; b--) {
          const length = between(1, 20_000);
          reads.push({ offset: at, length });
          at += length;
        }
        for (let k = 0; k < 20; k++) {
          const length = between(1, 40_000);
          reads.push({ offset: between(0, size - length), length });
        }
        for (let k = 0; k < 5; k++) reads.push({ ...(reads[between(0, reads.length - 1)] as { offset: number; length: number }) }); // the same range twice
        for (const r of reads) if (random.int(2) === 0) r.into = random.bytes(r.length); // stale bytes to overwrite
        for (let k = reads.length - 1; k > 0; k--) {
          const j = between(0, k);
          [reads[k], reads[j]] = [reads[j]!, reads[k]!];
        }
        const got = await Promise.all(reads.map((r) => device.read(r.offset, r.length, r.into)));
        reads.forEach((r, k) => {
          assert.ok(got[k]!.equals(content.subarray(r.offset, r.offset + r.length)), `round ${round}: read at ${r.offset} (${r.length} bytes) (seed ${seed})`);
          if (r.into) assert.equal(got[k], r.into, 'read into the buffer given');
        });
      }
      // 256 adjacent 4 KiB reads issued together, out of order: one readv (1 MiB is the most per call)
      readvCalls = 0;
      const order = Array.from({ length: 256 }, (_, k) => k).sort(() => random.int(3) - 1);
      const blocks = await Promise.all(order.map((k) => device.read(MiB + k * 4096, 4096)));
      order.forEach((k, i) => assert.ok(blocks[i]!.equals(content.subarray(MiB + k * 4096, MiB + (k + 1) * 4096)), `block ${k}`));
      assert.equal(readvCalls, 1, 'adjacent reads aggregated into one readv');
    } finally {
      proto.readv = readv;
      await device.close();
    }
  });
});

test('file device: in a run of adjacent reads, only the reads past the end of a file cut short behind the device fail (EIO)', async () => {
  await withDevicePath(async (path) => {
    const content = new Random(7).bytes(2 * MiB);
    await writeFile(path, content);
    const device = await openFileDevice(path);
    await truncate(path, MiB + 100); // the device still believes it has 2 MiB
    const offsets = [MiB - 8192, MiB - 4096, MiB, MiB + 4096];
    const results = await Promise.allSettled(offsets.map((offset) => device.read(offset, 4096)));
    for (const k of [0, 1]) {
      const r = results[k]!;
      assert.ok(r.status === 'fulfilled' && r.value.equals(content.subarray(offsets[k]!, offsets[k]! + 4096)), `read ${k} before the end`);
    }
    for (const k of [2, 3]) {
      const r = results[k]!;
      assert.ok(r.status === 'rejected' && (r.reason as { errno?: string }).errno === 'EIO', `read ${k} past the end fails with EIO`);
    }
    await device.close();
  });
});

test('file device: reads issued in the same turn as close() still read (they go down before the handle closes)', async () => {
  await withDevicePath(async (path) => {
    const content = new Random(11).bytes(MiB);
    await writeFile(path, content);
    const device = await openFileDevice(path);
    const reads = [0, 4096, 8192, 65536].map((offset) => device.read(offset, 4096));
    await device.close();
    const got = await Promise.all(reads);
    [0, 4096, 8192, 65536].forEach((offset, k) => assert.ok(got[k]!.equals(content.subarray(offset, offset + 4096)), `read at ${offset}`));
    await assert.rejects(device.read(0, 4096), /closed/, 'a read after close fails');
  });
});
