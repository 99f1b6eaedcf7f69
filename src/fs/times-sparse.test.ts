import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { Random } from '../testing/random.js';
import { createPool, importPool } from '../pool/index.js';
import type { Pool } from '../pool/pool.js';
import { isCairnError } from '../util/errors.js';
import { Filesystem } from './filesystem.js';
import type { FileSystemApi, Stat } from './types.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;

/** Odd nanosecond values that a µs or s rounding anywhere would change, and the signed 64-bit ends. */
const TIMES_NS: readonly bigint[] = [
  1_700_000_000_123_456_789n,
  1n,
  999_999_999n,
  -1n, // 1969-12-31T23:59:59.999999999Z
  -123_456_789_987_654_321n, // 1966
  4_102_444_800_000_000_001n, // 2100-01-01 + 1 ns
  2n ** 63n - 1n,
  -(2n ** 63n),
];

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'cairn-fs-times-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('timestamps: setattr keeps exact nanoseconds (odd values, before 1970, the i64 ends); out of range is EINVAL', async () => {
  let clockNs = 1_750_000_000_000_000_001n;
  const fs = await Filesystem.create(new MemoryObjectStore(), { uid: 0, gid: 0, nowNs: () => (clockNs += 7n) });
  const file = await fs.create(fs.rootIno, 'f', { mode: 0o644 });
  // The injected clock's odd values reach the inode untouched.
  assert.equal(file.birthtimeNs, clockNs);
  assert.equal(file.birthtimeNs % 7n, 1_750_000_000_000_000_001n % 7n);
  assert.equal(file.ctimeNs, file.birthtimeNs);
  for (let k = 0; k < TIMES_NS.length; k++) {
    const atimeNs = TIMES_NS[k] as bigint;
    const mtimeNs = TIMES_NS[(k + 3) % TIMES_NS.length] as bigint;
    const set = await fs.setattr(file.ino, { atimeNs, mtimeNs });
    const got = await fs.getattr(file.ino);
    assert.equal(got.atimeNs, atimeNs);
    assert.equal(got.mtimeNs, mtimeNs);
    assert.equal(got.ctimeNs, set.ctimeNs);
    assert.equal(got.ctimeNs, clockNs);
  }
  const before = await fs.getattr(file.ino);
  for (const bad of [2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n]) {
    await assert.rejects(fs.setattr(file.ino, { mtimeNs: bad }), (e) => isCairnError(e, 'EINVAL'));
    await assert.rejects(fs.setattr(file.ino, { atimeNs: bad, mode: 0o600 }), (e) => isCairnError(e, 'EINVAL'));
  }
  assert.deepEqual(await fs.getattr(file.ino), before);
});

async function checkSparse(fs: FileSystemApi, ino: number, data: Buffer, dataOffset: number): Promise<Stat> {
  const st = await fs.getattr(ino);
  assert.equal(st.sizeBytes, dataOffset + data.length);
  assert.ok(st.allocatedBytes > 0 && st.allocatedBytes < 4 * MiB, `allocatedBytes ${st.allocatedBytes}`);
  assert.ok((await fs.read(ino, dataOffset, data.length)).equals(data));
  // Holes read as zeros: the start, the middle, and a read that runs from the hole into the data.
  for (const at of [0, 4 * TiB + 12_345, 8 * TiB, dataOffset - 300 * KiB]) {
    const hole = await fs.read(ino, at, 128 * KiB);
    assert.equal(hole.length, 128 * KiB);
    assert.ok(hole.every((b) => b === 0), `hole at ${at} is not zero`);
  }
  const across = await fs.read(ino, dataOffset - 1000, 1000 + data.length + 5000);
  assert.equal(across.length, 1000 + data.length, 'short read only at end of file');
  assert.ok(across.subarray(0, 1000).every((b) => b === 0));
  assert.ok(across.subarray(1000).equals(data));
  assert.equal((await fs.read(ino, dataOffset + data.length, 10)).length, 0);
  return st;
}

test('16 TiB sparse file and exact ns times survive pool export/import; holes read as zeros, little is allocated', async () => {
  await withDir(async (dir) => {
    const seed = 0x16;
    const rnd = new Random(seed);
    const pool = (await createPool({ name: 'sparse', vdevSpec: [join(dir, 'd.img')], createSizeBytes: 128 * MiB, cacheSizeBytes: 8 * MiB })) as unknown as Pool;
    const fs = pool.fs;
    const file = await fs.create(fs.rootIno, 'huge', { mode: 0o644 });
    const data = rnd.bytes(4 * KiB);
    const dataOffset = 16 * TiB - 4 * KiB;
    assert.equal(await fs.write(file.ino, dataOffset, data), data.length);
    // allocatedBytes, like ZFS's st_blocks, counts blocks once their txg has synced.
    await pool.sync();
    await checkSparse(fs, file.ino, data, dataOffset);
    // Truncating down frees the far block; growing back exposes a hole, not the old data.
    const small = await fs.create(fs.rootIno, 'shrunk', { mode: 0o644 });
    await fs.write(small.ino, 16 * TiB - 8 * KiB, rnd.bytes(8 * KiB));
    await fs.setattr(small.ino, { sizeBytes: 1 * MiB });
    await fs.setattr(small.ino, { sizeBytes: 16 * TiB });
    assert.ok((await fs.read(small.ino, 16 * TiB - 8 * KiB, 8 * KiB)).every((b) => b === 0));

    const times = new Map<string, { atimeNs: bigint; mtimeNs: bigint }>();
    const d = await fs.mkdir(fs.rootIno, 'd', { mode: 0o755 });
    for (const [k, ino] of [file.ino, small.ino, d.ino].entries()) {
      const atimeNs = TIMES_NS[k] as bigint;
      const mtimeNs = TIMES_NS[k + 3] as bigint;
      await fs.setattr(ino, { atimeNs, mtimeNs });
      times.set(String(ino), { atimeNs, mtimeNs });
    }
    const ctimes = new Map<number, bigint>();
    for (const ino of [file.ino, small.ino, d.ino]) ctimes.set(ino, (await fs.getattr(ino)).ctimeNs);
    await pool.export();

    const again = (await importPool({ searchPaths: [dir], cacheSizeBytes: 8 * MiB })) as unknown as Pool;
    try {
      for (const [inoText, t] of times) {
        const st = await again.fs.getattr(Number(inoText));
        assert.equal(st.atimeNs, t.atimeNs, `atime of ${inoText}`);
        assert.equal(st.mtimeNs, t.mtimeNs, `mtime of ${inoText}`);
        assert.equal(st.ctimeNs, ctimes.get(Number(inoText)), `ctime of ${inoText}`);
      }
      await checkSparse(again.fs, file.ino, data, dataOffset);
      assert.equal((await again.fs.getattr(small.ino)).sizeBytes, 16 * TiB);
      assert.ok((await again.fs.getattr(small.ino)).allocatedBytes < 4 * MiB);
      const s = await again.spaceCheck();
      assert.equal(s.allocatedBytes, s.reachableBytes + s.deferredBytes);
      assert.ok(s.allocatedBytes < 32 * MiB, `pool allocated ${s.allocatedBytes} bytes for two sparse files`);
    } catch (e) {
      console.error(`sparse test failed with seed ${seed}`);
      throw e;
    } finally {
      await again.export();
    }
  });
});
