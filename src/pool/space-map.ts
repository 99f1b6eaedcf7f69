/**
 * Space maps: the on-disk log of one metaslab's allocations and frees (OpenZFS space_map.c).
 *
 * A metaslab's free space is not stored as a bitmap; it is the result of replaying an append-only log
 * that starts from "everything free": each txg appends the ranges it allocated and freed in that
 * metaslab, then a txg marker. The pool stores the log as the contents of one object per metaslab and
 * appends to it during the txg that made the changes, so the log and the uberblock commit together.
 *
 * SpaceMapEntryPhys: 16 bytes, little-endian, two u64 words.
 *   word0 bits 62..63  type: 0 header, 1 alloc, 2 free, 3 txg marker
 *   word0 bits 0..61   payload (below)
 *   word1              second payload word
 *
 *   header  first entry and only there. word0 payload: magic (bits 0..31), version (32..47),
 *           ashift (48..55), bits 56..61 zero; word1: the metaslab's size in bytes.
 *   alloc   word0 payload: offset in bytes from the metaslab's start; word1: length in bytes.
 *   free    as alloc.
 *   txg     word0 payload zero; word1: the txg whose records precede it. Every append batch ends with
 *           one, so a log cut short at an entry boundary is still recognised as truncated; markers never
 *           decrease.
 *
 * A log is either empty (a metaslab never written: all free) or header, records, ..., txg marker.
 * Replaying validates everything it reads and builds a fresh tree, so malformed input yields a CairnError
 * EIO naming the entry, never a wrong tree.
 *
 * Condensing: a log only grows; after enough churn it is much longer than a fresh one describing the
 * same state. condense() writes the state anew as the shorter of "allocate the allocated segments" and
 * "allocate all, then free the free segments"; the pool writes it over the object (copy-on-write, so a
 * crash before the txg commits keeps the old log).
 */
import { assert } from '../util/assert.js';
import { CairnError } from '../util/errors.js';
import { RangeTree } from './range-tree.js';

export const SPACE_MAP_ENTRY_SIZE_BYTES = 16;
/** "SMAP" read as a little-endian u32. */
export const SPACE_MAP_MAGIC = 0x50414d53;
export const SPACE_MAP_VERSION = 1;

/** Stable on-disk ids: never renumber. */
export const SpaceMapEntryType = { header: 0, alloc: 1, free: 2, txg: 3 } as const;
export type SpaceMapEntryType = (typeof SpaceMapEntryType)[keyof typeof SpaceMapEntryType];

/** One decoded entry. Offsets are relative to the metaslab's start. */
export type SpaceMapRecord =
  | { type: 'header'; sizeBytes: number; ashift: number; version?: number }
  | { type: 'alloc' | 'free'; offsetBytes: number; lengthBytes: number }
  | { type: 'txg'; txg: number };

/** Where a metaslab lies in its vdev's address space; trees hold absolute vdev offsets. */
export interface SpaceMapGeometry {
  startBytes: number;
  sizeBytes: number;
  ashift: number;
}

const TWO_POW_32 = 0x1_0000_0000;
/** word0's payload is 62 bits; JS numbers stay exact below 2^53 so we never need more. */
const PAYLOAD_HIGH_MASK = 0x3fff_ffff;

/** Writes one SpaceMapEntryPhys at `at`. Values must be safe integers (< 2^53). */
export function writeSpaceMapEntry(out: Buffer, at: number, type: SpaceMapEntryType, word0Payload: number, word1: number): void {
  assert(Number.isSafeInteger(word0Payload) && word0Payload >= 0, `space map payload ${word0Payload}`);
  assert(Number.isSafeInteger(word1) && word1 >= 0, `space map word1 ${word1}`);
  const high = Math.floor(word0Payload / TWO_POW_32);
  out.writeUInt32LE(word0Payload >>> 0, at);
  out.writeUInt32LE(((type << 30) | high) >>> 0, at + 4);
  out.writeUInt32LE(word1 >>> 0, at + 8);
  out.writeUInt32LE(Math.floor(word1 / TWO_POW_32), at + 12);
}

function headerPayload(ashift: number, version = SPACE_MAP_VERSION): number {
  return SPACE_MAP_MAGIC + version * TWO_POW_32 + ashift * 2 ** 48;
}

/** Encodes records in order. The caller is responsible for their meaning (header first, txg last). */
export function encodeEntries(records: readonly SpaceMapRecord[]): Buffer {
  const out = Buffer.alloc(records.length * SPACE_MAP_ENTRY_SIZE_BYTES);
  records.forEach((r, i) => {
    const at = i * SPACE_MAP_ENTRY_SIZE_BYTES;
    switch (r.type) {
      case 'header':
        writeSpaceMapEntry(out, at, SpaceMapEntryType.header, headerPayload(r.ashift, r.version), r.sizeBytes);
        break;
      case 'alloc':
        writeSpaceMapEntry(out, at, SpaceMapEntryType.alloc, r.offsetBytes, r.lengthBytes);
        break;
      case 'free':
        writeSpaceMapEntry(out, at, SpaceMapEntryType.free, r.offsetBytes, r.lengthBytes);
        break;
      case 'txg':
        writeSpaceMapEntry(out, at, SpaceMapEntryType.txg, 0, r.txg);
        break;
    }
  });
  return out;
}

/**
 * Builds one append batch without an object per record: size it with the exact entry count, then
 * header? / frees / allocs / txg marker.
 */
export class SpaceMapWriter {
  readonly buffer: Buffer;
  private at = 0;

  constructor(
    entryCount: number,
    private readonly geometry: SpaceMapGeometry,
  ) {
    this.buffer = Buffer.alloc(entryCount * SPACE_MAP_ENTRY_SIZE_BYTES);
  }

  header(): void {
    this.put(SpaceMapEntryType.header, headerPayload(this.geometry.ashift), this.geometry.sizeBytes);
  }

  /** Records a range in absolute vdev offsets. */
  range(type: typeof SpaceMapEntryType.alloc | typeof SpaceMapEntryType.free, start: number, end: number): void {
    const g = this.geometry;
    assert(start >= g.startBytes && end <= g.startBytes + g.sizeBytes && start < end, `range [${start}, ${end}) outside metaslab`);
    this.put(type, start - g.startBytes, end - start);
  }

  txg(txg: number): void {
    this.put(SpaceMapEntryType.txg, 0, txg);
  }

  /** The encoded batch; asserts it was sized exactly. */
  finish(): Buffer {
    assert(this.at === this.buffer.length, `space map batch sized ${this.buffer.length}, wrote ${this.at}`);
    return this.buffer;
  }

  private put(type: SpaceMapEntryType, payload: number, word1: number): void {
    assert(this.at < this.buffer.length, 'space map batch overflow');
    writeSpaceMapEntry(this.buffer, this.at, type, payload, word1);
    this.at += SPACE_MAP_ENTRY_SIZE_BYTES;
  }
}

function malformed(label: string, index: number, why: string): CairnError {
  return new CairnError('EIO', `${label}: malformed space map at entry ${index} (byte ${index * SPACE_MAP_ENTRY_SIZE_BYTES}): ${why}`, {
    entry: index,
  });
}

/**
 * Decodes and validates a log into records (diagnostics and tests; replay() does not build these).
 * Throws CairnError EIO on malformed input.
 */
export function decodeEntries(buf: Buffer, label = 'space map'): SpaceMapRecord[] {
  const records: SpaceMapRecord[] = [];
  walk(buf, label, (type, payload, word1) => {
    if (type === SpaceMapEntryType.header) {
      records.push({ type: 'header', ashift: Math.floor(payload / 2 ** 48) & 0xff, version: Math.floor(payload / TWO_POW_32) & 0xffff, sizeBytes: word1 });
    } else if (type === SpaceMapEntryType.txg) {
      records.push({ type: 'txg', txg: word1 });
    } else {
      records.push({ type: type === SpaceMapEntryType.alloc ? 'alloc' : 'free', offsetBytes: payload, lengthBytes: word1 });
    }
    return undefined;
  });
  return records;
}

type EntryVisitor = (type: SpaceMapEntryType, payload: number, word1: number, index: number) => string | undefined;

/** Structural checks shared by decode and replay; the visitor returns a reason to reject an entry. */
function walk(buf: Buffer, label: string, visit: EntryVisitor): void {
  if (buf.length === 0) return;
  if (buf.length % SPACE_MAP_ENTRY_SIZE_BYTES !== 0) {
    throw new CairnError('EIO', `${label}: space map length ${buf.length} is not a multiple of ${SPACE_MAP_ENTRY_SIZE_BYTES} (truncated)`);
  }
  const count = buf.length / SPACE_MAP_ENTRY_SIZE_BYTES;
  let lastTxg = 0;
  for (let i = 0; i < count; i++) {
    const at = i * SPACE_MAP_ENTRY_SIZE_BYTES;
    const low = buf.readUInt32LE(at);
    const highWord = buf.readUInt32LE(at + 4);
    const type = (highWord >>> 30) as SpaceMapEntryType;
    const payloadHigh = highWord & PAYLOAD_HIGH_MASK;
    const word1High = buf.readUInt32LE(at + 12);
    if (payloadHigh >= 0x20_0000 || word1High >= 0x20_0000) throw malformed(label, i, 'value beyond 2^53');
    const payload = payloadHigh * TWO_POW_32 + low;
    const word1 = word1High * TWO_POW_32 + buf.readUInt32LE(at + 8);
    if (i === 0) {
      if (type !== SpaceMapEntryType.header) throw malformed(label, i, 'first entry is not a header');
      if ((payload % TWO_POW_32) !== SPACE_MAP_MAGIC) throw malformed(label, i, `bad magic 0x${low.toString(16)}`);
      const version = Math.floor(payload / TWO_POW_32) & 0xffff;
      if (version !== SPACE_MAP_VERSION) {
        throw new CairnError('EVERSION', `${label}: space map version ${version} is not supported (expected ${SPACE_MAP_VERSION})`);
      }
      if (Math.floor(payload / 2 ** 56) !== 0) throw malformed(label, i, 'reserved header bits set');
    } else if (type === SpaceMapEntryType.header) {
      throw malformed(label, i, 'header in the middle of the log');
    } else if (type === SpaceMapEntryType.txg) {
      if (payload !== 0) throw malformed(label, i, 'txg marker with a payload');
      if (word1 < lastTxg) throw malformed(label, i, `txg marker ${word1} after ${lastTxg}`);
      lastTxg = word1;
    }
    const why = visit(type, payload, word1, i);
    if (why !== undefined) throw malformed(label, i, why);
  }
  const lastType = buf.readUInt32LE(buf.length - 12) >>> 30;
  if (lastType !== SpaceMapEntryType.txg) {
    throw malformed(label, count, 'log does not end with a txg marker (truncated)');
  }
}

/**
 * Rebuilds a metaslab's free tree from its log: start from all free, apply each alloc and free in order.
 * An alloc of space not free, a free of space not allocated, a range outside the metaslab or off the
 * sector grid, or a header that describes another metaslab are all CairnError EIO.
 */
export function replay(buf: Buffer, geometry: SpaceMapGeometry, label = 'space map'): RangeTree {
  const tree = new RangeTree();
  const { startBytes, sizeBytes, ashift } = geometry;
  tree.add(startBytes, startBytes + sizeBytes);
  const sectorBytes = 2 ** ashift;
  walk(buf, label, (type, payload, word1) => {
    if (type === SpaceMapEntryType.header) {
      if (word1 !== sizeBytes) return `header says metaslab size ${word1}, expected ${sizeBytes}`;
      const headerAshift = Math.floor(payload / 2 ** 48) & 0xff;
      if (headerAshift !== ashift) return `header says ashift ${headerAshift}, expected ${ashift}`;
      return undefined;
    }
    if (type === SpaceMapEntryType.txg) return undefined;
    if (word1 === 0) return 'zero-length range';
    if (payload % sectorBytes !== 0 || word1 % sectorBytes !== 0) return `range ${payload}+${word1} not aligned to ${sectorBytes}`;
    if (payload + word1 > sizeBytes) return `range ${payload}+${word1} beyond metaslab size ${sizeBytes}`;
    const start = startBytes + payload;
    const end = start + word1;
    if (type === SpaceMapEntryType.alloc) {
      if (!tree.contains(start, end)) return `alloc of [${start}, ${end}) which is not free`;
      tree.remove(start, end);
    } else {
      if (tree.overlaps(start, end)) return `free of [${start}, ${end}) which is not allocated`;
      tree.add(start, end);
    }
    return undefined;
  });
  return tree;
}

/**
 * Entries a fresh log describing `freeTree` needs (header and trailing txg marker included), the
 * smaller of the two encodings condense() may pick.
 */
export function condensedEntryCount(freeTree: RangeTree, geometry: SpaceMapGeometry): number {
  return 2 + Math.min(1 + freeTree.segmentCount, allocatedSegmentCount(freeTree, geometry));
}

function allocatedSegmentCount(freeTree: RangeTree, geometry: SpaceMapGeometry): number {
  const n = freeTree.segmentCount;
  if (n === 0) return 1;
  const end = geometry.startBytes + geometry.sizeBytes;
  return n - 1 + (freeTree.firstStart() > geometry.startBytes ? 1 : 0) + (freeTree.lastEnd() < end ? 1 : 0);
}

/**
 * A fresh log whose replay gives exactly `freeTree` (absolute offsets within the metaslab): either the
 * allocated gaps as alloc entries, or one alloc of everything followed by the free segments, whichever
 * is shorter.
 */
export function condense(freeTree: RangeTree, geometry: SpaceMapGeometry, txg: number): Buffer {
  const start = geometry.startBytes;
  const end = start + geometry.sizeBytes;
  const freeEncoding = 1 + freeTree.segmentCount;
  const allocEncoding = allocatedSegmentCount(freeTree, geometry);
  const allocated = freeTree.totalBytes < geometry.sizeBytes;
  const writer = new SpaceMapWriter(2 + (allocated ? Math.min(freeEncoding, allocEncoding) : 0), geometry);
  writer.header();
  if (allocated) {
    if (allocEncoding <= freeEncoding) {
      let cursor = start;
      freeTree.forEachSegment((s, e) => {
        if (s > cursor) writer.range(SpaceMapEntryType.alloc, cursor, s);
        cursor = e;
      });
      if (cursor < end) writer.range(SpaceMapEntryType.alloc, cursor, end);
    } else {
      writer.range(SpaceMapEntryType.alloc, start, end);
      freeTree.forEachSegment((s, e) => writer.range(SpaceMapEntryType.free, s, e));
    }
  }
  writer.txg(txg);
  return writer.finish();
}
