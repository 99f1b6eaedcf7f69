import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Dva } from '../io/blkptr.js';
import { InvariantError } from '../util/assert.js';
import { isCairnError } from '../util/errors.js';
import { RangeTree } from './range-tree.js';
import { replay } from './space-map.js';
import {
  chooseMetaslabShift,
  DEFER_TXGS,
  MetaslabAllocator,
  type AllocatorVdev,
  type MetaslabAllocatorOptions,
  type SpaceMapUpdate,
} from './metaslab.js';
import { prng as rng } from '../testing/random.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;


function fakeVdev(id: number, asize: number, ashift = 12): AllocatorVdev {
  const sector = 2 ** ashift;
  return { id, asize, ashift, allocatedSize: (psize) => Math.ceil(psize / sector) * sector };
}

const SECTOR_FREE = 0;
const SECTOR_LIVE = 1;
const SECTOR_DEFERRED = 2;

interface LiveBlock {
  dvas: Dva[];
  bornTxg: number;
}

/**
 * Drives an allocator the way the pool will, against a model: a sector map per vdev
 * (free / live / deferred), the persisted space map logs, and the txg clock.
 */
class Harness {
  readonly allocator: MetaslabAllocator;
  readonly sectors = new Map<number, Uint8Array>();
  readonly vdevs = new Map<number, AllocatorVdev>();
  readonly logs = new Map<string, Buffer[]>();
  readonly live: LiveBlock[] = [];
  deferred: { txg: number; dva: Dva }[] = [];
  txg = 0;
  condenses = 0;
  passesMax = 0;
  /** Writing space maps allocates blocks, as the pool's will (off when draining the pool). */
  spaceMapWritesAllocate = true;

  constructor(vdevs: AllocatorVdev[], options: MetaslabAllocatorOptions = {}) {
    this.allocator = new MetaslabAllocator(vdevs, options);
    for (const v of vdevs) this.track(v);
  }

  track(v: AllocatorVdev): void {
    this.vdevs.set(v.id, v);
    this.sectors.set(v.id, new Uint8Array(v.asize / 2 ** v.ashift));
  }

  begin(): void {
    this.txg++;
    this.allocator.beginSync(this.txg);
  }

  /** allocate + model checks: every sector handed out must be free in the model (not live, not deferred). */
  allocate(psize: number, copies: number): Dva[] {
    const dvas = this.allocator.allocate(psize, copies);
    assert.equal(dvas.length, copies);
    for (const dva of dvas) {
      const v = this.vdevs.get(dva.vdev) as AllocatorVdev;
      const map = this.sectors.get(dva.vdev) as Uint8Array;
      const sector = 2 ** v.ashift;
      assert.equal(dva.offset % sector, 0, 'unaligned DVA');
      assert.equal(dva.asize, v.allocatedSize(psize));
      for (let s = dva.offset / sector; s < (dva.offset + dva.asize) / sector; s++) {
        assert.equal(map[s], SECTOR_FREE, `txg ${this.txg}: DVA ${dva.vdev}:${dva.offset}+${dva.asize} reuses sector ${s} which is ${map[s] === SECTOR_LIVE ? 'live' : 'deferred'}`);
      }
      map.fill(SECTOR_LIVE, dva.offset / sector, (dva.offset + dva.asize) / sector);
    }
    this.live.push({ dvas, bornTxg: this.txg });
    return dvas;
  }

  /** Frees a live block: at once when born this txg, else deferred in the model too. */
  free(index: number, useImmediate = false): void {
    const block = this.live[index] as LiveBlock;
    this.live[index] = this.live[this.live.length - 1] as LiveBlock;
    this.live.pop();
    for (const dva of block.dvas) {
      const v = this.vdevs.get(dva.vdev) as AllocatorVdev;
      const sector = 2 ** v.ashift;
      const born = block.bornTxg === this.txg;
      if (born && useImmediate) this.allocator.freeImmediate(dva);
      else this.allocator.free(dva);
      (this.sectors.get(dva.vdev) as Uint8Array).fill(born ? SECTOR_FREE : SECTOR_DEFERRED, dva.offset / sector, (dva.offset + dva.asize) / sector);
      if (!born) this.deferred.push({ txg: this.txg, dva });
    }
  }

  /** Writes space maps until nothing is pending (the first passes allocate, as writing the objects does). */
  end(): void {
    let pass = 0;
    for (;;) {
      const updates = this.allocator.pendingRecords();
      if (updates.length === 0) break;
      pass++;
      assert.ok(pass < 20, 'space map sync passes do not converge');
      for (const u of updates) this.persist(u);
      if (pass <= 2 && this.spaceMapWritesAllocate) {
        for (let i = 0; i < Math.min(updates.length, 3); i++) {
          try {
            this.allocate(4096, 1);
          } catch (e) {
            if (!isCairnError(e, 'ENOSPC')) throw e;
          }
        }
      }
    }
    this.passesMax = Math.max(this.passesMax, pass);
    this.allocator.endSync(this.txg);
    const keep: { txg: number; dva: Dva }[] = [];
    for (const d of this.deferred) {
      if (d.txg + DEFER_TXGS <= this.txg) {
        const v = this.vdevs.get(d.dva.vdev) as AllocatorVdev;
        const sector = 2 ** v.ashift;
        (this.sectors.get(d.dva.vdev) as Uint8Array).fill(SECTOR_FREE, d.dva.offset / sector, (d.dva.offset + d.dva.asize) / sector);
      } else {
        keep.push(d);
      }
    }
    this.deferred = keep;
  }

  persist(u: SpaceMapUpdate): void {
    const key = `${u.vdevId}:${u.metaslabIndex}`;
    if (u.mode === 'replace') {
      this.logs.set(key, [u.bytes]);
      this.condenses++;
    } else {
      const chunks = this.logs.get(key) ?? [];
      chunks.push(u.bytes);
      this.logs.set(key, chunks);
    }
  }

  log(vdevId: number, index: number): Buffer {
    return Buffer.concat(this.logs.get(`${vdevId}:${index}`) ?? []);
  }

  modelFreeBytes(vdevId?: number): number {
    let bytes = 0;
    for (const [id, map] of this.sectors) {
      if (vdevId !== undefined && id !== vdevId) continue;
      const sector = 2 ** (this.vdevs.get(id) as AllocatorVdev).ashift;
      for (const s of map) if (s === SECTOR_FREE) bytes += sector;
    }
    return bytes;
  }

  checkSpace(): void {
    const space = this.allocator.space();
    const model = this.modelFreeBytes();
    assert.equal(space.freeBytes, model, `txg ${this.txg}: allocator free ${space.freeBytes} != model ${model}`);
    assert.equal(space.allocatedBytes + space.freeBytes, space.sizeBytes);
    for (const id of this.vdevs.keys()) assert.equal(this.allocator.vdevSpace(id).freeBytes, this.modelFreeBytes(id), `vdev ${id}`);
  }

  /** Free space as the logs must say: model free or deferred (frees are logged in their own txg). */
  modelLogFree(vdevId: number, start: number, end: number): RangeTree {
    const sector = 2 ** (this.vdevs.get(vdevId) as AllocatorVdev).ashift;
    const map = this.sectors.get(vdevId) as Uint8Array;
    const tree = new RangeTree();
    let run = -1;
    for (let s = start / sector; s <= end / sector; s++) {
      const free = s < end / sector && map[s] !== SECTOR_LIVE;
      if (free && run < 0) run = s;
      if (!free && run >= 0) {
        tree.add(run * sector, s * sector);
        run = -1;
      }
    }
    return tree;
  }

  /** Replays every persisted log (concatenated appends) and compares with the model. */
  checkLogs(): void {
    for (const [id, v] of this.vdevs) {
      for (let i = 0; i < this.allocator.metaslabCount(id); i++) {
        const ms = this.allocator.metaslab(id, i);
        const fromLog = replay(this.log(id, i), ms.geometry, ms.label);
        const expected = this.modelLogFree(id, ms.startBytes, ms.endBytes);
        assert.ok(fromLog.equals(expected), `txg ${this.txg}: replay of ${ms.label} differs from the model (vdev asize ${v.asize})`);
        assert.ok(ms.logFreeTree().equals(expected), `txg ${this.txg}: ${ms.label} in-memory log view differs`);
      }
    }
  }
}

function withSeed(name: string, body: (random: () => number, seed: number) => void): void {
  test(name, () => {
    const seed = Number(process.env.SEED ?? Date.now() % 1_000_000);
    try {
      body(rng(seed), seed);
    } catch (e) {
      console.error(`"${name}" failed with SEED=${seed}`);
      throw e;
    }
  });
}

withSeed('random alloc/free/sync against a sector model: no overlap, no early reuse, exact space, logs replay', (random) => {
  const vdevs = [fakeVdev(0, 256 * MiB, 12), fakeVdev(1, 128 * MiB, 9), fakeVdev(2, 192 * MiB, 12)];
  const h = new Harness(vdevs, { condenseMinBytes: 2 * KiB });
  let enospc = 0;
  for (let round = 0; round < 120; round++) {
    h.begin();
    // Phases: fill towards full, then churn, then drain, so ENOSPC and fragmentation both happen.
    const phase = Math.floor(round / 30) % 4;
    const allocBias = phase === 0 ? 0.9 : phase === 1 ? 0.55 : phase === 2 ? 0.6 : 0.2;
    const ops = 40 + Math.floor(random() * 60);
    for (let op = 0; op < ops; op++) {
      // An early sync pass: later same-txg frees of these blocks must be logged, and their reuse too.
      if (random() < 0.03) for (const u of h.allocator.pendingRecords()) h.persist(u);
      if (random() < allocBias || h.live.length === 0) {
        const big = random() < 0.3;
        const psize = big ? (1 + Math.floor(random() * 32)) * 64 * KiB : 512 * (1 + Math.floor(random() * 64));
        const r = random();
        const copies = r < 0.7 ? 1 : r < 0.9 ? 2 : 3;
        try {
          h.allocate(psize, copies);
        } catch (e) {
          if (!isCairnError(e, 'ENOSPC')) throw e;
          enospc++;
        }
      } else {
        h.free(Math.floor(random() * h.live.length), random() < 0.5);
      }
    }
    h.checkSpace();
    h.end();
    h.checkSpace();
    if (round % 10 === 9) h.checkLogs();
  }
  assert.ok(enospc > 0, 'the run never filled the pool; the test is too weak');
  assert.ok(h.condenses > 0, 'no log was condensed');
  assert.ok(h.passesMax >= 2, 'space map writes never needed a second pass');
  assert.ok(h.allocator.space().fragmentationPercent > 0);

  // Reopen from the persisted logs alone: same free space (deferred frees are simply free on import).
  const reopened = new MetaslabAllocator(vdevs, { persisted: h.allocator.config() });
  assert.equal(reopened.unloadedMetaslabCount(), 16 + 8 + 12);
  assert.equal(reopened.space().freeBytes, 0, 'unloaded metaslabs must not look free');
  for (const v of vdevs) {
    for (let i = 0; i < reopened.metaslabCount(v.id); i++) reopened.loadMetaslab(v.id, i, h.log(v.id, i));
  }
  assert.equal(reopened.unloadedMetaslabCount(), 0);
  let expectedFree = 0;
  for (const v of vdevs) expectedFree += h.modelLogFree(v.id, 0, v.asize).totalBytes;
  assert.equal(reopened.space().freeBytes, expectedFree);
  for (const v of vdevs) {
    for (let i = 0; i < reopened.metaslabCount(v.id); i++) {
      assert.ok(reopened.metaslab(v.id, i).allocatable.equals(h.allocator.metaslab(v.id, i).logFreeTree()));
    }
  }

  // Free everything; after DEFER_TXGS more syncs the pool is empty to the byte and the logs agree.
  h.spaceMapWritesAllocate = false;
  h.begin();
  while (h.live.length > 0) h.free(h.live.length - 1);
  h.end();
  assert.ok(h.allocator.space().freeBytes < h.allocator.space().sizeBytes, 'frees of older blocks were not deferred');
  for (let i = 0; i < DEFER_TXGS; i++) {
    h.begin();
    h.end();
  }
  const space = h.allocator.space();
  assert.equal(space.freeBytes, space.sizeBytes);
  assert.equal(space.allocatedBytes, 0);
  assert.equal(space.sizeBytes, 576 * MiB);
  h.checkLogs();
});

test('a deferred free is not reusable until txg + DEFER_TXGS has synced; same-txg frees return at once', () => {
  const h = new Harness([fakeVdev(0, 16 * MiB)]);
  h.begin();
  const blocks: Dva[] = [];
  for (let i = 0; i < 16; i++) blocks.push((h.allocate(MiB, 1)[0]) as Dva);
  assert.throws(() => h.allocate(MiB, 1), (e: unknown) => isCairnError(e, 'ENOSPC'));
  assert.throws(() => h.allocate(4096, 1), (e: unknown) => isCairnError(e, 'ENOSPC'));
  h.end();
  assert.equal(h.allocator.space().freeBytes, 0);

  h.begin(); // txg 2 frees one block
  const victim = h.live.findIndex((b) => b.dvas[0]?.offset === 5 * MiB);
  h.free(victim);
  assert.equal(h.allocator.space().allocatedBytes, 16 * MiB, 'deferred frees count as allocated');
  assert.throws(() => h.allocate(MiB, 1), (e: unknown) => isCairnError(e, 'ENOSPC'));
  h.end();
  for (const txg of [3, 4]) {
    h.begin();
    assert.equal(h.txg, txg);
    assert.throws(() => h.allocate(4096, 1), (e: unknown) => isCairnError(e, 'ENOSPC'), `txg ${txg} reused a deferred free`);
    h.end();
  }
  h.begin(); // txg 5: txg 2 + DEFER_TXGS has synced
  assert.equal(h.allocator.space().freeBytes, MiB);
  const again = h.allocate(MiB, 1)[0] as Dva;
  assert.equal(again.offset, 5 * MiB);
  // Allocated and freed within the syncing txg, before any space map write: back at once, never logged.
  h.free(h.live.length - 1);
  assert.equal(h.allocator.space().freeBytes, MiB);
  assert.deepEqual(h.allocator.pendingRecords(), []);
  const third = h.allocate(MiB, 1)[0] as Dva;
  assert.equal(third.offset, 5 * MiB);
  // After its alloc was written, a same-txg free is logged as a free and still returns at once.
  const updates = h.allocator.pendingRecords();
  assert.equal(updates.length, 1);
  for (const u of updates) h.persist(u);
  h.free(h.live.length - 1, true);
  assert.equal(h.allocator.space().freeBytes, MiB);
  h.allocate(MiB, 1);
  h.end();
  h.checkLogs();
  h.checkSpace();
});

test('misuse is an assertion failure: double free, free of a deferred block, endSync with records pending', () => {
  const a = new MetaslabAllocator([fakeVdev(0, 64 * MiB)]);
  a.beginSync(1);
  const [dva] = a.allocate(8192, 1) as [Dva];
  const [other] = a.allocate(8192, 1) as [Dva];
  assert.throws(() => a.endSync(1), InvariantError);
  a.pendingRecords();
  a.endSync(1);
  a.beginSync(2);
  a.free(dva);
  assert.throws(() => a.free(dva), InvariantError);
  assert.throws(() => a.freeImmediate(other), InvariantError, 'other was born in txg 1');
  assert.throws(() => a.free(other, true), InvariantError);
  assert.throws(() => a.free({ vdev: 0, offset: 32 * MiB, asize: 4096 }), InvariantError, 'never allocated');
  assert.throws(() => a.free({ vdev: 0, offset: 16 * MiB - 4096, asize: 8192 }), InvariantError, 'spans metaslabs');
  assert.throws(() => a.beginSync(3), InvariantError);
  a.pendingRecords();
  a.endSync(2);
  a.beginSync(3);
  assert.throws(() => a.free(dva), InvariantError, 'still deferred');
  a.pendingRecords();
  a.endSync(3);
  assert.throws(() => a.allocate(4096, 1), InvariantError, 'outside a syncing txg');
  assert.throws(() => a.beginSync(3), InvariantError, 'txg must advance');
});

test('copies on one vdev land at least asize/8 apart; on several vdevs each copy has its own', () => {
  const one = new MetaslabAllocator([fakeVdev(0, 2 * GiB)]);
  one.beginSync(1);
  for (let i = 0; i < 300; i++) {
    const copies = 2 + (i % 2);
    const dvas = one.allocate(4096 * (1 + (i % 32)), copies);
    for (let x = 0; x < dvas.length; x++) {
      for (let y = x + 1; y < dvas.length; y++) {
        const gap = Math.abs((dvas[x] as Dva).offset - (dvas[y] as Dva).offset);
        assert.ok(gap >= (2 * GiB) / 8, `copies ${x} and ${y} only ${gap} bytes apart`);
      }
    }
  }
  one.pendingRecords();
  one.endSync(1);

  const three = new MetaslabAllocator([fakeVdev(0, GiB), fakeVdev(1, GiB), fakeVdev(2, GiB)]);
  three.beginSync(1);
  const primaries = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const dvas = three.allocate(128 * KiB, 3);
    assert.deepEqual(new Set(dvas.map((d) => d.vdev)).size, 3);
    primaries.add((dvas[0] as Dva).vdev);
    const two = three.allocate(64 * KiB, 2);
    assert.notEqual((two[0] as Dva).vdev, (two[1] as Dva).vdev);
  }
  assert.equal(primaries.size, 3, 'the rotor never moved');
  // A vdev marked not allocatable takes nothing; copies then share the rest.
  three.setAllocatable(1, false);
  for (let i = 0; i < 100; i++) {
    const dvas = three.allocate(64 * KiB, 3);
    assert.ok(dvas.every((d) => d.vdev !== 1));
    assert.equal(new Set(dvas.map((d) => d.vdev)).size, 2);
  }
  three.pendingRecords();
  three.endSync(1);
});

test('the rotor shares writes in proportion to free space', () => {
  const a = new MetaslabAllocator([fakeVdev(0, GiB), fakeVdev(1, 3 * GiB)]);
  a.beginSync(1);
  for (let i = 0; i < 1600; i++) a.allocate(128 * KiB, 1);
  const small = a.vdevSpace(0).allocatedBytes;
  const large = a.vdevSpace(1).allocatedBytes;
  assert.equal(small + large, 200 * MiB);
  const ratio = large / small;
  assert.ok(ratio > 2.4 && ratio < 3.6, `large/small = ${ratio}`);
  a.pendingRecords();
  a.endSync(1);
});

test('ENOSPC rolls back the copies already placed, and frees make room again after the defer', () => {
  const h = new Harness([fakeVdev(0, 16 * MiB)]);
  h.spaceMapWritesAllocate = false;
  h.begin();
  for (let i = 0; i < 15; i++) h.allocate(MiB, 1);
  h.end();
  h.begin();
  assert.throws(() => h.allocate(MiB, 2), (e: unknown) => isCairnError(e, 'ENOSPC') && /2 copies/.test(e.message));
  assert.equal(h.allocator.space().freeBytes, MiB, 'a failed allocate leaked its first copy');
  assert.deepEqual(h.allocator.pendingRecords(), [], 'a failed allocate reached the space map');
  const [single] = h.allocate(MiB, 1) as [Dva];
  assert.equal(h.allocator.space().freeBytes, 0);
  h.end();
  h.begin();
  while (h.live.length > 0) h.free(0);
  h.end();
  for (let i = 0; i < DEFER_TXGS; i++) {
    h.begin();
    assert.throws(() => h.allocate(MiB, 1), (e: unknown) => isCairnError(e, 'ENOSPC'));
    h.end();
  }
  h.begin();
  assert.equal(h.allocator.space().freeBytes, 16 * MiB);
  for (let i = 0; i < 8; i++) h.allocate(MiB, 2);
  assert.ok(single.offset >= 0);
  h.end();
  h.checkLogs();
});

test('vdevs added at runtime take writes; config reopens with the same shift; bad logs leave a metaslab unloaded', () => {
  const h = new Harness([fakeVdev(0, 256 * MiB)]);
  h.begin();
  for (let i = 0; i < 20; i++) h.allocate(128 * KiB, 1);
  const added = fakeVdev(7, 512 * MiB, 9);
  h.allocator.addVdev(added);
  h.track(added);
  const seen = new Set<number>();
  for (let i = 0; i < 100; i++) for (const d of h.allocate(128 * KiB, 1)) seen.add(d.vdev);
  assert.deepEqual([...seen].sort(), [0, 7]);
  h.end();
  h.checkLogs();
  assert.deepEqual(h.allocator.config(), [
    { vdevId: 0, metaslabShift: 24, metaslabCount: 16 },
    { vdevId: 7, metaslabShift: 24, metaslabCount: 32 },
  ]);

  const reopened = new MetaslabAllocator([fakeVdev(0, 256 * MiB), added], { persisted: h.allocator.config() });
  const active = h.allocator.config()[1] as { vdevId: number };
  const index = [...Array(32).keys()].find((i) => h.log(active.vdevId, i).length > 0) as number;
  const good = h.log(7, index);
  const truncated = good.subarray(0, good.length - 16);
  assert.throws(() => reopened.loadMetaslab(7, index, truncated), (e: unknown) => isCairnError(e, 'EIO') && /vdev 7 metaslab \d+: malformed space map/.test(e.message));
  assert.equal(reopened.metaslab(7, index).loaded, false);
  reopened.loadMetaslab(7, index, good);
  assert.ok(reopened.metaslab(7, index).allocatable.equals(h.modelLogFree(7, index * 16 * MiB, (index + 1) * 16 * MiB)));
  assert.throws(
    () => new MetaslabAllocator([fakeVdev(0, 256 * MiB)], { persisted: [{ vdevId: 0, metaslabShift: 24, metaslabCount: 9 }] }),
    (e: unknown) => isCairnError(e, 'EINVAL'),
  );
  // A reopened metaslab can be allocated from, after the blocks the log calls allocated.
  reopened.beginSync(10);
  for (let i = 0; i < 100; i++) {
    const [dva] = reopened.allocate(64 * KiB, 1) as [Dva];
    if (dva.vdev !== 7) continue;
    const map = h.sectors.get(7) as Uint8Array;
    for (let s = dva.offset / 512; s < (dva.offset + dva.asize) / 512; s++) assert.notEqual(map[s], SECTOR_LIVE);
  }
});

test('metaslab shift gives 100..200 metaslabs of at least 16 MiB', () => {
  for (const asize of [64 * MiB, 3 * GiB, 100 * GiB, 1024 * GiB, 7 * 1024 * GiB + 12345 * 4096]) {
    const shift = chooseMetaslabShift(asize);
    assert.ok(shift >= 24);
    const count = Math.ceil(asize / 2 ** shift);
    if (shift > 24) assert.ok(count >= 100 && count <= 200, `asize ${asize}: ${count} metaslabs`);
  }
  assert.equal(chooseMetaslabShift(1000 * MiB), 24);
});

test('explicit condense produces a log that replays to the same state, deferred frees included', () => {
  const h = new Harness([fakeVdev(0, 32 * MiB)], { condenseMinBytes: Number.MAX_SAFE_INTEGER });
  const random = rng(42);
  for (let round = 0; round < 6; round++) {
    h.begin();
    for (let i = 0; i < 200; i++) {
      if (random() < 0.6 || h.live.length === 0) h.allocate(4096 * (1 + Math.floor(random() * 4)), 1);
      else h.free(Math.floor(random() * h.live.length));
    }
    h.end();
  }
  h.checkLogs();
  h.begin();
  h.free(0);
  for (let i = 0; i < 2; i++) {
    const before = h.log(0, i).length;
    const fresh = h.allocator.condense(0, i);
    h.persist({ vdevId: 0, metaslabIndex: i, mode: 'replace', bytes: fresh });
    assert.ok(before === 0 || fresh.length <= before, `condensed ${before} to ${fresh.length} bytes`);
  }
  h.end();
  h.checkLogs();
  h.checkSpace();
});

test('metaslab: held frees are logged but not reused until released', () => {
  const vdev = { id: 0, asize: 64 * 1024 * 1024, ashift: 12, allocatedSize: (p: number) => p };
  const a = new MetaslabAllocator([vdev]);
  a.beginSync(1);
  const [dva] = a.allocate(4096, 1);
  while (a.pendingRecords().length > 0);
  a.endSync(1);
  const freeAfterAlloc = a.space().freeBytes;
  a.holdFrees(true);
  a.beginSync(2);
  a.free(dva!);
  while (a.pendingRecords().length > 0);
  a.endSync(2);
  for (let txg = 3; txg < 8; txg++) {
    a.beginSync(txg);
    a.endSync(txg);
  }
  assert.equal(a.space().freeBytes, freeAfterAlloc, 'held free not returned');
  a.holdFrees(false);
  a.beginSync(8);
  a.endSync(8);
  assert.equal(a.space().freeBytes, freeAfterAlloc + 4096, 'released after the hold');
});
