/**
 * Dead lists (OpenZFS dsl_deadlist, unbucketed): the blocks a dataset stopped referencing that an older
 * snapshot still references. One plain MOS object per list: 128-byte block pointers appended in order,
 * with the totals in the bonus so `usedbysnapshots`-style figures need no scan of the entries:
 *
 *   bonus: u64 entry count, u64 allocated bytes (all DVAs), u64 physical bytes, u64 logical bytes
 *
 * Every function runs where the MOS may change: inside a hold, or in the syncing txg (dead-list appends
 * are made by the syncer right after a dataset's object set is written).
 */
import { BLKPTR_SIZE_BYTES, decodeBlockPointer, encodeBlockPointer, type BlockPointer } from '../io/blkptr.js';
import type { ObjectStore } from '../objects/types.js';
import { ObjectType } from '../objects/types.js';

const DEADLIST_BLOCK_SIZE_BYTES = 16 * 1024;
const DEADLIST_BONUS_BYTES = 32;
/** Entries read or written per step: bounded memory however long a list grows. */
export const DEADLIST_CHUNK_ENTRIES = 1024;

export interface DeadListTotals {
  count: number;
  usedBytes: number;
  compressedBytes: number;
  uncompressedBytes: number;
}

export function allocatedBytes(bp: BlockPointer): number {
  let bytes = 0;
  for (const dva of bp.dvas) bytes += dva.asize;
  return bytes;
}

function encodeTotals(t: DeadListTotals): Buffer {
  const out = Buffer.alloc(DEADLIST_BONUS_BYTES);
  out.writeBigUInt64LE(BigInt(t.count), 0);
  out.writeBigUInt64LE(BigInt(t.usedBytes), 8);
  out.writeBigUInt64LE(BigInt(t.compressedBytes), 16);
  out.writeBigUInt64LE(BigInt(t.uncompressedBytes), 24);
  return out;
}

export async function deadListTotals(mos: ObjectStore, id: number): Promise<DeadListTotals> {
  const b = await mos.getBonus(id);
  return {
    count: Number(b.readBigUInt64LE(0)),
    usedBytes: Number(b.readBigUInt64LE(8)),
    compressedBytes: Number(b.readBigUInt64LE(16)),
    uncompressedBytes: Number(b.readBigUInt64LE(24)),
  };
}

export async function createDeadList(mos: ObjectStore): Promise<number> {
  const id = await mos.allocateObject(ObjectType.deadList, { blockSizeBytes: DEADLIST_BLOCK_SIZE_BYTES });
  await mos.setBonus(id, encodeTotals({ count: 0, usedBytes: 0, compressedBytes: 0, uncompressedBytes: 0 }));
  return id;
}

export async function freeDeadList(mos: ObjectStore, id: number): Promise<void> {
  await mos.freeObject(id);
}

/** Appends entries (in chunks, so a caller may pass any number it already holds). */
export async function appendDeadList(mos: ObjectStore, id: number, bps: readonly BlockPointer[]): Promise<void> {
  if (bps.length === 0) return;
  const totals = await deadListTotals(mos, id);
  for (let i = 0; i < bps.length; i += DEADLIST_CHUNK_ENTRIES) {
    const chunk = bps.slice(i, i + DEADLIST_CHUNK_ENTRIES);
    const buf = Buffer.alloc(chunk.length * BLKPTR_SIZE_BYTES);
    chunk.forEach((bp, j) => {
      encodeBlockPointer(bp, buf, j * BLKPTR_SIZE_BYTES);
      totals.usedBytes += allocatedBytes(bp);
      totals.compressedBytes += bp.psize;
      totals.uncompressedBytes += bp.lsize;
    });
    await mos.write(id, totals.count * BLKPTR_SIZE_BYTES, buf);
    totals.count += chunk.length;
  }
  await mos.setBonus(id, encodeTotals(totals));
}

/** The entries, oldest first, DEADLIST_CHUNK_ENTRIES at a time. */
export async function* deadListChunks(mos: ObjectStore, id: number): AsyncGenerator<BlockPointer[]> {
  const { count } = await deadListTotals(mos, id);
  for (let at = 0; at < count; at += DEADLIST_CHUNK_ENTRIES) {
    const n = Math.min(DEADLIST_CHUNK_ENTRIES, count - at);
    const buf = await mos.read(id, at * BLKPTR_SIZE_BYTES, n * BLKPTR_SIZE_BYTES);
    const out: BlockPointer[] = [];
    for (let j = 0; j < n; j++) out.push(decodeBlockPointer(buf, j * BLKPTR_SIZE_BYTES));
    yield out;
  }
}

/** Allocated bytes of the entries born after txg (a snapshot's `used`, a clone's own dead space). */
export async function deadListBytesBornAfter(mos: ObjectStore, id: number, txg: number): Promise<number> {
  if (txg === 0) return (await deadListTotals(mos, id)).usedBytes;
  let bytes = 0;
  for await (const chunk of deadListChunks(mos, id)) for (const bp of chunk) if (bp.birthTxg > txg) bytes += allocatedBytes(bp);
  return bytes;
}
