/**
 * MirrorVdev: every child holds the whole address space. Writes go to every usable child at once;
 * reads take the first child whose data verifies and write that data back over every child that gave
 * bad data or failed (self-heal). A mirror of one child is legal: it is what a leaf becomes while a
 * second device is attached and resilvered.
 */
import { CairnError, isCairnError } from '../util/errors.js';
import { assert, InvariantError } from '../util/assert.js';
import type {
  BlockVerifier, ReadOptions, ReadResult, Vdev, VdevConfig, VdevErrorCounts, VdevKind, VdevState,
} from './types.js';
import { randomGuid } from './guid.js';

/** A child I/O will be tried on: one whose state lets it serve reads. */
export function isReadable(v: Vdev): boolean {
  return v.state === 'ONLINE' || v.state === 'DEGRADED';
}

/** Child vdevs whose position a parent can renumber (every Vdev class in this layer). */
interface Renumberable extends Vdev {
  id: number;
}

export interface MirrorVdevOptions {
  guid?: string;
  id: number;
  ashift: number;
  /** Defaults to the smallest child's asize. */
  asize?: number;
  children: Vdev[];
}

export class MirrorVdev implements Vdev {
  readonly kind: VdevKind = 'mirror';
  readonly guid: string;
  id: number;
  readonly ashift: number;
  readonly asize: number;
  readonly errors: VdevErrorCounts = { read: 0, write: 0, checksum: 0 };
  private readonly kids: Vdev[];
  /** Rotates the first child tried so reads spread over the sides. */
  private readCursor = 0;

  constructor(options: MirrorVdevOptions) {
    assert(options.children.length >= 1, 'a mirror needs a child');
    const smallest = Math.min(...options.children.map((c) => c.asize));
    this.guid = options.guid ?? randomGuid();
    this.id = options.id;
    this.ashift = options.ashift;
    this.asize = options.asize ?? smallest;
    assert(this.asize <= smallest, `mirror asize ${this.asize} exceeds a child's ${smallest}`);
    for (const child of options.children) assert(child.ashift <= this.ashift, 'child ashift above the mirror');
    this.kids = [...options.children];
    this.renumber();
  }

  /** The vdev a single leaf becomes when a device is attached to it (zpool attach). */
  static fromLeaf(existing: Vdev, attached: Vdev): MirrorVdev {
    if (attached.asize < existing.asize) {
      throw new CairnError('EINVAL', `device is too small to attach (${attached.asize} < ${existing.asize} bytes)`);
    }
    return new MirrorVdev({ id: existing.id, ashift: existing.ashift, asize: existing.asize, children: [existing, attached] });
  }

  get children(): readonly Vdev[] {
    return this.kids;
  }

  get state(): VdevState {
    const readable = this.kids.filter(isReadable).length;
    if (readable === 0) return 'FAULTED';
    return this.kids.every((c) => c.state === 'ONLINE') ? 'ONLINE' : 'DEGRADED';
  }

  /** Adds a child (it starts empty: reads heal it block by block, a resilver fills it). */
  attachChild(child: Vdev): void {
    if (child.asize < this.asize) {
      throw new CairnError('EINVAL', `device is too small to attach (${child.asize} < ${this.asize} bytes)`);
    }
    assert(!this.kids.some((c) => c.guid === child.guid), `vdev ${child.guid} is already attached`);
    this.kids.push(child);
    this.renumber();
  }

  /** Removes a child and returns it (the caller closes it). The last child cannot be detached. */
  detachChild(guid: string): Vdev {
    const index = this.kids.findIndex((c) => c.guid === guid);
    if (index < 0) throw new CairnError('ENOENT', `no child ${guid} in mirror ${this.guid}`);
    if (this.kids.length === 1) throw new CairnError('EINVAL', 'cannot detach the only child of a mirror');
    const [child] = this.kids.splice(index, 1);
    assert(child !== undefined, 'splice lost the child');
    this.renumber();
    return child;
  }

  allocatedSize(psize: number): number {
    assert(psize > 0 && psize % 2 ** this.ashift === 0, `psize ${psize} not a sector multiple`);
    return psize;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkRange(offset, data.length);
    const targets = this.kids.filter(isReadable);
    if (targets.length === 0) throw new CairnError('EIO', `mirror ${this.guid}: no child can be written`);
    const results = await Promise.allSettled(targets.map((c) => c.write(offset, data)));
    rethrowBugs(results);
    // Each child counted its own failure; one good copy is enough, the DTL-less resilver heals the rest.
    if (!results.some((r) => r.status === 'fulfilled')) {
      this.errors.write++;
      throw new CairnError('EIO', `mirror ${this.guid}: write failed on every child at ${offset}`);
    }
  }

  async read(offset: number, size: number, verify: BlockVerifier, options?: ReadOptions): Promise<ReadResult> {
    this.checkRange(offset, size);
    const order = this.readOrder();
    if (order.length === 0) throw new CairnError('EIO', `mirror ${this.guid}: no readable child`);
    const failed: Vdev[] = [];
    let sawBadData = false;
    let good: ReadResult | null = null;
    if (options?.all === true) {
      const results = await Promise.allSettled(order.map((c) => c.read(offset, size, verify, { all: true })));
      rethrowBugs(results);
      for (let i = 0; i < results.length; i++) {
        const r = results[i];
        const child = order[i];
        assert(r !== undefined && child !== undefined, 'result without child');
        if (r.status === 'fulfilled') {
          if (good === null) good = r.value;
          else good.repairedBytes += r.value.repairedBytes;
        } else {
          failed.push(child);
          if (isCairnError(r.reason, 'ECKSUM')) sawBadData = true;
        }
      }
    } else {
      for (const child of order) {
        try {
          good = await child.read(offset, size, verify, options);
          break;
        } catch (e) {
          if (!isCairnError(e)) throw e;
          failed.push(child);
          if (e.code === 'ECKSUM') sawBadData = true;
        }
      }
    }
    const result = good as ReadResult | null;
    if (result === null) {
      if (sawBadData) {
        this.errors.checksum++;
        throw new CairnError('ECKSUM', `mirror ${this.guid}: no child has a valid copy of ${offset}+${size}`, { offset, size });
      }
      this.errors.read++;
      throw new CairnError('EIO', `mirror ${this.guid}: every child failed to read ${offset}+${size}`, { offset, size });
    }
    result.repairedBytes += await this.heal(failed, offset, result.data);
    return result;
  }

  async flush(): Promise<void> {
    const results = await Promise.allSettled(this.kids.filter(isReadable).map((c) => c.flush()));
    rethrowBugs(results);
    if (results.length > 0 && !results.some((r) => r.status === 'fulfilled')) {
      throw new CairnError('EIO', `mirror ${this.guid}: flush failed on every child`);
    }
  }

  async close(): Promise<void> {
    await Promise.all(this.kids.map((c) => c.close()));
  }

  config(): VdevConfig {
    return {
      type: 'mirror', guid: this.guid, id: this.id, ashift: this.ashift, asize: this.asize,
      children: this.kids.map((c) => c.config()),
    };
  }

  /** Writes the good copy over children that failed; a child that fails again only counts its error. */
  private async heal(failed: readonly Vdev[], offset: number, data: Buffer): Promise<number> {
    const targets = failed.filter(isReadable);
    if (targets.length === 0) return 0;
    const results = await Promise.allSettled(targets.map((c) => c.write(offset, data)));
    rethrowBugs(results);
    return results.filter((r) => r.status === 'fulfilled').length * data.length;
  }

  private readOrder(): Vdev[] {
    const readable = this.kids.filter(isReadable);
    if (readable.length <= 1) return readable;
    // Healthy sides first, rotating among them; degraded interior children after.
    const start = this.readCursor++ % readable.length;
    const rotated = [...readable.slice(start), ...readable.slice(0, start)];
    return [...rotated.filter((c) => c.state === 'ONLINE'), ...rotated.filter((c) => c.state !== 'ONLINE')];
  }

  private checkRange(offset: number, size: number): void {
    const sector = 2 ** this.ashift;
    assert(offset >= 0 && offset % sector === 0 && size > 0 && size % sector === 0, `bad mirror I/O ${offset}+${size}`);
    assert(offset + size <= this.asize, `mirror I/O ${offset}+${size} beyond asize ${this.asize}`);
  }

  private renumber(): void {
    this.kids.forEach((c, i) => {
      (c as Renumberable).id = i;
    });
  }
}

/** Assertion failures in a child are bugs, never "one side failed": they stop the operation. */
export function rethrowBugs(results: readonly PromiseSettledResult<unknown>[]): void {
  for (const r of results) {
    if (r.status === 'rejected' && (r.reason instanceof InvariantError || !isCairnError(r.reason))) throw r.reason;
  }
}
