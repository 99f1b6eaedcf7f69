/**
 * Scrub and resilver (OpenZFS dsl_scan): one traversal of every block reachable from the last
 * committed txg — the MOS and every dataset — asking the io pipeline to read every copy of each block
 * (every mirror side, every raidz column with parity) and rewrite whatever fails its checksum.
 *
 * Resilver is the same walk narrowed to blocks with a copy on the affected top-level vdevs and born
 * after the txg the device went missing (0 for a new device), so only what is allocated — and only
 * what changed while a device was offline — is copied.
 *
 * While a scan runs the allocator keeps every freed block out of reuse: the walk follows pointers of
 * the txg it started from, and those blocks must still hold what the pointers say.
 */
import type { BlockPointer } from '../io/blkptr.js';
import { CairnError } from '../util/errors.js';
import type { ScanStatus } from './types.js';
import type { Pool } from './pool.js';
import { ObjectSet } from '../objects/objset.js';

export interface ScanScope {
  fromTxg: number;
  /** Top-level vdev GUIDs whose blocks to visit; null = all. */
  vdevGuids: Set<string> | null;
  /** Leaves being rebuilt, shown as "(resilvering)" until the walk ends. */
  leaves?: string[];
}

class ScanCanceled extends Error {}

/** Block verifications in flight during a scan. */
const SCAN_CONCURRENCY = 16;

export class Scanner {
  private readonly pool: Pool;
  private state: ScanStatus | null = null;
  private running: Promise<ScanStatus> | null = null;
  private canceled = false;
  readonly resilveringLeaves = new Set<string>();

  constructor(pool: Pool) {
    this.pool = pool;
  }

  status(): ScanStatus | null {
    return this.state ? { ...this.state } : null;
  }

  /** Hook for the syncing txg (nothing to do yet: progress is kept in memory). */
  beforeSync(_txg: number): void {}

  /** Stops a running scrub (a resilver is not stopped: a replace depends on it finishing). */
  cancel(options: { resilverToo?: boolean } = {}): void {
    if (this.running && (this.state?.function === 'scrub' || options.resilverToo === true)) this.canceled = true;
  }

  async idle(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined);
  }

  /**
   * Runs a scan and resolves with how it ended. A scrub asked for while a scan runs is refused; a
   * resilver waits its turn. Scans never overlap: the check and the claim below have no await between.
   */
  async start(kind: 'scrub' | 'resilver', scope: ScanScope): Promise<ScanStatus> {
    if (this.running && kind === 'scrub') {
      if (this.state?.function === 'scrub') throw new CairnError('EBUSY', `pool '${this.pool.name}' is already being scrubbed`);
      throw new CairnError('EBUSY', `pool '${this.pool.name}' is resilvering; scrub later`);
    }
    while (this.running) await this.running.catch(() => undefined);
    for (const g of scope.leaves ?? []) this.resilveringLeaves.add(g);
    const run = this.walk(kind, scope).finally(() => {
      for (const g of scope.leaves ?? []) this.resilveringLeaves.delete(g);
      this.running = null;
      this.canceled = false;
    });
    this.running = run;
    return run;
  }

  private async walk(kind: 'scrub' | 'resilver', scope: ScanScope): Promise<ScanStatus> {
    const pool = this.pool;
    await pool.sync();
    const space = pool.allocator.space();
    const status: ScanStatus = {
      function: kind, state: 'scanning', startMs: Date.now(), examinedBytes: 0,
      totalBytes: space.allocatedBytes, repairedBytes: 0, errors: 0,
    };
    this.state = status;
    pool.allocator.holdFrees(true);
    try {
      const mosRoot = pool.mos.os.root;
      // Every head, snapshot and clone, each pruned where an older snapshot takes over (each block once).
      const datasetRoots = pool.datasets.traversalRoots();
      // Blocks are verified SCAN_CONCURRENCY at a time while the walk goes on; the walk itself reads
      // parents through the verified (and healing) read path, so it never follows a bad pointer.
      const inFlight = new Set<Promise<void>>();
      let failure: unknown = null;
      const visit = async (bp: BlockPointer): Promise<void> => {
        if (this.canceled) throw new ScanCanceled();
        if (failure !== null) throw failure;
        if (bp.birthTxg <= scope.fromTxg && scope.fromTxg > 0) return;
        if (scope.vdevGuids && !bp.dvas.some((d) => scope.vdevGuids?.has(pool.vdevs[d.vdev]?.guid ?? ''))) return;
        const done: Promise<void> = pool.io.scrub(bp).then((result) => {
          for (const dva of bp.dvas) status.examinedBytes += dva.asize;
          status.repairedBytes += result.repairedBytes;
          if (result.unrecoverable) status.errors++;
        }).catch((e: unknown) => {
          failure ??= e;
        }).finally(() => inFlight.delete(done));
        inFlight.add(done);
        if (inFlight.size >= SCAN_CONCURRENCY) await Promise.race(inFlight);
      };
      try {
        await pool.mos.os.traverse(visit, mosRoot);
        for (const root of datasetRoots) await traverseObjset(pool, root.rootBp, visit, root.minBirthTxg);
      } finally {
        await Promise.all(inFlight);
      }
      if (failure !== null) throw failure;
      status.state = 'finished';
    } catch (e) {
      if (!(e instanceof ScanCanceled)) {
        status.state = 'canceled';
        throw e;
      }
      status.state = 'canceled';
    } finally {
      status.endMs = Date.now();
      status.examinedBytes = Math.min(status.examinedBytes, Math.max(status.totalBytes, status.examinedBytes));
      pool.allocator.holdFrees(false);
    }
    return { ...status };
  }
}

/** Walks a dataset's object set from a root pointer (no need to open it as a live object set). */
async function traverseObjset(pool: Pool, rootBp: BlockPointer, visit: (bp: BlockPointer) => Promise<void>, minBirthTxg: number): Promise<void> {
  const os = await ObjectSet.open(pool.env, rootBp, { checksum: 3, compression: 1, copies: 1, metadataCopies: 2 });
  await os.traverse(visit, rootBp, minBirthTxg);
}
