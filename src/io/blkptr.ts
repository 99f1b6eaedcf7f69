/**
 * Block pointers: how a parent names, locates and verifies a child block (OpenZFS blkptr_t).
 *
 * On disk a BlockPointerPhys is 128 bytes, little-endian:
 *   0   3 × DVA (16 bytes each): u32 vdev, u32 asize in sectors (0 = empty slot), u64 offset in bytes
 *  48   u32 lsize        logical (uncompressed) size
 *  52   u32 psize        physical size as written (sector multiple)
 *  56   u8  compression  CompressionType
 *  57   u8  checksum     ChecksumType
 *  58   u8  type         ObjectType of the block's contents
 *  59   u8  level        0 = data, n = indirect block n levels above data
 *  60   u32 fill         data blocks (or live objects for dnode blocks) beneath this pointer
 *  64   u64 birth txg    txg in which the block was written; 0 with no DVAs = a hole never written
 *  72   24 bytes reserved, zero
 *  96   32 bytes checksum of the psize bytes as written (shorter checksums are zero-padded)
 * A hole has no DVAs; its lsize and birth may be set (birth records when it was punched).
 */
import { assert } from '../util/assert.js';

export const BLKPTR_SIZE_BYTES = 128;
export const DVA_COUNT_MAX = 3;
export const CHECKSUM_SIZE_BYTES = 32;

export interface Dva {
  /** Top-level vdev id. */
  vdev: number;
  /** Byte offset in that vdev's allocatable address space. */
  offset: number;
  /** Bytes of address space the copy occupies (includes raidz parity and padding). */
  asize: number;
}

export interface BlockPointer {
  dvas: Dva[];
  lsize: number;
  psize: number;
  compression: number;
  checksum: number;
  type: number;
  level: number;
  fill: number;
  birthTxg: number;
  cksum: Buffer;
}

export const SECTOR_SHIFT_MIN = 9;

export function isHole(bp: BlockPointer): boolean {
  return bp.dvas.length === 0;
}

export function holeBlockPointer(lsize = 0, birthTxg = 0): BlockPointer {
  return {
    dvas: [], lsize, psize: 0, compression: 0, checksum: 0, type: 0, level: 0, fill: 0, birthTxg,
    cksum: Buffer.alloc(CHECKSUM_SIZE_BYTES),
  };
}

export function encodeBlockPointer(bp: BlockPointer, out: Buffer = Buffer.alloc(BLKPTR_SIZE_BYTES), at = 0): Buffer {
  assert(bp.dvas.length <= DVA_COUNT_MAX, 'too many DVAs');
  out.fill(0, at, at + BLKPTR_SIZE_BYTES);
  bp.dvas.forEach((dva, i) => {
    const o = at + i * 16;
    assert(dva.asize > 0 && dva.asize % 512 === 0, `DVA asize ${dva.asize} not a sector multiple`);
    out.writeUInt32LE(dva.vdev, o);
    out.writeUInt32LE(dva.asize / 512, o + 4);
    out.writeBigUInt64LE(BigInt(dva.offset), o + 8);
  });
  out.writeUInt32LE(bp.lsize, at + 48);
  out.writeUInt32LE(bp.psize, at + 52);
  out.writeUInt8(bp.compression, at + 56);
  out.writeUInt8(bp.checksum, at + 57);
  out.writeUInt8(bp.type, at + 58);
  out.writeUInt8(bp.level, at + 59);
  out.writeUInt32LE(bp.fill, at + 60);
  out.writeBigUInt64LE(BigInt(bp.birthTxg), at + 64);
  assert(bp.cksum.length <= CHECKSUM_SIZE_BYTES, 'checksum too long');
  bp.cksum.copy(out, at + 96);
  return out;
}

export function decodeBlockPointer(buf: Buffer, at = 0): BlockPointer {
  const dvas: Dva[] = [];
  for (let i = 0; i < DVA_COUNT_MAX; i++) {
    const o = at + i * 16;
    const sectors = buf.readUInt32LE(o + 4);
    if (sectors === 0) continue;
    dvas.push({ vdev: buf.readUInt32LE(o), asize: sectors * 512, offset: Number(buf.readBigUInt64LE(o + 8)) });
  }
  return {
    dvas,
    lsize: buf.readUInt32LE(at + 48),
    psize: buf.readUInt32LE(at + 52),
    compression: buf.readUInt8(at + 56),
    checksum: buf.readUInt8(at + 57),
    type: buf.readUInt8(at + 58),
    level: buf.readUInt8(at + 59),
    fill: buf.readUInt32LE(at + 60),
    birthTxg: Number(buf.readBigUInt64LE(at + 64)),
    cksum: Buffer.from(buf.subarray(at + 96, at + 128)),
  };
}

export function dvaKey(dva: Dva): string {
  return `${dva.vdev}:${dva.offset}`;
}
