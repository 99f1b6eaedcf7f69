/**
 * TxgGate: who may touch the open txg when (OpenZFS txg_hold_open / txg_sync).
 *
 * Mutations run inside hold(): many at once. A txg sync runs inside exclusive(): it waits for every
 * hold to finish and keeps new ones waiting until it is done, so everything one hold changed lands in
 * one txg. When dirty data passes the limit, new holds wait for a sync (the write throttle), so memory
 * stays bounded however fast a client writes. A sync is asked for early, when a hold ends, at half that
 * limit or at a count of dirty objects: a txg's sync costs CPU per object, and new holds wait for all
 * of it, so bounding the objects bounds that pause.
 *
 * Holds do not nest: code that runs inside a hold (createKv, the object layer) takes none of its own,
 * because a hold that waits for a sync while its caller's hold keeps that sync waiting is a deadlock.
 * Telling a nested hold apart would need AsyncLocalStorage, whose promise hooks cost every await in the
 * process (a third of a file system lookup's time, measured): the test suite (CAIRN_TEST=1) checks the
 * rule with it instead, and fails on a nested hold whether or not a sync was waiting.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { assert } from '../util/assert.js';

/** Set under the test suite only (see the top of the file). */
const nestingCheck = process.env.CAIRN_TEST === '1' ? new AsyncLocalStorage<true>() : null;

export class TxgGate {
  private holders = 0;
  private exclusiveRunning: Promise<void> | null = null;
  private drained: (() => void) | null = null;
  dirtyBytes = 0;
  readonly dirtyBytesMax: number;
  /** Objects made dirty in the open txg (reset once a txg's datasets are written, or found clean). */
  dirtyObjects = 0;
  /** A sync is asked for once this many objects are dirty (DIRTY_OBJECTS_SYNC in pool.ts). */
  private readonly dirtyObjectsSync: number;
  /** Asked for a sync: awaited by the write throttle, not awaited by the early triggers. */
  private readonly requestSync: () => Promise<void>;

  constructor(dirtyBytesMax: number, requestSync: () => Promise<void>, dirtyObjectsSync = Number.POSITIVE_INFINITY) {
    this.dirtyBytesMax = dirtyBytesMax;
    this.dirtyObjectsSync = dirtyObjectsSync;
    this.requestSync = requestSync;
  }

  async hold<T>(fn: () => Promise<T>): Promise<T> {
    assert(nestingCheck?.getStore() !== true, 'a txg hold taken inside another (holds do not nest)');
    for (;;) {
      if (this.exclusiveRunning) {
        await this.exclusiveRunning;
        continue;
      }
      if (this.dirtyBytes >= this.dirtyBytesMax) {
        await this.requestSync();
        continue;
      }
      break;
    }
    this.holders++;
    try {
      return await (nestingCheck ? nestingCheck.run(true, fn) : fn());
    } finally {
      this.holders--;
      if (this.holders === 0 && this.drained) this.drained();
      if (this.dirtyBytes >= this.dirtyBytesMax / 2 || this.dirtyObjects >= this.dirtyObjectsSync) void this.requestSync().catch(() => undefined);
    }
  }

  /** Runs fn with no hold active and none starting; exclusive sections run one at a time. */
  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    while (this.exclusiveRunning) await this.exclusiveRunning;
    let release!: () => void;
    this.exclusiveRunning = new Promise<void>((resolve) => (release = resolve));
    try {
      if (this.holders > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      this.drained = null;
      return await fn();
    } finally {
      this.exclusiveRunning = null;
      release();
    }
  }

  dirtyBytesChanged(delta: number): void {
    this.dirtyBytes += delta;
  }
}
