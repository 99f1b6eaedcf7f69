/**
 * On-disk structures of a kv object (see the theory comment in index.ts for how they fit together).
 * Every structure has a magic number and a version and is encoded/decoded explicitly; in-memory objects
 * are never written as they are. All integers are big-endian, so a leaf entry's (hash, cd) prefix sorts
 * bytewise in the same order as numerically.
 */
import { CairnError } from '../util/errors.js';
import { assert } from '../util/assert.js';

export const KV_BLOCK_SIZE_SHIFT = 14;
export const KV_BLOCK_SIZE_BYTES = 1 << KV_BLOCK_SIZE_SHIFT;

/** Bits of the key hash the map uses: positions are (hash48 << 16 | cd), a 64-bit cursor. */
export const KV_HASH_BITS = 48;
export const KV_HASH_LIMIT = 2 ** KV_HASH_BITS;
export const KV_CD_BITS = 16;
export const KV_CD_MAX = (1 << KV_CD_BITS) - 1;

/** Hash function ids stored in the header: never renumber. */
export const KvHashType = { xxh64Salted: 1 } as const;

// ----- Header (block 0) -----

/** "CAIRN-KV" in ASCII. */
export const KV_HEADER_MAGIC = 0x434149524e2d4b56n;
export const KV_HEADER_VERSION = 1;
export const KV_HEADER_SIZE_BYTES = 128;

/** Pointer table entries are u32 leaf block numbers. */
export const KV_TABLE_ENTRY_BYTES = 4;
/** The table lives in block 0 after the header while it has at most 2^11 entries (8 KiB). */
export const KV_TABLE_EMBEDDED_SHIFT_MAX = 11;
export const KV_TABLE_EMBEDDED_OFFSET_BYTES = KV_HEADER_SIZE_BYTES;
/** Entries per table block once the table has its own blocks. */
export const KV_TABLE_ENTRIES_PER_BLOCK_SHIFT = KV_BLOCK_SIZE_SHIFT - 2;
export const KV_TABLE_ENTRIES_PER_BLOCK = 1 << KV_TABLE_ENTRIES_PER_BLOCK_SHIFT;
/** 2^24 leaves (a 64 MiB table) is the largest map: ~10^9 typical entries. Beyond it, ENOSPC. */
export const KV_TABLE_SHIFT_MAX = 24;

/**
 * KvHeaderPhys, the first 128 bytes of block 0:
 *   0 u64 magic  8 u32 version  12 u32 blockSizeShift  16 u32 hashType  20 u32 tableShift
 *  24 u64 salt  32 u64 entryCount  40 u64 leafCount  48 u64 nextFreeBlock
 *  56 u64 tableStartBlock (0 = embedded at offset 128 of block 0)  64 u64 tableBlockCount  72.. reserved
 */
export class KvHeaderPhys {
  version = KV_HEADER_VERSION;
  blockSizeShift = KV_BLOCK_SIZE_SHIFT;
  hashType: number = KvHashType.xxh64Salted;
  /** Global depth: the table has 2^tableShift entries, indexed by the top tableShift hash bits. */
  tableShift = 0;
  salt = 0n;
  entryCount = 0;
  leafCount = 0;
  /** Next unused block number; blocks are handed out by bumping it and never reused. */
  nextFreeBlock = 1;
  tableStartBlock = 0;
  tableBlockCount = 0;

  get tableEmbedded(): boolean {
    return this.tableStartBlock === 0;
  }

  encode(out: Buffer = Buffer.allocUnsafe(KV_HEADER_SIZE_BYTES)): Buffer {
    assert(out.length >= KV_HEADER_SIZE_BYTES, 'kv header buffer too small');
    out.fill(0, 0, KV_HEADER_SIZE_BYTES);
    out.writeBigUInt64BE(KV_HEADER_MAGIC, 0);
    out.writeUInt32BE(this.version, 8);
    out.writeUInt32BE(this.blockSizeShift, 12);
    out.writeUInt32BE(this.hashType, 16);
    out.writeUInt32BE(this.tableShift, 20);
    out.writeBigUInt64BE(this.salt, 24);
    out.writeBigUInt64BE(BigInt(this.entryCount), 32);
    out.writeBigUInt64BE(BigInt(this.leafCount), 40);
    out.writeBigUInt64BE(BigInt(this.nextFreeBlock), 48);
    out.writeBigUInt64BE(BigInt(this.tableStartBlock), 56);
    out.writeBigUInt64BE(BigInt(this.tableBlockCount), 64);
    return out;
  }

  static decode(buf: Buffer, objectId: number): KvHeaderPhys {
    if (buf.length < KV_HEADER_SIZE_BYTES || buf.readBigUInt64BE(0) !== KV_HEADER_MAGIC) {
      throw new CairnError('EINVAL', `object ${objectId} is not a kv object (bad header magic)`, { objectId });
    }
    const header = new KvHeaderPhys();
    header.version = buf.readUInt32BE(8);
    if (header.version !== KV_HEADER_VERSION) {
      throw new CairnError('EVERSION', `kv object ${objectId} has version ${header.version}`, { objectId });
    }
    header.blockSizeShift = buf.readUInt32BE(12);
    header.hashType = buf.readUInt32BE(16);
    header.tableShift = buf.readUInt32BE(20);
    header.salt = buf.readBigUInt64BE(24);
    header.entryCount = Number(buf.readBigUInt64BE(32));
    header.leafCount = Number(buf.readBigUInt64BE(40));
    header.nextFreeBlock = Number(buf.readBigUInt64BE(48));
    header.tableStartBlock = Number(buf.readBigUInt64BE(56));
    header.tableBlockCount = Number(buf.readBigUInt64BE(64));
    const sane =
      header.blockSizeShift === KV_BLOCK_SIZE_SHIFT &&
      header.hashType === KvHashType.xxh64Salted &&
      header.tableShift <= KV_TABLE_SHIFT_MAX &&
      (header.tableEmbedded
        ? header.tableShift <= KV_TABLE_EMBEDDED_SHIFT_MAX && header.tableBlockCount === 0
        : header.tableShift > KV_TABLE_EMBEDDED_SHIFT_MAX &&
          header.tableBlockCount === 2 ** (header.tableShift - KV_TABLE_ENTRIES_PER_BLOCK_SHIFT)) &&
      header.nextFreeBlock > header.leafCount;
    if (!sane) throw new CairnError('EIO', `kv object ${objectId} has a damaged header`, { objectId });
    return header;
  }
}

// ----- Leaves -----

/** "KVLF" in ASCII. */
export const KV_LEAF_MAGIC = 0x4b564c46;
export const KV_LEAF_VERSION = 1;
export const KV_LEAF_HEADER_SIZE_BYTES = 32;
export const KV_LEAF_PAYLOAD_MAX_BYTES = KV_BLOCK_SIZE_BYTES - KV_LEAF_HEADER_SIZE_BYTES;
/** Per entry: u48 hash, u16 cd, u16 keyLength, u16 valueLength, then key and value bytes. */
export const KV_ENTRY_HEADER_SIZE_BYTES = 12;

/**
 * KvLeafPhys, one 16 KiB block: the entries whose top prefixLength hash bits equal prefix, packed and
 * sorted by (hash, cd).
 *   0 u32 magic  4 u16 version  6 u16 prefixLength  8 u64 prefix  16 u32 entryCount
 *  20 u32 payloadBytes  24.. reserved  32.. entries
 * This class is a view over a block buffer: lookups scan it in place without decoding entries.
 */
export class KvLeafPhys {
  /** First hash covered by this leaf. */
  readonly hashStart: number;
  /** One past the last hash covered by this leaf. */
  readonly hashEnd: number;

  private constructor(
    readonly buf: Buffer,
    readonly prefix: number,
    readonly prefixLength: number,
    readonly entryCount: number,
    readonly payloadBytes: number,
  ) {
    const span = 2 ** (KV_HASH_BITS - prefixLength);
    this.hashStart = prefix * span;
    this.hashEnd = (prefix + 1) * span;
  }

  /** Offset just past the last entry. */
  get endOffset(): number {
    return KV_LEAF_HEADER_SIZE_BYTES + this.payloadBytes;
  }

  get freeBytes(): number {
    return KV_LEAF_PAYLOAD_MAX_BYTES - this.payloadBytes;
  }

  covers(hash: number): boolean {
    return hash >= this.hashStart && hash < this.hashEnd;
  }

  /**
   * Returns the view, or undefined when the block is not a leaf (a reader racing a table move sees a
   * freed or reused block; the caller retries). Entry bounds are checked by the scans that use them.
   */
  static tryDecode(buf: Buffer): KvLeafPhys | undefined {
    if (buf.length !== KV_BLOCK_SIZE_BYTES || buf.readUInt32BE(0) !== KV_LEAF_MAGIC) return undefined;
    if (buf.readUInt16BE(4) !== KV_LEAF_VERSION) return undefined;
    const prefixLength = buf.readUInt16BE(6);
    const prefix = Number(buf.readBigUInt64BE(8));
    const entryCount = buf.readUInt32BE(16);
    const payloadBytes = leafPayloadBytes(buf);
    if (prefixLength > KV_TABLE_SHIFT_MAX || prefix >= 2 ** prefixLength) return undefined;
    if (payloadBytes > KV_LEAF_PAYLOAD_MAX_BYTES) return undefined;
    return new KvLeafPhys(buf, prefix, prefixLength, entryCount, payloadBytes);
  }

  /** Writes a leaf header into a block buffer whose entries are already in place. */
  static encodeHeader(
    out: Buffer,
    prefix: number,
    prefixLength: number,
    entryCount: number,
    payloadBytes: number,
  ): void {
    assert(payloadBytes <= KV_LEAF_PAYLOAD_MAX_BYTES, 'kv leaf overflow');
    out.fill(0, 0, KV_LEAF_HEADER_SIZE_BYTES);
    out.writeUInt32BE(KV_LEAF_MAGIC, 0);
    out.writeUInt16BE(KV_LEAF_VERSION, 4);
    out.writeUInt16BE(prefixLength, 6);
    out.writeBigUInt64BE(BigInt(prefix), 8);
    out.writeUInt32BE(entryCount, 16);
    out.writeUInt32BE(payloadBytes, 20);
  }
}

/** The payloadBytes field of a leaf block, read straight from it. */
export function leafPayloadBytes(buf: Buffer): number {
  return buf.readUInt32BE(20);
}

/** Size of an encoded entry. */
export function entrySizeBytes(keyLengthBytes: number, valueLengthBytes: number): number {
  return KV_ENTRY_HEADER_SIZE_BYTES + keyLengthBytes + valueLengthBytes;
}

/** Encodes one entry at offset; returns the offset after it. */
export function encodeEntry(out: Buffer, offset: number, hash: number, cd: number, key: Buffer, value: Buffer): number {
  out.writeUIntBE(hash, offset, 6);
  out.writeUInt16BE(cd, offset + 6);
  out.writeUInt16BE(key.length, offset + 8);
  out.writeUInt16BE(value.length, offset + 10);
  key.copy(out, offset + KV_ENTRY_HEADER_SIZE_BYTES);
  value.copy(out, offset + KV_ENTRY_HEADER_SIZE_BYTES + key.length);
  return offset + KV_ENTRY_HEADER_SIZE_BYTES + key.length + value.length;
}

// Entry field readers index the buffer directly: they run once per entry per scan, and the callers
// have already checked that the entry header lies inside the block.
export function entryHash(buf: Buffer, offset: number): number {
  return (
    (buf[offset]! * 0x1000000 + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!)) * 0x10000 +
    ((buf[offset + 4]! << 8) | buf[offset + 5]!)
  );
}

export function entryCd(buf: Buffer, offset: number): number {
  return (buf[offset + 6]! << 8) | buf[offset + 7]!;
}

export function entryKeyLength(buf: Buffer, offset: number): number {
  return (buf[offset + 8]! << 8) | buf[offset + 9]!;
}

export function entryValueLength(buf: Buffer, offset: number): number {
  return (buf[offset + 10]! << 8) | buf[offset + 11]!;
}

export function entryEnd(buf: Buffer, offset: number): number {
  return offset + KV_ENTRY_HEADER_SIZE_BYTES + entryKeyLength(buf, offset) + entryValueLength(buf, offset);
}
