/**
 * Adaptive Replacement Cache (Megiddo & Modha, FAST '03), sized in bytes as OpenZFS's arc.c is.
 *
 * Four lists, each kept least-recently-used first (a Map's insertion order; re-inserting moves an
 * entry to the most-recent end):
 *   mru  (T1) blocks seen once recently          — resident
 *   mfu  (T2) blocks seen at least twice          — resident
 *   mruGhost (B1) keys recently evicted from mru  — key and size only
 *   mfuGhost (B2) keys recently evicted from mfu  — key and size only
 * `targetMruBytes` (p) is how much of the cache mru should get. A miss that hits mruGhost says "mru
 * was too small" and raises p; a hit in mfuGhost lowers it. Eviction takes from mru while mru is over
 * p, else from mfu. A one-time scan only ever fills mru and evicts its own blocks, so the frequently
 * used set in mfu survives: that is what ARC buys over LRU.
 *
 * An mfu hit moves its block to the recent end only when it was last moved more than half the list's
 * length of mfu hits ago: recent enough where it is otherwise. V8 makes a Map's delete-and-set of one
 * key O(size) when repeated (14 µs at 10,000 entries here), and a directory's header block is hit on
 * every lookup in it; so each entry's last move is kept in mfuMovedAt, overwritten while the entry stays.
 *
 * Bounds: resident bytes never exceed maxSizeBytes (a value larger than that is not cached); ghost
 * lists hold at most maxSizeBytes of (remembered) bytes together with the resident lists, as in the
 * paper's |T1|+|B1| <= c and |T1|+|T2|+|B1|+|B2| <= 2c, and at most ghostEntriesMax keys each, so a
 * cache of tiny blocks cannot grow its ghost keys without limit.
 *
 * Callers key blocks as `${vdev}:${offset}:${birth}` and must remove() a key when its block is freed
 * or rewritten in place. Returned Buffers are shared with the cache: callers must not modify them.
 */
import { assert } from '../util/assert.js';

export const ARC_GHOST_ENTRIES_MAX_DEFAULT = 65_536;
/** OpenZFS caps one adaptation step at 10× the block size. */
const ADAPT_MULTIPLIER_MAX = 10;

export interface ArcOptions {
  maxSizeBytes: number;
  ghostEntriesMax?: number;
}

export interface ArcStats {
  hits: number;
  misses: number;
  mruHits: number;
  mfuHits: number;
  mruGhostHits: number;
  mfuGhostHits: number;
  evictions: number;
  /** Resident bytes (mru + mfu). */
  sizeBytes: number;
  mruBytes: number;
  mfuBytes: number;
  mruGhostBytes: number;
  mfuGhostBytes: number;
  targetMruBytes: number;
  maxSizeBytes: number;
  entries: number;
}

export class Arc {
  private readonly mru = new Map<string, Buffer>();
  private readonly mfu = new Map<string, Buffer>();
  /** The mfuHits count when an mfu entry last moved to the recent end (see the top of the file); none yet: 0. */
  private readonly mfuMovedAt = new Map<string, number>();
  private readonly mruGhost = new Map<string, number>();
  private readonly mfuGhost = new Map<string, number>();
  private mruBytes = 0;
  private mfuBytes = 0;
  private mruGhostBytes = 0;
  private mfuGhostBytes = 0;
  private targetMruBytes = 0;
  private maxBytes: number;
  private readonly ghostEntriesMax: number;
  private hits = 0;
  private misses = 0;
  private mruHits = 0;
  private mfuHits = 0;
  private mruGhostHits = 0;
  private mfuGhostHits = 0;
  private evictions = 0;

  constructor(options: ArcOptions) {
    assert(Number.isSafeInteger(options.maxSizeBytes) && options.maxSizeBytes >= 0, `bad ARC size ${options.maxSizeBytes}`);
    this.maxBytes = options.maxSizeBytes;
    this.ghostEntriesMax = options.ghostEntriesMax ?? ARC_GHOST_ENTRIES_MAX_DEFAULT;
    assert(this.ghostEntriesMax >= 0, 'bad ghostEntriesMax');
  }

  get maxSizeBytes(): number {
    return this.maxBytes;
  }

  /** Resizes the cache; shrinking evicts at once. */
  set maxSizeBytes(value: number) {
    assert(Number.isSafeInteger(value) && value >= 0, `bad ARC size ${value}`);
    this.maxBytes = value;
    this.targetMruBytes = Math.min(this.targetMruBytes, value);
    this.evictUntilFits(0, false);
    this.trimGhosts();
  }

  get sizeBytes(): number {
    return this.mruBytes + this.mfuBytes;
  }

  /** Returns the cached block and promotes it to mfu, or undefined (a miss). */
  get(key: string): Buffer | undefined {
    let value = this.mru.get(key);
    if (value !== undefined) {
      // Second access: the block moves from "recent" to "frequent".
      this.mru.delete(key);
      this.mruBytes -= value.length;
      this.mfu.set(key, value);
      this.mfuBytes += value.length;
      this.hits++;
      this.mruHits++;
      return value;
    }
    value = this.mfu.get(key);
    if (value !== undefined) {
      this.hits++;
      this.mfuHits++;
      if (this.mfuHits - (this.mfuMovedAt.get(key) ?? 0) > this.mfu.size / 2) {
        this.mfu.delete(key);
        this.mfu.set(key, value);
        this.mfuMovedAt.set(key, this.mfuHits);
      }
      return value;
    }
    this.misses++;
    return undefined;
  }

  /** True when the key is resident; no statistics or recency change. */
  has(key: string): boolean {
    return this.mru.has(key) || this.mfu.has(key);
  }

  /**
   * Caches value under key (after a miss). A key found in a ghost list adapts the mru target and goes
   * straight to mfu. Returns false when the value is larger than the whole cache and was not kept.
   */
  put(key: string, value: Buffer): boolean {
    const sizeBytes = value.length;
    if (this.replaceResident(key, value)) {
      this.trimGhosts();
      return value.length <= this.maxBytes;
    }
    if (sizeBytes > this.maxBytes) {
      this.forgetGhost(key);
      return false;
    }
    const mruGhostSize = this.mruGhost.get(key);
    if (mruGhostSize !== undefined) {
      this.mruGhostHits++;
      this.adapt(true, sizeBytes);
      this.mruGhost.delete(key);
      this.mruGhostBytes -= mruGhostSize;
      this.evictUntilFits(sizeBytes, false);
      this.mfu.set(key, value);
      this.mfuBytes += sizeBytes;
    } else {
      const mfuGhostSize = this.mfuGhost.get(key);
      if (mfuGhostSize !== undefined) {
        this.mfuGhostHits++;
        this.adapt(false, sizeBytes);
        this.mfuGhost.delete(key);
        this.mfuGhostBytes -= mfuGhostSize;
        this.evictUntilFits(sizeBytes, true);
        this.mfu.set(key, value);
        this.mfuBytes += sizeBytes;
      } else {
        this.evictUntilFits(sizeBytes, false);
        this.mru.set(key, value);
        this.mruBytes += sizeBytes;
      }
    }
    this.trimGhosts();
    return true;
  }

  /** Forgets a key everywhere (its block was freed or rewritten). */
  remove(key: string): void {
    const recent = this.mru.get(key);
    if (recent !== undefined) {
      this.mru.delete(key);
      this.mruBytes -= recent.length;
    }
    const frequent = this.mfu.get(key);
    if (frequent !== undefined) {
      this.mfu.delete(key);
      this.mfuMovedAt.delete(key);
      this.mfuBytes -= frequent.length;
    }
    this.forgetGhost(key);
  }

  clear(): void {
    this.mru.clear();
    this.mfu.clear();
    this.mfuMovedAt.clear();
    this.mruGhost.clear();
    this.mfuGhost.clear();
    this.mruBytes = this.mfuBytes = this.mruGhostBytes = this.mfuGhostBytes = 0;
    this.targetMruBytes = 0;
  }

  stats(): ArcStats {
    return {
      hits: this.hits, misses: this.misses, mruHits: this.mruHits, mfuHits: this.mfuHits,
      mruGhostHits: this.mruGhostHits, mfuGhostHits: this.mfuGhostHits, evictions: this.evictions,
      sizeBytes: this.sizeBytes, mruBytes: this.mruBytes, mfuBytes: this.mfuBytes,
      mruGhostBytes: this.mruGhostBytes, mfuGhostBytes: this.mfuGhostBytes,
      targetMruBytes: this.targetMruBytes, maxSizeBytes: this.maxBytes, entries: this.mru.size + this.mfu.size,
    };
  }

  /** A put of a resident key replaces its value in place (same list, now most recent). */
  private replaceResident(key: string, value: Buffer): boolean {
    const inMru = this.mru.get(key);
    const inMfu = inMru === undefined ? this.mfu.get(key) : undefined;
    if (inMru === undefined && inMfu === undefined) return false;
    this.remove(key);
    if (value.length > this.maxBytes) return true;
    this.evictUntilFits(value.length, false);
    if (inMru !== undefined) {
      this.mru.set(key, value);
      this.mruBytes += value.length;
    } else {
      this.mfu.set(key, value);
      this.mfuBytes += value.length;
    }
    return true;
  }

  /** Moves p toward the list whose ghost was hit (OpenZFS arc_adapt). */
  private adapt(mruGhostHit: boolean, sizeBytes: number): void {
    if (mruGhostHit) {
      const multiplier = this.mruGhostBytes >= this.mfuGhostBytes ? 1 : Math.min(ADAPT_MULTIPLIER_MAX, this.mfuGhostBytes / this.mruGhostBytes);
      this.targetMruBytes = Math.min(this.maxBytes, this.targetMruBytes + Math.ceil(sizeBytes * multiplier));
    } else {
      const multiplier = this.mfuGhostBytes >= this.mruGhostBytes ? 1 : Math.min(ADAPT_MULTIPLIER_MAX, this.mruGhostBytes / this.mfuGhostBytes);
      this.targetMruBytes = Math.max(0, this.targetMruBytes - Math.ceil(sizeBytes * multiplier));
    }
  }

  /** The paper's REPLACE, repeated until incomingBytes more fit. */
  private evictUntilFits(incomingBytes: number, mfuGhostHit: boolean): void {
    while (this.mruBytes + this.mfuBytes + incomingBytes > this.maxBytes && this.mru.size + this.mfu.size > 0) {
      const fromMru = this.mru.size > 0
        && (this.mruBytes > this.targetMruBytes || (mfuGhostHit && this.mruBytes === this.targetMruBytes) || this.mfu.size === 0);
      if (fromMru) this.evictOldest(this.mru, this.mruGhost, true);
      else this.evictOldest(this.mfu, this.mfuGhost, false);
    }
  }

  private evictOldest(list: Map<string, Buffer>, ghost: Map<string, number>, isMru: boolean): void {
    const oldest = list.entries().next();
    assert(oldest.done !== true, 'evicting from an empty list');
    const [key, value] = oldest.value;
    list.delete(key);
    if (!isMru) this.mfuMovedAt.delete(key);
    ghost.set(key, value.length);
    if (isMru) {
      this.mruBytes -= value.length;
      this.mruGhostBytes += value.length;
    } else {
      this.mfuBytes -= value.length;
      this.mfuGhostBytes += value.length;
    }
    this.evictions++;
  }

  /** Keeps |T1|+|B1| <= c, everything <= 2c (in bytes), and each ghost list <= ghostEntriesMax keys. */
  private trimGhosts(): void {
    while (this.mruGhost.size > 0
      && (this.mruBytes + this.mruGhostBytes > this.maxBytes || this.mruGhost.size > this.ghostEntriesMax)) {
      this.dropOldestGhost(this.mruGhost, true);
    }
    while (this.mfuGhost.size > 0
      && (this.sizeBytes + this.mruGhostBytes + this.mfuGhostBytes > 2 * this.maxBytes || this.mfuGhost.size > this.ghostEntriesMax)) {
      this.dropOldestGhost(this.mfuGhost, false);
    }
  }

  private dropOldestGhost(ghost: Map<string, number>, isMru: boolean): void {
    const oldest = ghost.entries().next();
    assert(oldest.done !== true, 'trimming an empty ghost list');
    const [key, sizeBytes] = oldest.value;
    ghost.delete(key);
    if (isMru) this.mruGhostBytes -= sizeBytes;
    else this.mfuGhostBytes -= sizeBytes;
  }

  private forgetGhost(key: string): void {
    const mruGhostSize = this.mruGhost.get(key);
    if (mruGhostSize !== undefined) {
      this.mruGhost.delete(key);
      this.mruGhostBytes -= mruGhostSize;
    }
    const mfuGhostSize = this.mfuGhost.get(key);
    if (mfuGhostSize !== undefined) {
      this.mfuGhost.delete(key);
      this.mfuGhostBytes -= mfuGhostSize;
    }
  }
}
