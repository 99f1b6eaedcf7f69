/**
 * Contracts of the io layer: the block write/read pipeline (OpenZFS zio).
 * write: compress → checksum → allocate → issue copies → BlockPointer.
 * read:  issue → verify checksum (vdev layer tries copies / parity arrangements) → heal → decompress.
 */
import type { BlockPointer, Dva } from './blkptr.js';

/** Stable on-disk ids: never renumber. */
export const ChecksumType = { off: 0, fletcher4: 1, sha256: 2, xxh128: 3 } as const;
export type ChecksumType = (typeof ChecksumType)[keyof typeof ChecksumType];
export type ChecksumName = keyof typeof ChecksumType;

/** Stable on-disk ids: never renumber. */
export const CompressionType = { off: 0, lz4: 1, zstd: 2 } as const;
export type CompressionType = (typeof CompressionType)[keyof typeof CompressionType];
export type CompressionName = keyof typeof CompressionType;

/** Space allocation, implemented by the pool's metaslab allocator. */
export interface Allocator {
  /**
   * Allocates `copies` DVAs for a block of psize bytes, each on a different top-level vdev where the
   * pool has several, else far apart on the same one. Throws CairnError ENOSPC.
   */
  allocate(psize: number, copies: number): Dva[];
  /** Returns space. The pool defers reuse until the freeing txg is durable. */
  free(dva: Dva): void;
}

export interface BlockWriteProps {
  type: number;
  level: number;
  checksum: ChecksumType;
  compression: CompressionType;
  copies: number;
  fill: number;
  birthTxg: number;
  /**
   * Keep the written block in the cache. Metadata always is; a data block is when part of it was
   * written this txg, since the next small write into it would otherwise read it back.
   */
  keepCached?: boolean;
}

export interface ScrubResult {
  repairedBytes: number;
  /** True when no copy could be verified: the block is lost (counted as a data error). */
  unrecoverable: boolean;
}

export interface BlockIo {
  /** data is the logical block (lsize bytes). */
  write(data: Buffer, props: BlockWriteProps): Promise<BlockPointer>;
  /**
   * Overwrites a block born in the txg now syncing at the same DVAs when the new physical size fits
   * them; otherwise writes it anew and leaves the old DVAs allocated: whoever replaced the pointer
   * frees them (once). Safe only because no committed state points at the old block.
   */
  rewrite(old: BlockPointer, data: Buffer, props: BlockWriteProps): Promise<BlockPointer>;
  /** Returns the verified, decompressed lsize bytes; throws CairnError ECKSUM/EIO. */
  read(bp: BlockPointer): Promise<Buffer>;
  /** read(), into a buffer of exactly bp.lsize bytes (straight from the device where it can). */
  readInto(bp: BlockPointer, target: Buffer): Promise<void>;
  /** Reads every copy of the block, repairs what is bad. */
  scrub(bp: BlockPointer): Promise<ScrubResult>;
}
