import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCairnError } from '../util/errors.js';
import { FaultyDevice } from './faulty-device.js';
import { Random, testSeed } from './random.js';

const SIZE_BYTES = 4 * 1024 * 1024;

test('Random: same seed, same sequence; different seeds differ; ranges hold', () => {
  const a = new Random(42);
  const b = new Random(42);
  const c = new Random(43);
  const sa = Array.from({ length: 50 }, () => a.nextU32());
  assert.deepEqual(sa, Array.from({ length: 50 }, () => b.nextU32()));
  assert.notDeepEqual(sa, Array.from({ length: 50 }, () => c.nextU32()));
  const r = new Random(7);
  for (let i = 0; i < 1000; i++) {
    const x = r.range(3, 9);
    assert.ok(x >= 3 && x <= 9 && Number.isInteger(x));
    const f = r.next();
    assert.ok(f >= 0 && f < 1);
  }
  assert.ok(new Random(1).bytes(33).equals(new Random(1).bytes(33)));
});

test('FaultyDevice: reads see writes, untouched space is zero, bounds are asserted', async () => {
  const dev = new FaultyDevice({ sizeBytes: SIZE_BYTES, seed: 1 });
  const data = new Random(5).bytes(10000);
  await dev.write(4000, data);
  assert.ok((await dev.read(4000, 10000)).equals(data));
  assert.ok((await dev.read(0, 4000)).equals(Buffer.alloc(4000)));
  await dev.flush();
  assert.ok((await dev.read(4000, 10000)).equals(data));
  await assert.rejects(dev.read(SIZE_BYTES - 1, 2));
});

/** Writes random blocks, some flushed, some not; returns the flushed image and the unflushed writes. */
async function workload(seed: number): Promise<{ dev: FaultyDevice; flushed: Buffer; unflushed: { offset: number; data: Buffer }[] }> {
  const random = new Random(seed ^ 0x5eed);
  const dev = new FaultyDevice({ sizeBytes: SIZE_BYTES, seed });
  const image = Buffer.alloc(SIZE_BYTES);
  for (let i = 0; i < 40; i++) {
    const offset = random.int(SIZE_BYTES / 2 / 512 - 64) * 512;
    const data = random.bytes(512 * random.range(1, 40));
    await dev.write(offset, data);
    data.copy(image, offset);
  }
  await dev.flush();
  const flushed = Buffer.from(image);
  const unflushed: { offset: number; data: Buffer }[] = [];
  // Unflushed writes go to a separate region so each one's fate can be read off the device alone.
  for (let i = 0; i < 30; i++) {
    const offset = SIZE_BYTES / 2 + i * 64 * 512;
    const data = random.bytes(512 * random.range(1, 32));
    await dev.write(offset, data);
    unflushed.push({ offset, data });
  }
  return { dev, flushed, unflushed };
}

test('power cut keeps flushed data, drops or tears only unflushed writes', async () => {
  const seed = testSeed();
  const { dev, flushed, unflushed } = await workload(seed);
  assert.equal(dev.pendingWriteCount, 30);
  dev.powerCut();
  assert.equal(dev.pendingWriteCount, 0);
  const half = SIZE_BYTES / 2;
  assert.ok((await dev.read(0, half)).equals(flushed.subarray(0, half)), `seed ${seed}: flushed data changed`);
  let dropped = 0;
  let torn = 0;
  let whole = 0;
  for (const { offset, data } of unflushed) {
    const now = await dev.read(offset, data.length);
    if (now.equals(data)) {
      whole++;
      continue;
    }
    if (now.equals(Buffer.alloc(data.length))) {
      dropped++;
      continue;
    }
    // Torn: a prefix of whole 512-byte sectors landed, the rest is what was there (zeros).
    let prefix = 0;
    while (prefix < data.length && now.subarray(prefix, prefix + 512).equals(data.subarray(prefix, prefix + 512))) prefix += 512;
    assert.ok(prefix > 0 && prefix < data.length, `seed ${seed}: write at ${offset} neither whole, dropped nor torn`);
    assert.ok(now.subarray(prefix).equals(Buffer.alloc(data.length - prefix)), `seed ${seed}: torn write has junk after its prefix`);
    torn++;
  }
  assert.equal(dropped + torn + whole, 30);
  assert.equal(dev.injected.droppedWrites, dropped, `seed ${seed}`);
  assert.equal(dev.injected.tornWrites, torn, `seed ${seed}`);
  assert.ok(dropped > 0 && whole > 0, `seed ${seed}: 30 writes should see both fates`);
});

test('power cut: same seed, same outcome; another seed, another outcome', async () => {
  const outcome = async (seed: number): Promise<Buffer> => {
    const { dev } = await workload(seed);
    dev.powerCut();
    return dev.read(SIZE_BYTES / 2, 30 * 64 * 512);
  };
  assert.ok((await outcome(1234)).equals(await outcome(1234)));
  assert.ok(!(await outcome(1234)).equals(await outcome(4321)));
});

test('FaultyDevice: injected read/write errors, bit flips, silent corruption, death, corrupt()', async () => {
  const dev = new FaultyDevice({ sizeBytes: SIZE_BYTES, seed: 9 });
  const data = Buffer.alloc(4096, 0xab);
  await dev.write(0, data);

  dev.faults.readBitFlipProbability = 1;
  const flipped = await dev.read(0, 4096);
  let bitsDiffering = 0;
  for (let i = 0; i < 4096; i++) bitsDiffering += popcount((flipped[i] ?? 0) ^ (data[i] ?? 0));
  assert.equal(bitsDiffering, 1);
  dev.faults.readBitFlipProbability = 0;
  assert.ok((await dev.read(0, 4096)).equals(data), 'a read bit flip is not stored');

  dev.faults.writeCorruptionProbability = 1;
  await dev.write(8192, data);
  dev.faults.writeCorruptionProbability = 0;
  assert.ok(!(await dev.read(8192, 4096)).equals(data), 'silent write corruption is stored');

  dev.faults.readErrorProbability = 1;
  await assert.rejects(dev.read(0, 512), (e: unknown) => isCairnError(e, 'EIO'));
  dev.faults.readErrorProbability = 0;
  dev.faults.writeErrorProbability = 1;
  await assert.rejects(dev.write(16384, data), (e: unknown) => isCairnError(e, 'EIO'));
  dev.faults.writeErrorProbability = 0;
  assert.ok((await dev.read(16384, 4096)).equals(Buffer.alloc(4096)), 'a failed write stores nothing');

  dev.corrupt(100, 10);
  const after = await dev.read(0, 4096);
  for (let i = 100; i < 110; i++) assert.notEqual(after[i], data[i]);
  assert.ok(after.subarray(0, 100).equals(data.subarray(0, 100)) && after.subarray(110).equals(data.subarray(110)));

  dev.die();
  await assert.rejects(dev.read(0, 512), (e: unknown) => isCairnError(e, 'EIO'));
  await assert.rejects(dev.write(0, data), (e: unknown) => isCairnError(e, 'EIO'));
  await assert.rejects(dev.flush(), (e: unknown) => isCairnError(e, 'EIO'));
  dev.revive();
  await dev.read(0, 512);
  assert.deepEqual(
    { ...dev.injected },
    { readBitFlips: 1, writeCorruptions: 1, readErrors: 1, writeErrors: 1, deadOps: 3, droppedWrites: 0, tornWrites: 0, powerCuts: 0, corruptedBytes: 10 },
  );
});

function popcount(x: number): number {
  let n = 0;
  for (let v = x; v !== 0; v &= v - 1) n++;
  return n;
}
