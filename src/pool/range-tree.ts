/**
 * RangeTree: a set of disjoint half-open byte segments [start, end), as OpenZFS's range_tree_t.
 *
 * The metaslab allocator keeps its free space (and its per-txg alloc / free / defer sets) in these.
 * Memory is proportional to the number of segments, i.e. to fragmentation, never to bytes.
 *
 * Layout: segments sorted by start, kept in chunks of at most CHUNK_SEGMENTS_MAX segments (a two-level
 * B-tree). Finding a segment is a binary search over chunks then inside one chunk (O(log n)); an insert or
 * delete splices one chunk (O(chunk)), and only a chunk split/merge splices the chunk list. A flat array
 * would splice O(n) per operation, which is too slow at 100k segments.
 *
 * Each chunk remembers its longest segment, so a first-fit search skips whole chunks of fragments that
 * cannot hold the request (what OpenZFS gets from its size-sorted tree, at a fraction of the memory).
 *
 * Adding a range that overlaps one present, or removing a range not wholly present, is a double free /
 * double allocation: an assertion failure, never silently tolerated.
 */
import { assert } from '../util/assert.js';

const CHUNK_SEGMENTS_MAX = 128;
/** A chunk shrunk below this is merged with a neighbour when they fit in one chunk. */
const CHUNK_SEGMENTS_MERGE = 32;
/** Histogram bucket b counts segments with 2^b <= length < 2^(b+1). */
export const RANGE_HISTOGRAM_BUCKETS = 64;

class Chunk {
  starts: number[] = [];
  ends: number[] = [];
  longestBytes = 0;

  get length(): number {
    return this.starts.length;
  }

  recomputeLongest(): void {
    let longest = 0;
    const starts = this.starts;
    const ends = this.ends;
    for (let i = 0; i < starts.length; i++) {
      const len = (ends[i] as number) - (starts[i] as number);
      if (len > longest) longest = len;
    }
    this.longestBytes = longest;
  }
}

/** floor(log2(n)) for a positive safe integer, exact at powers of two. */
export function highBit(n: number): number {
  if (n < 0x1_0000_0000) return 31 - Math.clz32(n);
  return 32 + (31 - Math.clz32(Math.floor(n / 0x1_0000_0000)));
}

export class RangeTree {
  private chunks: Chunk[] = [];
  private totalBytesValue = 0;
  private segmentCountValue = 0;
  /** Segment count per power-of-two size bucket (the metaslab's fragmentation figure uses it). */
  readonly histogramCounts = new Float64Array(RANGE_HISTOGRAM_BUCKETS);
  /** Bytes held by the segments of each bucket. */
  readonly histogramBytes = new Float64Array(RANGE_HISTOGRAM_BUCKETS);
  // Result registers of locate(), so lookups allocate nothing.
  private locChunk = -1;
  private locIndex = -1;

  get totalBytes(): number {
    return this.totalBytesValue;
  }

  get segmentCount(): number {
    return this.segmentCountValue;
  }

  isEmpty(): boolean {
    return this.segmentCountValue === 0;
  }

  clear(): void {
    this.chunks = [];
    this.totalBytesValue = 0;
    this.segmentCountValue = 0;
    this.histogramCounts.fill(0);
    this.histogramBytes.fill(0);
  }

  /** Adds [start, end); it must not overlap any segment present. Coalesces with neighbours. */
  add(start: number, end: number): void {
    checkRange(start, end);
    this.locate(start);
    const pc = this.locChunk;
    const pi = this.locIndex;
    const prev = pc >= 0 ? (this.chunks[pc] as Chunk) : undefined;
    const prevEnd = prev ? (prev.ends[pi] as number) : -1;
    assert(!prev || prevEnd <= start, `range tree add [${start}, ${end}) overlaps [${prev?.starts[pi]}, ${prevEnd})`);
    // Successor: the segment after (pc, pi).
    let nc = pc;
    let ni = pi + 1;
    if (pc < 0) {
      nc = 0;
      ni = 0;
    } else if (ni >= (prev as Chunk).length) {
      nc = pc + 1;
      ni = 0;
    }
    const next = nc < this.chunks.length ? (this.chunks[nc] as Chunk) : undefined;
    const nextStart = next ? (next.starts[ni] as number) : Infinity;
    assert(end <= nextStart, `range tree add [${start}, ${end}) overlaps segment starting at ${nextStart}`);
    const mergePrev = prev !== undefined && prevEnd === start;
    const mergeNext = next !== undefined && nextStart === end;

    if (mergePrev && mergeNext) {
      const p = prev as Chunk;
      const n = next as Chunk;
      const prevStart = p.starts[pi] as number;
      const nextEnd = n.ends[ni] as number;
      this.histogramRemove(prevEnd - prevStart);
      this.histogramRemove(nextEnd - nextStart);
      this.histogramAdd(nextEnd - prevStart);
      p.ends[pi] = nextEnd;
      if (nextEnd - prevStart > p.longestBytes) p.longestBytes = nextEnd - prevStart;
      this.segmentCountValue--;
      this.deleteAt(nc, ni);
    } else if (mergePrev) {
      const p = prev as Chunk;
      const prevStart = p.starts[pi] as number;
      this.histogramRemove(prevEnd - prevStart);
      this.histogramAdd(end - prevStart);
      p.ends[pi] = end;
      if (end - prevStart > p.longestBytes) p.longestBytes = end - prevStart;
    } else if (mergeNext) {
      const n = next as Chunk;
      const nextEnd = n.ends[ni] as number;
      this.histogramRemove(nextEnd - nextStart);
      this.histogramAdd(nextEnd - start);
      n.starts[ni] = start;
      if (nextEnd - start > n.longestBytes) n.longestBytes = nextEnd - start;
    } else {
      this.histogramAdd(end - start);
      this.segmentCountValue++;
      if (pc < 0) {
        if (this.chunks.length === 0) this.chunks.push(new Chunk());
        this.insertAt(0, 0, start, end);
      } else {
        this.insertAt(pc, pi + 1, start, end);
      }
    }
    this.totalBytesValue += end - start;
  }

  /** Removes [start, end), which must lie wholly inside one segment present. */
  remove(start: number, end: number): void {
    checkRange(start, end);
    this.locate(start);
    const c = this.locChunk;
    const i = this.locIndex;
    assert(c >= 0, `range tree remove [${start}, ${end}): not present`);
    const chunk = this.chunks[c] as Chunk;
    const segStart = chunk.starts[i] as number;
    const segEnd = chunk.ends[i] as number;
    assert(segEnd >= end, `range tree remove [${start}, ${end}): not wholly present (nearest [${segStart}, ${segEnd}))`);
    this.histogramRemove(segEnd - segStart);
    const keepLeft = segStart < start;
    const keepRight = end < segEnd;
    if (keepLeft) this.histogramAdd(start - segStart);
    if (keepRight) this.histogramAdd(segEnd - end);
    this.totalBytesValue -= end - start;
    if (keepLeft && keepRight) {
      chunk.ends[i] = start;
      this.segmentCountValue++;
      this.insertAt(c, i + 1, end, segEnd);
      // insertAt may have split the chunk: recompute both halves' longest.
      this.recomputeAround(c);
    } else if (keepLeft) {
      chunk.ends[i] = start;
      if (segEnd - segStart >= chunk.longestBytes) chunk.recomputeLongest();
    } else if (keepRight) {
      chunk.starts[i] = end;
      if (segEnd - segStart >= chunk.longestBytes) chunk.recomputeLongest();
    } else {
      this.segmentCountValue--;
      this.deleteAt(c, i);
    }
  }

  /** True when [start, end) lies wholly inside one segment. */
  contains(start: number, end: number): boolean {
    checkRange(start, end);
    this.locate(start);
    if (this.locChunk < 0) return false;
    return ((this.chunks[this.locChunk] as Chunk).ends[this.locIndex] as number) >= end;
  }

  /** True when any byte of [start, end) is in the tree. */
  overlaps(start: number, end: number): boolean {
    checkRange(start, end);
    this.locate(end - 1);
    if (this.locChunk < 0) return false;
    return ((this.chunks[this.locChunk] as Chunk).ends[this.locIndex] as number) > start;
  }

  /**
   * First fit from a cursor: the lowest offset x >= cursor such that [x, x + sizeBytes) is free, or -1.
   * Chunks whose longest segment is too short are skipped whole.
   */
  findFit(cursor: number, sizeBytes: number): number {
    assert(sizeBytes > 0, 'findFit of zero bytes');
    if (this.chunks.length === 0) return -1;
    this.locate(cursor);
    let c = this.locChunk;
    let i = this.locIndex;
    if (c < 0) {
      c = 0;
      i = 0;
    }
    for (; c < this.chunks.length; c++, i = 0) {
      const chunk = this.chunks[c] as Chunk;
      if (chunk.longestBytes < sizeBytes) continue;
      const starts = chunk.starts;
      const ends = chunk.ends;
      for (; i < starts.length; i++) {
        const segStart = starts[i] as number;
        const from = segStart > cursor ? segStart : cursor;
        if ((ends[i] as number) - from >= sizeBytes) return from;
      }
    }
    return -1;
  }

  largestSegmentBytes(): number {
    let largest = 0;
    for (const chunk of this.chunks) if (chunk.longestBytes > largest) largest = chunk.longestBytes;
    return largest;
  }

  /** Start of the first segment, or -1 when empty. */
  firstStart(): number {
    const chunk = this.chunks[0];
    return chunk ? (chunk.starts[0] as number) : -1;
  }

  /** End of the last segment, or -1 when empty. */
  lastEnd(): number {
    const chunk = this.chunks[this.chunks.length - 1];
    return chunk ? (chunk.ends[chunk.length - 1] as number) : -1;
  }

  /** Visits segments in order. The tree must not be changed during the walk. */
  forEachSegment(visit: (start: number, end: number) => void): void {
    for (const chunk of this.chunks) {
      const starts = chunk.starts;
      const ends = chunk.ends;
      for (let i = 0; i < starts.length; i++) visit(starts[i] as number, ends[i] as number);
    }
  }

  *segments(): Generator<[number, number]> {
    for (const chunk of this.chunks) {
      for (let i = 0; i < chunk.length; i++) yield [chunk.starts[i] as number, chunk.ends[i] as number];
    }
  }

  clone(): RangeTree {
    const copy = new RangeTree();
    for (const chunk of this.chunks) {
      const c = new Chunk();
      c.starts = chunk.starts.slice();
      c.ends = chunk.ends.slice();
      c.longestBytes = chunk.longestBytes;
      copy.chunks.push(c);
    }
    copy.totalBytesValue = this.totalBytesValue;
    copy.segmentCountValue = this.segmentCountValue;
    copy.histogramCounts.set(this.histogramCounts);
    copy.histogramBytes.set(this.histogramBytes);
    return copy;
  }

  equals(other: RangeTree): boolean {
    if (other.segmentCountValue !== this.segmentCountValue || other.totalBytesValue !== this.totalBytesValue) {
      return false;
    }
    const a = this.segments();
    const b = other.segments();
    for (;;) {
      const x = a.next();
      const y = b.next();
      if (x.done || y.done) return x.done === y.done;
      if (x.value[0] !== y.value[0] || x.value[1] !== y.value[1]) return false;
    }
  }

  /** Checks the structure's invariants (tests call it; O(n)). */
  verify(): void {
    let total = 0;
    let count = 0;
    let lastEnd = -1;
    for (const chunk of this.chunks) {
      assert(chunk.length > 0 && chunk.length <= CHUNK_SEGMENTS_MAX, `chunk of ${chunk.length} segments`);
      assert(chunk.starts.length === chunk.ends.length, 'chunk arrays differ in length');
      let longest = 0;
      for (let i = 0; i < chunk.length; i++) {
        const s = chunk.starts[i] as number;
        const e = chunk.ends[i] as number;
        assert(s < e, `empty segment [${s}, ${e})`);
        assert(s > lastEnd, `segments touch or overlap at ${s} (previous end ${lastEnd})`);
        lastEnd = e;
        total += e - s;
        count++;
        if (e - s > longest) longest = e - s;
      }
      assert(chunk.longestBytes === longest, 'chunk longest out of date');
    }
    assert(total === this.totalBytesValue, `total ${this.totalBytesValue} != ${total}`);
    assert(count === this.segmentCountValue, `count ${this.segmentCountValue} != ${count}`);
    let histCount = 0;
    let histBytes = 0;
    for (let b = 0; b < RANGE_HISTOGRAM_BUCKETS; b++) {
      histCount += this.histogramCounts[b] as number;
      histBytes += this.histogramBytes[b] as number;
    }
    assert(histCount === count && histBytes === total, 'histogram out of date');
  }

  /** Sets locChunk/locIndex to the last segment whose start <= offset, or -1/-1 when there is none. */
  private locate(offset: number): void {
    const chunks = this.chunks;
    let lo = 0;
    let hi = chunks.length - 1;
    let c = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (((chunks[mid] as Chunk).starts[0] as number) <= offset) {
        c = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    this.locChunk = c;
    if (c < 0) {
      this.locIndex = -1;
      return;
    }
    const starts = (chunks[c] as Chunk).starts;
    lo = 0;
    hi = starts.length - 1;
    let i = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if ((starts[mid] as number) <= offset) {
        i = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    this.locIndex = i;
  }

  private insertAt(c: number, i: number, start: number, end: number): void {
    const chunk = this.chunks[c] as Chunk;
    chunk.starts.splice(i, 0, start);
    chunk.ends.splice(i, 0, end);
    if (end - start > chunk.longestBytes) chunk.longestBytes = end - start;
    if (chunk.length > CHUNK_SEGMENTS_MAX) {
      const half = chunk.length >>> 1;
      const right = new Chunk();
      right.starts = chunk.starts.splice(half);
      right.ends = chunk.ends.splice(half);
      chunk.recomputeLongest();
      right.recomputeLongest();
      this.chunks.splice(c + 1, 0, right);
    }
  }

  private deleteAt(c: number, i: number): void {
    const chunk = this.chunks[c] as Chunk;
    const len = (chunk.ends[i] as number) - (chunk.starts[i] as number);
    chunk.starts.splice(i, 1);
    chunk.ends.splice(i, 1);
    if (chunk.length === 0) {
      this.chunks.splice(c, 1);
      return;
    }
    if (len >= chunk.longestBytes) chunk.recomputeLongest();
    if (chunk.length >= CHUNK_SEGMENTS_MERGE) return;
    const right = this.chunks[c + 1];
    if (right && chunk.length + right.length <= CHUNK_SEGMENTS_MAX) {
      this.mergeInto(chunk, right);
      this.chunks.splice(c + 1, 1);
      return;
    }
    const left = this.chunks[c - 1];
    if (left && left.length + chunk.length <= CHUNK_SEGMENTS_MAX) {
      this.mergeInto(left, chunk);
      this.chunks.splice(c, 1);
    }
  }

  private mergeInto(left: Chunk, right: Chunk): void {
    for (let k = 0; k < right.length; k++) {
      left.starts.push(right.starts[k] as number);
      left.ends.push(right.ends[k] as number);
    }
    if (right.longestBytes > left.longestBytes) left.longestBytes = right.longestBytes;
  }

  private recomputeAround(c: number): void {
    (this.chunks[c] as Chunk).recomputeLongest();
    const right = this.chunks[c + 1];
    if (right) right.recomputeLongest();
  }

  private histogramAdd(lengthBytes: number): void {
    const b = highBit(lengthBytes);
    this.histogramCounts[b] = (this.histogramCounts[b] as number) + 1;
    this.histogramBytes[b] = (this.histogramBytes[b] as number) + lengthBytes;
  }

  private histogramRemove(lengthBytes: number): void {
    const b = highBit(lengthBytes);
    this.histogramCounts[b] = (this.histogramCounts[b] as number) - 1;
    this.histogramBytes[b] = (this.histogramBytes[b] as number) - lengthBytes;
  }
}

function checkRange(start: number, end: number): void {
  assert(
    Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start < end,
    `bad range [${start}, ${end})`,
  );
}
