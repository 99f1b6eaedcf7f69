/**
 * The kv map: extendible hashing over one ObjectStore object, in the style of the OpenZFS fat ZAP.
 * The design, its invariants and the on-disk format are described in index.ts.
 */
import { decodeNameBytes, encodeNameBytes } from '../util/name-bytes.js';
import { randomBytes } from 'node:crypto';
import { xxh64 } from '@node-rs/xxhash';
import { ObjectType, type ObjectStore } from '../objects/types.js';
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';
import { KV_KEY_SIZE_MAX_BYTES, KV_VALUE_SIZE_MAX_BYTES, type KvEntry, type KvMap, type KvPage } from './types.js';
import {
  KV_BLOCK_SIZE_BYTES,
  KV_CD_BITS,
  KV_CD_MAX,
  KV_ENTRY_HEADER_SIZE_BYTES,
  KV_HASH_BITS,
  KV_HASH_LIMIT,
  KV_HEADER_SIZE_BYTES,
  KV_LEAF_HEADER_SIZE_BYTES,
  KV_LEAF_PAYLOAD_MAX_BYTES,
  KV_TABLE_EMBEDDED_OFFSET_BYTES,
  KV_TABLE_EMBEDDED_SHIFT_MAX,
  KV_TABLE_ENTRIES_PER_BLOCK,
  KV_TABLE_ENTRIES_PER_BLOCK_SHIFT,
  KV_TABLE_ENTRY_BYTES,
  KV_TABLE_SHIFT_MAX,
  KvHeaderPhys,
  KvLeafPhys,
  encodeEntry,
  entryCd,
  entryEnd,
  entryHash,
  entryKeyLength,
  entrySizeBytes,
  entryValueLength,
  leafPayloadBytes,
} from './phys.js';

/** Returns a 64-bit hash of the key bytes; the map uses its top 48 bits. */
export type KvHashFunction = (keyBytes: Buffer, salt: bigint) => bigint;

export interface KvOptions {
  /** For tests only (forced collisions); must be the same on every open of the object. */
  hashFunction?: KvHashFunction;
  /** Hash salt for a new map; random by default (defeats hash flooding). Inject for reproducible tests. */
  salt?: bigint;
}

export const xxh64Salted: KvHashFunction = (keyBytes, salt) => xxh64(keyBytes, salt);

/** A reader racing a writer's table move retries from the header; a persistent mismatch is damage. */
const LOCATE_ATTEMPTS_MAX = 64;
const CURSOR_LIMIT = 1n << 64n;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const BYTE_ESCAPE = /(?<![\uD800-\uDBFF])[\uDC80-\uDCFF]/g;

/** Creates an empty kv object and returns its map; called inside the caller's hold (holds do not nest). */
export async function createKv(
  store: ObjectStore,
  type: ObjectType = ObjectType.kv,
  options: KvOptions = {},
): Promise<KvMap> {
  const objectId = await store.allocateObject(type, { blockSizeBytes: KV_BLOCK_SIZE_BYTES });
  const header = new KvHeaderPhys();
  header.salt = BigInt.asUintN(64, options.salt ?? randomBytes(8).readBigUInt64BE(0));
  header.tableShift = 0;
  header.leafCount = 1;
  header.nextFreeBlock = 2;
  const leaf = Buffer.alloc(KV_BLOCK_SIZE_BYTES);
  KvLeafPhys.encodeHeader(leaf, 0, 0, 0, 0);
  await store.write(objectId, KV_BLOCK_SIZE_BYTES, leaf);
  const block0 = Buffer.alloc(KV_HEADER_SIZE_BYTES + KV_TABLE_ENTRY_BYTES);
  header.encode(block0);
  block0.writeUInt32BE(1, KV_TABLE_EMBEDDED_OFFSET_BYTES);
  await store.write(objectId, 0, block0);
  return new KvObject(store, objectId, options.hashFunction ?? xxh64Salted);
}

/** Opens an existing kv object. Its header is checked on first use (EINVAL if it is not a kv object). */
export function openKv(store: ObjectStore, objectId: number, options: KvOptions = {}): KvMap {
  return new KvObject(store, objectId, options.hashFunction ?? xxh64Salted);
}

/** For a writer, which holds the object's write lock: the leaf it found stays as found until it changes it. */
const underWriteLock = <T>(found: T): T => found;

interface Located {
  header: KvHeaderPhys;
  block: number;
  leaf: KvLeafPhys;
}

/** Where a key is, or would go, in a leaf. */
interface LeafScan {
  /** Offset of the key's entry, -1 when absent. */
  matchOffset: number;
  /** Where a new entry for the key goes (keeps (hash, cd) order). */
  insertOffset: number;
  /** Lowest collision differentiator unused by the key's hash. */
  freeCd: number;
}

class KvObject implements KvMap {
  constructor(
    private readonly store: ObjectStore,
    readonly objectId: number,
    private readonly hashFunction: KvHashFunction,
  ) {}

  async get(key: string): Promise<Buffer | undefined> {
    const keyBytes = validateKey(key);
    return this.locate(
      (salt) => this.hashKey(keyBytes, salt),
      ({ leaf, hash }) => {
        const scan = scanLeaf(leaf, hash, keyBytes, this.objectId);
        if (scan.matchOffset < 0) return undefined;
        const valueOffset = scan.matchOffset + KV_ENTRY_HEADER_SIZE_BYTES + keyBytes.length;
        const valueLength = entryValueLength(leaf.buf, scan.matchOffset);
        return Buffer.from(leaf.buf.subarray(valueOffset, valueOffset + valueLength));
      },
    );
  }

  async set(key: string, value: Buffer, options?: { exclusive?: boolean }): Promise<void> {
    const keyBytes = validateKey(key);
    validateValue(value);
    const hashOf = (salt: bigint): number => this.hashKey(keyBytes, salt);
    const newEntryBytes = entrySizeBytes(keyBytes.length, value.length);
    const lock = writeLock(this.store, this.objectId);
    if (!lock.tryAcquire()) await lock.acquire();
    try {
      // Each split deepens the leaf by one bit, so this ends within KV_TABLE_SHIFT_MAX rounds.
      for (let round = 0; round <= KV_TABLE_SHIFT_MAX + 1; round++) {
        const { header, block, leaf, hash } = await this.locate(hashOf, underWriteLock);
        const scan = scanLeaf(leaf, hash, keyBytes, this.objectId);
        if (scan.matchOffset >= 0) {
          if (options?.exclusive === true) throw CairnError.answer('EEXIST', `"${key}" already exists`);
          const oldEntryBytes = entryEnd(leaf.buf, scan.matchOffset) - scan.matchOffset;
          if (leaf.payloadBytes - oldEntryBytes + newEntryBytes <= KV_LEAF_PAYLOAD_MAX_BYTES) {
            // A replaced value keeps its cd, so cursors taken before stay valid.
            const cd = entryCd(leaf.buf, scan.matchOffset);
            await this.modifyLeaf(block, leaf, scan.matchOffset, oldEntryBytes, newEntryBytes, 0, (out) =>
              encodeEntry(out, scan.matchOffset, hash, cd, keyBytes, value),
            );
            return;
          }
        } else {
          if (scan.freeCd > KV_CD_MAX) throw tooManyCollisions(this.objectId, key);
          if (leaf.payloadBytes + newEntryBytes <= KV_LEAF_PAYLOAD_MAX_BYTES) {
            await this.modifyLeaf(block, leaf, scan.insertOffset, 0, newEntryBytes, 1, (out) =>
              encodeEntry(out, scan.insertOffset, hash, scan.freeCd, keyBytes, value),
            );
            header.entryCount++;
            await this.writeHeader(header);
            return;
          }
        }
        await this.split(header, block, leaf, hash, key);
      }
      assert(false, `kv ${this.objectId}: set of ${JSON.stringify(key)} did not converge`);
    } finally {
      lock.release();
    }
  }

  async delete(key: string): Promise<boolean> {
    const keyBytes = validateKey(key);
    const lock = writeLock(this.store, this.objectId);
    if (!lock.tryAcquire()) await lock.acquire();
    try {
      const { header, block, leaf, hash } = await this.locate((salt) => this.hashKey(keyBytes, salt), underWriteLock);
      const scan = scanLeaf(leaf, hash, keyBytes, this.objectId);
      if (scan.matchOffset < 0) return false;
      const oldEntryBytes = entryEnd(leaf.buf, scan.matchOffset) - scan.matchOffset;
      // Leaves are never merged or freed (as in ZAP): readers rely on a leaf block staying a leaf.
      await this.modifyLeaf(block, leaf, scan.matchOffset, oldEntryBytes, 0, -1);
      assert(header.entryCount > 0, `kv ${this.objectId}: entry count underflow`);
      header.entryCount--;
      await this.writeHeader(header);
      return true;
    } finally {
      lock.release();
    }
  }

  async count(): Promise<number> {
    return (await this.readHeader()).entryCount;
  }

  async list(cursor: bigint, limit: number): Promise<KvPage> {
    if (typeof cursor !== 'bigint' || cursor < 0n || cursor >= CURSOR_LIMIT) {
      throw new CairnError('EINVAL', `bad kv cursor ${String(cursor)}`);
    }
    if (!Number.isSafeInteger(limit) || limit < 1) throw new CairnError('EINVAL', `bad kv page limit ${limit}`);
    let hash = Number(cursor >> BigInt(KV_CD_BITS));
    let cd = Number(cursor & BigInt(KV_CD_MAX));
    const entries: KvEntry[] = [];
    // One leaf's entries from (hash, cd) on, taken in one synchronous step; the page when it is full.
    const take = ({ leaf }: Located): KvPage | null => {
      const buf = leaf.buf;
      const end = leaf.endOffset;
      for (let offset = KV_LEAF_HEADER_SIZE_BYTES, next = 0; offset < end; offset = next) {
        next = nextEntry(leaf, offset, this.objectId);
        const entryHashValue = entryHash(buf, offset);
        const entryCdValue = entryCd(buf, offset);
        if (entryHashValue < hash || (entryHashValue === hash && entryCdValue < cd)) continue;
        const keyOffset = offset + KV_ENTRY_HEADER_SIZE_BYTES;
        const keyLength = entryKeyLength(buf, offset);
        const valueLength = entryValueLength(buf, offset);
        entries.push({
          key: decodeNameBytes(buf, keyOffset, keyOffset + keyLength),
          value: Buffer.from(buf.subarray(keyOffset + keyLength, keyOffset + keyLength + valueLength)),
        });
        if (entries.length === limit) {
          const next = ((BigInt(entryHashValue) << BigInt(KV_CD_BITS)) | BigInt(entryCdValue)) + 1n;
          return { entries, cursor: next >= CURSOR_LIMIT ? null : next };
        }
      }
      if (leaf.hashEnd >= KV_HASH_LIMIT) return { entries, cursor: null };
      hash = leaf.hashEnd;
      cd = 0;
      return null;
    };
    for (;;) {
      const page = await this.locate(() => hash, take);
      if (page !== null) return page;
    }
  }

  // ----- Structure -----

  /**
   * Replaces removedBytes at offset in the leaf at block with a gap of insertedBytes, which fill (if
   * given) writes, and adjusts the entry count, all in place in the block (ObjectStore.modify): one
   * memmove, no new block. Leaf is the view the caller scanned, read under the write lock, so the block
   * still holds exactly it.
   */
  private async modifyLeaf(
    block: number,
    leaf: KvLeafPhys,
    offset: number,
    removedBytes: number,
    insertedBytes: number,
    countDelta: number,
    fill?: (out: Buffer) => void,
  ): Promise<void> {
    const oldEnd = leaf.endOffset;
    const payloadBytes = leaf.payloadBytes - removedBytes + insertedBytes;
    const newEnd = KV_LEAF_HEADER_SIZE_BYTES + payloadBytes;
    await this.store.modify(this.objectId, block * KV_BLOCK_SIZE_BYTES, KV_BLOCK_SIZE_BYTES, (out) => {
      assert(leafPayloadBytes(out) === leaf.payloadBytes, `kv ${this.objectId}: leaf ${block} changed under its write lock`);
      out.copyWithin(offset + insertedBytes, offset + removedBytes, oldEnd);
      if (newEnd < oldEnd) out.fill(0, newEnd, oldEnd); // unused space is kept zero on disk
      KvLeafPhys.encodeHeader(out, leaf.prefix, leaf.prefixLength, leaf.entryCount + countDelta, payloadBytes);
      fill?.(out);
    });
  }

  /**
   * Splits a full leaf in two by the next hash bit, doubling the pointer table first if the leaf is as
   * deep as the table. Write order keeps every intermediate state readable: the new upper leaf is
   * written before the table points at it, and the old leaf is shrunk only after.
   */
  private async split(header: KvHeaderPhys, block: number, leaf: KvLeafPhys, hash: number, key: string): Promise<void> {
    if (allEntriesHaveHash(leaf, hash, this.objectId)) throw tooManyCollisions(this.objectId, key);
    if (leaf.prefixLength === header.tableShift) {
      if (header.tableShift >= KV_TABLE_SHIFT_MAX) {
        throw new CairnError('ENOSPC', `kv object ${this.objectId} is at its maximum size`, {
          objectId: this.objectId,
        });
      }
      await this.growTable(header);
    }
    const prefixLength = leaf.prefixLength + 1;
    const lowerPrefix = leaf.prefix * 2;
    const upperHashStart = (lowerPrefix + 1) * 2 ** (KV_HASH_BITS - prefixLength);
    let splitOffset = KV_LEAF_HEADER_SIZE_BYTES;
    let lowerCount = 0;
    while (splitOffset < leaf.endOffset && entryHash(leaf.buf, splitOffset) < upperHashStart) {
      splitOffset = nextEntry(leaf, splitOffset, this.objectId);
      lowerCount++;
    }
    const lowerBytes = splitOffset - KV_LEAF_HEADER_SIZE_BYTES;
    const upperBytes = leaf.endOffset - splitOffset;

    const upper = Buffer.alloc(KV_BLOCK_SIZE_BYTES);
    KvLeafPhys.encodeHeader(upper, lowerPrefix + 1, prefixLength, leaf.entryCount - lowerCount, upperBytes);
    upper.set(leaf.buf.subarray(splitOffset, leaf.endOffset), KV_LEAF_HEADER_SIZE_BYTES);
    const upperBlock = header.nextFreeBlock++;
    header.leafCount++;
    await this.store.write(this.objectId, upperBlock * KV_BLOCK_SIZE_BYTES, upper, { adopt: true });

    const pointersPerHalf = 2 ** (header.tableShift - prefixLength);
    await this.fillTable(header, (lowerPrefix + 1) * pointersPerHalf, pointersPerHalf, upperBlock);

    const lower = Buffer.alloc(KV_BLOCK_SIZE_BYTES);
    KvLeafPhys.encodeHeader(lower, lowerPrefix, prefixLength, lowerCount, lowerBytes);
    lower.set(leaf.buf.subarray(KV_LEAF_HEADER_SIZE_BYTES, splitOffset), KV_LEAF_HEADER_SIZE_BYTES);
    await this.store.write(this.objectId, block * KV_BLOCK_SIZE_BYTES, lower, { adopt: true });
    await this.writeHeader(header);
  }

  /**
   * Doubles the pointer table (entry i of the new table = entry i>>1 of the old). While it fits, the
   * table stays in block 0 and the header and table change in one write; past that it moves to fresh
   * contiguous blocks, the header switches to them in one write, and the old blocks are freed. A reader
   * holding the old header then sees a freed block or a leaf that does not cover its hash, and retries.
   */
  private async growTable(header: KvHeaderPhys): Promise<void> {
    const oldShift = header.tableShift;
    const newShift = oldShift + 1;
    const oldEntries = 2 ** oldShift;
    if (newShift <= KV_TABLE_EMBEDDED_SHIFT_MAX) {
      const old = await this.store.read(this.objectId, KV_TABLE_EMBEDDED_OFFSET_BYTES, oldEntries * KV_TABLE_ENTRY_BYTES);
      const out = Buffer.alloc(KV_TABLE_EMBEDDED_OFFSET_BYTES + 2 * oldEntries * KV_TABLE_ENTRY_BYTES);
      header.tableShift = newShift;
      header.encode(out);
      doubleTableInto(old, out, KV_TABLE_EMBEDDED_OFFSET_BYTES);
      await this.store.write(this.objectId, 0, out);
      return;
    }
    const newBlockCount = 2 ** (newShift - KV_TABLE_ENTRIES_PER_BLOCK_SHIFT);
    const newStart = header.nextFreeBlock;
    if (header.tableEmbedded) {
      const old = await this.store.read(this.objectId, KV_TABLE_EMBEDDED_OFFSET_BYTES, oldEntries * KV_TABLE_ENTRY_BYTES);
      const out = Buffer.alloc(KV_BLOCK_SIZE_BYTES);
      doubleTableInto(old, out, 0);
      await this.store.write(this.objectId, newStart * KV_BLOCK_SIZE_BYTES, out);
    } else {
      // Stream one old block into two new ones: memory stays at three blocks whatever the table size.
      for (let index = 0; index < header.tableBlockCount; index++) {
        const old = await this.store.read(
          this.objectId,
          (header.tableStartBlock + index) * KV_BLOCK_SIZE_BYTES,
          KV_BLOCK_SIZE_BYTES,
        );
        const out = Buffer.alloc(2 * KV_BLOCK_SIZE_BYTES);
        doubleTableInto(old, out, 0);
        await this.store.write(this.objectId, (newStart + 2 * index) * KV_BLOCK_SIZE_BYTES, out);
      }
    }
    const oldStart = header.tableStartBlock;
    const oldBlockCount = header.tableBlockCount;
    header.tableShift = newShift;
    header.tableStartBlock = newStart;
    header.tableBlockCount = newBlockCount;
    header.nextFreeBlock += newBlockCount;
    await this.writeHeader(header);
    if (oldStart !== 0) {
      await this.store.freeRange(this.objectId, oldStart * KV_BLOCK_SIZE_BYTES, oldBlockCount * KV_BLOCK_SIZE_BYTES);
    }
  }

  /** Points table entries [first, first + count) at block, one block of entries per write at most. */
  private async fillTable(header: KvHeaderPhys, first: number, count: number, block: number): Promise<void> {
    const chunkEntries = Math.min(count, KV_TABLE_ENTRIES_PER_BLOCK);
    const chunk = Buffer.alloc(chunkEntries * KV_TABLE_ENTRY_BYTES);
    for (let index = 0; index < chunkEntries; index++) chunk.writeUInt32BE(block, index * KV_TABLE_ENTRY_BYTES);
    for (let done = 0; done < count; done += chunkEntries) {
      const offset = this.tableOffset(header, first + done);
      const entries = Math.min(chunkEntries, count - done);
      await this.store.write(this.objectId, offset, chunk.subarray(0, entries * KV_TABLE_ENTRY_BYTES));
    }
  }

  private tableOffset(header: KvHeaderPhys, index: number): number {
    const base = header.tableEmbedded ? KV_TABLE_EMBEDDED_OFFSET_BYTES : header.tableStartBlock * KV_BLOCK_SIZE_BYTES;
    return base + index * KV_TABLE_ENTRY_BYTES;
  }

  // ----- Reading -----

  /**
   * Finds the leaf covering hash: header, one table entry, one leaf (three reads whatever the size).
   * A leaf is the right one exactly when it covers the hash, because leaves partition the hash space
   * and are never freed; anything else is a reader racing a writer, and it retries. `hashOf` gets the
   * object's salt from the header read here, so a key is hashed without reading the header twice.
   * The leaf's buffer may be the block itself (readShared), which a writer changes in place in one
   * synchronous step (modifyLeaf): `use` runs in the same step as the leaf's decoding, so it sees the
   * leaf whole. What it returns may keep the leaf only under the write lock (underWriteLock), where no
   * one else changes it. Nobody but modifyLeaf may change the buffer.
   */
  private async locate<T>(hashOf: (salt: bigint) => number, use: (found: Located & { hash: number }) => T): Promise<T> {
    let hash = 0;
    for (let attempt = 0; attempt < LOCATE_ATTEMPTS_MAX; attempt++) {
      const header = KvHeaderPhys.decode(await this.store.read(this.objectId, 0, KV_HEADER_SIZE_BYTES), this.objectId);
      hash = hashOf(header.salt);
      const index = Math.floor(hash / 2 ** (KV_HASH_BITS - header.tableShift));
      const pointer = await this.store.read(this.objectId, this.tableOffset(header, index), KV_TABLE_ENTRY_BYTES);
      const block = pointer.readUInt32BE(0);
      if (block === 0 || block >= header.nextFreeBlock) continue;
      const at = block * KV_BLOCK_SIZE_BYTES;
      const buf = this.store.readShared
        ? await this.store.readShared(this.objectId, at, KV_BLOCK_SIZE_BYTES)
        : await this.store.read(this.objectId, at, KV_BLOCK_SIZE_BYTES);
      const leaf = KvLeafPhys.tryDecode(buf);
      if (leaf === undefined || !leaf.covers(hash) || leaf.prefixLength > header.tableShift) continue;
      return use({ header, block, leaf, hash });
    }
    throw new CairnError('EIO', `kv object ${this.objectId}: no leaf covers hash ${hash}`, {
      objectId: this.objectId,
    });
  }

  private async readHeader(): Promise<KvHeaderPhys> {
    const buf = await this.store.read(this.objectId, 0, KV_HEADER_SIZE_BYTES);
    return KvHeaderPhys.decode(buf, this.objectId);
  }

  private async writeHeader(header: KvHeaderPhys): Promise<void> {
    await this.store.write(this.objectId, 0, header.encode());
  }

  private hashKey(keyBytes: Buffer, salt: bigint): number {
    return Number(BigInt.asUintN(64, this.hashFunction(keyBytes, salt)) >> BigInt(64 - KV_HASH_BITS));
  }
}

// ----- Leaf helpers (pure functions over a block buffer) -----

function scanLeaf(leaf: KvLeafPhys, hash: number, keyBytes: Buffer, objectId: number): LeafScan {
  const buf = leaf.buf;
  const end = leaf.endOffset;
  let matchOffset = -1;
  let insertOffset = -1;
  let freeCd = 0;
  let offset = KV_LEAF_HEADER_SIZE_BYTES;
  while (offset < end) {
    const next = nextEntry(leaf, offset, objectId);
    const entryHashValue = entryHash(buf, offset);
    if (entryHashValue > hash) break;
    if (entryHashValue === hash) {
      const keyLength = entryKeyLength(buf, offset);
      const keyOffset = offset + KV_ENTRY_HEADER_SIZE_BYTES;
      if (keyLength === keyBytes.length && keyBytes.compare(buf, keyOffset, keyOffset + keyLength) === 0) {
        matchOffset = offset;
      }
      if (insertOffset < 0) {
        // cds of one hash are sorted: the first gap is the lowest free one, and where it goes.
        const cd = entryCd(buf, offset);
        if (cd === freeCd) freeCd++;
        else insertOffset = offset;
      }
    }
    offset = next;
  }
  if (insertOffset < 0) insertOffset = offset;
  return { matchOffset, insertOffset, freeCd };
}

function allEntriesHaveHash(leaf: KvLeafPhys, hash: number, objectId: number): boolean {
  for (let offset = KV_LEAF_HEADER_SIZE_BYTES; offset < leaf.endOffset; offset = nextEntry(leaf, offset, objectId)) {
    if (entryHash(leaf.buf, offset) !== hash) return false;
  }
  return true;
}

/** Returns the offset after the entry at offset, checking that the entry lies inside the leaf. */
function nextEntry(leaf: KvLeafPhys, offset: number, objectId: number): number {
  const end = leaf.endOffset;
  const next = offset + KV_ENTRY_HEADER_SIZE_BYTES <= end ? entryEnd(leaf.buf, offset) : end + 1;
  if (next > end || !leaf.covers(entryHash(leaf.buf, offset))) {
    throw new CairnError('EIO', `kv object ${objectId}: damaged leaf entry at ${offset}`, { objectId });
  }
  return next;
}

/** Writes the doubled form of a table chunk: out[2i] = out[2i+1] = old[i]. */
function doubleTableInto(old: Buffer, out: Buffer, outOffset: number): void {
  const entries = old.length / KV_TABLE_ENTRY_BYTES;
  for (let index = 0; index < entries; index++) {
    const block = old.readUInt32BE(index * KV_TABLE_ENTRY_BYTES);
    out.writeUInt32BE(block, outOffset + 2 * index * KV_TABLE_ENTRY_BYTES);
    out.writeUInt32BE(block, outOffset + (2 * index + 1) * KV_TABLE_ENTRY_BYTES);
  }
}

// ----- Validation and errors -----

function validateKey(key: string): Buffer {
  if (typeof key !== 'string' || key.length === 0) throw new CairnError('EINVAL', 'kv key must be a non-empty string');
  if (key.length > KV_KEY_SIZE_MAX_BYTES) throw keyTooLong(key);
  // U+DC80..U+DCFF alone stand for bytes that are not UTF-8 (src/util/name-bytes.ts); other lone
  // surrogates are not valid Unicode.
  if (LONE_SURROGATE.test(key.replace(BYTE_ESCAPE, ''))) throw new CairnError('EINVAL', 'kv key is not valid Unicode (lone surrogate)');
  const keyBytes = encodeNameBytes(key);
  if (keyBytes.length > KV_KEY_SIZE_MAX_BYTES) throw keyTooLong(key);
  return keyBytes;
}

function keyTooLong(key: string): CairnError {
  return new CairnError('ENAMETOOLONG', `kv key longer than ${KV_KEY_SIZE_MAX_BYTES} bytes`, {
    keyPrefix: key.slice(0, 64),
  });
}

function validateValue(value: Buffer): void {
  if (!Buffer.isBuffer(value)) throw new CairnError('EINVAL', 'kv value must be a Buffer');
  if (value.length > KV_VALUE_SIZE_MAX_BYTES) {
    throw new CairnError('EINVAL', `kv value of ${value.length} bytes exceeds ${KV_VALUE_SIZE_MAX_BYTES}`);
  }
}

function tooManyCollisions(objectId: number, key: string): CairnError {
  return new CairnError('ENOSPC', `kv object ${objectId}: too many keys share the hash of ${JSON.stringify(key)}`, {
    objectId,
  });
}

// ----- Per-object write lock -----

/**
 * Mutations of one kv object are serialized here, whatever the store's hold does and however many
 * KvMap instances are open on it; readers take no lock (see locate). Uncontended acquire and release
 * create no promises: every promise is costly where async hooks are on (the test runner turns them on).
 */
class WriteLock {
  private locked = false;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly locks: Map<number, WriteLock>,
    private readonly objectId: number,
  ) {}

  tryAcquire(): boolean {
    if (this.locked) return false;
    this.locked = true;
    return true;
  }

  acquire(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Hands the lock to the next waiter, or frees it. */
  release(): void {
    assert(this.locked, 'kv write lock released while not held');
    const next = this.waiters.shift();
    if (next !== undefined) {
      next();
      return;
    }
    this.locked = false;
    this.locks.delete(this.objectId);
  }
}

const writeLocks = new WeakMap<ObjectStore, Map<number, WriteLock>>();

function writeLock(store: ObjectStore, objectId: number): WriteLock {
  let locks = writeLocks.get(store);
  if (locks === undefined) {
    locks = new Map();
    writeLocks.set(store, locks);
  }
  let lock = locks.get(objectId);
  if (lock === undefined) {
    lock = new WriteLock(locks, objectId);
    locks.set(objectId, lock);
  }
  return lock;
}
