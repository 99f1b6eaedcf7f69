/**
 * Contracts of the object layer (OpenZFS DMU): an object set is a numbered collection of objects; each
 * object is a sparse byte array stored in a tree of fixed-size blocks, with a small "bonus" buffer for
 * per-object attributes (an inode). Changes are made inside a transaction hold and reach the disk when
 * the pool syncs the txg they belong to: all of one hold lands in one txg, or none of it does.
 */

/** Stable on-disk ids of object (and block) types: never renumber. */
export const ObjectType = {
  none: 0,
  objset: 1,
  dnode: 2,
  indirect: 3,
  /** Plain bytes: file contents, space maps, history. */
  plainFile: 10,
  directory: 11,
  kv: 12,
  spaceMap: 13,
  history: 14,
  dataset: 15,
  symlink: 16,
  volume: 17,
  deadList: 18,
  masterNode: 19,
} as const;
export type ObjectType = (typeof ObjectType)[keyof typeof ObjectType];

/** Largest bonus buffer an object can carry. */
export const BONUS_SIZE_MAX_BYTES = 320;

export interface ObjectInfo {
  type: ObjectType;
  /** Data block size; fixed once the object has more than one block. */
  blockSizeBytes: number;
  /** Bytes up to the end of the last non-hole block ever written (an upper bound on contents). */
  maxOffsetBytes: number;
  /** Physical bytes allocated by this object's blocks. */
  usedBytes: number;
  bonusType: number;
  bonusLengthBytes: number;
}

export interface AllocateObjectOptions {
  /** Power of two from 512 to 1 MiB; default 128 KiB (the recordsize). */
  blockSizeBytes?: number;
  bonusType?: number;
}

/**
 * One object set (a dataset's contents, or the pool's meta object set). Every mutating call must run
 * inside hold(); reads may run anywhere. Reads see every change made so far, synced or not.
 */
export interface ObjectStore {
  /** Runs fn as one atomic unit of the open txg; the txg cannot sync while fn runs. */
  hold<T>(fn: () => Promise<T>): Promise<T>;
  allocateObject(type: ObjectType, options?: AllocateObjectOptions): Promise<number>;
  freeObject(id: number): Promise<void>;
  objectInfo(id: number): Promise<ObjectInfo>;
  /** Reads length bytes at offset; holes and bytes never written read as zeros. */
  read(id: number, offset: number, length: number): Promise<Buffer>;
  /**
   * As read, into the caller's buffer (target.length bytes), for callers that keep what they read (a
   * FUSE mount's page cache, an NBD client): whole blocks not cached go straight from the device into
   * it and are not cached here, and nothing is read ahead (such callers read ahead themselves).
   */
  readInto(id: number, offset: number, target: Buffer): Promise<void>;
  /**
   * As read, but the result may be the store's cached block itself (no copy) when the range lies in one
   * block: the caller must never modify it, and it stays as read only until someone writes part of that
   * block or modifies it in place (a whole-block write replaces the buffer instead). Optional: read is the fallback.
   */
  readShared?(id: number, offset: number, length: number): Promise<Buffer>;
  /**
   * Changes length bytes at offset, inside one existing block, in place: edit gets that range of the
   * block as the open txg's own copy (a clean block is copied once per txg) and must finish before it
   * returns, so no reader ever sees half a change. For small changes to big blocks that are changed
   * often (kv leaves): no block-sized buffer per change. Views from readShared of the block see it.
   */
  modify(id: number, offset: number, length: number, edit: (range: Buffer) => void): Promise<void>;
  /**
   * Writes data at offset. With `adopt`, data is the store's from now on (the caller never touches it
   * again): a whole, aligned block of it may become the block itself instead of a copy.
   */
  write(id: number, offset: number, data: Buffer, options?: { adopt?: boolean }): Promise<void>;
  /** Frees whole blocks in the range and zeroes partial ones (punch a hole / truncate). */
  freeRange(id: number, offset: number, length: number): Promise<void>;
  getBonus(id: number): Promise<Buffer>;
  setBonus(id: number, bonus: Buffer): Promise<void>;
  /**
   * Work to run at the start of each sync, before anything is written, as part of the txg being
   * synced: the layer above records what it kept in memory during the txg. The hook is given the store
   * itself to write through: what it writes belongs to that txg whatever gates a wrapper of the store
   * keeps for callers (a dataset made readonly since, whose wrapper refuses writes, must still sync).
   * It runs with no hold active (inside the pool's exclusive section), so it must not wait for a hold
   * or for a lock that a caller waiting for a hold keeps. One hook per store (the newest replaces it);
   * a store that never syncs (MemoryObjectStore) has no such method, and callers then write at once.
   */
  setBeforeSync?(hook: ((store: ObjectStore) => Promise<void>) | null): void;
}
