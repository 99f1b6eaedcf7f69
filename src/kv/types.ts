/**
 * Contract of the key-value layer (OpenZFS ZAP): a persistent map from UTF-8 string keys to small binary
 * values, stored in one object of an ObjectStore. Directories, the pool's object directory and property
 * tables are kv objects. Lookups are O(1)-O(log n) block reads whatever the size (1M+ entries), and
 * memory use does not grow with the number of entries.
 */

export const KV_KEY_SIZE_MAX_BYTES = 1024;
export const KV_VALUE_SIZE_MAX_BYTES = 1024;

export interface KvEntry {
  key: string;
  value: Buffer;
}

/** A page of entries and the cursor to resume after them (null when there are no more). */
export interface KvPage {
  entries: KvEntry[];
  cursor: bigint | null;
}

export interface KvMap {
  readonly objectId: number;
  get(key: string): Promise<Buffer | undefined>;
  /**
   * Inserts or replaces; with `exclusive`, only inserts (CairnError EEXIST when the key is there, and
   * nothing changes). Must run inside the store's hold().
   */
  set(key: string, value: Buffer, options?: { exclusive?: boolean }): Promise<void>;
  /** Must run inside the store's hold(). Returns whether the key was there. */
  delete(key: string): Promise<boolean>;
  count(): Promise<number>;
  /**
   * Entries in a stable order from cursor (0n = the start). A cursor stays valid across inserts and
   * deletes of other keys, so readdir can resume at a 64-bit offset as getdents does.
   */
  list(cursor: bigint, limit: number): Promise<KvPage>;
}
