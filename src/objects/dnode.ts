/**
 * DnodePhys: the 512-byte on-disk record of one object, kept in the object set's meta-dnode object at
 * offset id * 512 (OpenZFS dnode_phys_t, with one root block pointer).
 *
 *   0 u8  type (ObjectType; 0 = free slot)     1 u8  nlevels (1 = root points at a data block)
 *   2 u8  bonusType                            3 u8  reserved
 *   4 u16 bonusLength                          6 u16 reserved
 *   8 u32 dataBlockSizeBytes                  12 u32 recordSizeBytes (largest block size it may grow to)
 *  16 u64 maxBlockId (highest level-0 block id ever written + 1; 0 = none)
 *  24 u64 usedBytes (asize of every block in the tree)
 *  32 32 bytes reserved
 *  64 128-byte root BlockPointerPhys
 * 192 320-byte bonus
 */
import { BLKPTR_SIZE_BYTES, decodeBlockPointer, encodeBlockPointer, holeBlockPointer, type BlockPointer } from '../io/blkptr.js';
import { assert } from '../util/assert.js';
import { BONUS_SIZE_MAX_BYTES, type ObjectType } from './types.js';

export const DNODE_SIZE_BYTES = 512;
export const DNODE_SHIFT = 9;
const ROOT_BP_OFFSET = 64;
const BONUS_OFFSET = ROOT_BP_OFFSET + BLKPTR_SIZE_BYTES;
assert(BONUS_OFFSET + BONUS_SIZE_MAX_BYTES === DNODE_SIZE_BYTES, 'dnode layout');

/** Indirect blocks are 128 KiB: 1024 block pointers. */
export const INDIRECT_BLOCK_SHIFT = 17;
export const INDIRECT_BLOCK_SIZE_BYTES = 1 << INDIRECT_BLOCK_SHIFT;
export const POINTERS_PER_INDIRECT_SHIFT = INDIRECT_BLOCK_SHIFT - 7;
export const POINTERS_PER_INDIRECT = 1 << POINTERS_PER_INDIRECT_SHIFT;

export interface Dnode {
  type: ObjectType;
  nlevels: number;
  bonusType: number;
  dataBlockSizeBytes: number;
  recordSizeBytes: number;
  maxBlockId: number;
  usedBytes: number;
  rootBp: BlockPointer;
  bonus: Buffer;
}

export function emptyDnode(): Dnode {
  return {
    type: 0 as ObjectType, nlevels: 1, bonusType: 0, dataBlockSizeBytes: 0, recordSizeBytes: 0, maxBlockId: 0, usedBytes: 0,
    rootBp: holeBlockPointer(), bonus: Buffer.alloc(0),
  };
}

export function encodeDnode(dn: Dnode, out: Buffer, at: number): void {
  out.fill(0, at, at + DNODE_SIZE_BYTES);
  if (dn.type === 0) return;
  assert(dn.bonus.length <= BONUS_SIZE_MAX_BYTES, 'bonus too large');
  out.writeUInt8(dn.type, at);
  out.writeUInt8(dn.nlevels, at + 1);
  out.writeUInt8(dn.bonusType, at + 2);
  out.writeUInt16LE(dn.bonus.length, at + 4);
  out.writeUInt32LE(dn.dataBlockSizeBytes, at + 8);
  out.writeUInt32LE(dn.recordSizeBytes, at + 12);
  out.writeBigUInt64LE(BigInt(dn.maxBlockId), at + 16);
  out.writeBigUInt64LE(BigInt(dn.usedBytes), at + 24);
  encodeBlockPointer(dn.rootBp, out, at + ROOT_BP_OFFSET);
  dn.bonus.copy(out, at + BONUS_OFFSET);
}

export function decodeDnode(buf: Buffer, at: number): Dnode {
  const type = buf.readUInt8(at) as ObjectType;
  if (type === 0) return emptyDnode();
  const bonusLength = buf.readUInt16LE(at + 4);
  assert(bonusLength <= BONUS_SIZE_MAX_BYTES, 'corrupt dnode: bonus length');
  const nlevels = buf.readUInt8(at + 1);
  assert(nlevels >= 1 && nlevels <= 8, 'corrupt dnode: nlevels');
  return {
    type,
    nlevels,
    bonusType: buf.readUInt8(at + 2),
    dataBlockSizeBytes: buf.readUInt32LE(at + 8),
    recordSizeBytes: buf.readUInt32LE(at + 12),
    maxBlockId: Number(buf.readBigUInt64LE(at + 16)),
    usedBytes: Number(buf.readBigUInt64LE(at + 24)),
    rootBp: decodeBlockPointer(buf, at + ROOT_BP_OFFSET),
    bonus: Buffer.from(buf.subarray(at + BONUS_OFFSET, at + BONUS_OFFSET + bonusLength)),
  };
}
