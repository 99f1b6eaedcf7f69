/**
 * The kv layer (OpenZFS ZAP): a persistent map from UTF-8 string keys (1..1024 bytes) to small binary
 * values (0..1024 bytes), stored in one object of an ObjectStore using only read/write/freeRange.
 * Directories, the pool's object directory and property tables are kv objects.
 *
 * WHY EXTENDIBLE HASHING (the fat ZAP) AND NOT A B+TREE
 * The decisive requirement is the cursor: readdir must resume at a 64-bit offset (getdents, FUSE, NFS
 * cookies) after any number of inserts and deletes of other names. In a hash table every entry has a
 * fixed position, (hash, cd), that fits in 64 bits and never changes while the entry lives, so "resume at
 * position p" is exact. A B+tree orders by key, and a key (up to 1 KiB) does not fit in 64 bits, so its
 * cursor would need an unstable slot number or a side table. Hashing also gives lookups a fixed cost —
 * header, one pointer-table entry, one leaf: three reads at any size — where a B+tree pays its height.
 * What hashing gives up, ordered iteration by key, no consumer needs (as ZFS directories show).
 *
 * STRUCTURE (object with 16 KiB blocks; block numbers are u32, handed out by bumping a counter)
 *   block 0    KvHeaderPhys (128 bytes) + the pointer table while it has ≤ 2^11 entries
 *   block n    KvLeafPhys: entries whose top prefixLength hash bits equal prefix
 *   blocks t.. the pointer table once it outgrows block 0 (2^(tableShift-12) contiguous blocks)
 * The hash is the top 48 bits of xxh64(key bytes, salt), salt random per map (stops hash flooding).
 * The pointer table has 2^tableShift u32 entries indexed by the top tableShift hash bits; entry i names
 * the leaf covering i. A leaf has its own depth prefixLength ≤ tableShift and is named by the
 * 2^(tableShift - prefixLength) consecutive table entries under its prefix (extendible hashing).
 * Inside a leaf, entries are packed and sorted by (hash, cd) rather than chained through a per-leaf hash
 * table of chunks as in ZAP: a changed leaf is written whole anyway (copy-on-write at sync), so keeping
 * it sorted costs one memmove in the open txg's copy of the block, a lookup scans at most one 16 KiB block, and listing in position order
 * falls out of the layout. cd, the collision differentiator, is the
 * lowest u16 unused among live entries with the same hash, assigned at insert and kept until delete
 * (also when the value is replaced), so two keys with equal hashes are both stored and both addressable.
 *
 * OPERATIONS
 * - lookup: read the header, the table entry for the hash, the leaf; scan the leaf (≤ 16 KiB, no decode).
 * - insert into a full leaf: split it on the next hash bit (doubling the table first if the leaf is as
 *   deep as the table), then retry. Leaves are never merged or freed, as in ZAP; the table doubles by
 *   streaming one old block into two new ones, so memory stays at a few blocks for any size.
 * - list(cursor): cursor = (hash << 16 | cd), entries are returned in that order; the next cursor is the
 *   last returned position + 1, so it is never 0n (0n means the start). Splits move entries between
 *   leaves but never change positions, so a listing resumed at a cursor neither repeats nor skips
 *   entries that existed throughout. A page walks leaves in hash order (one locate per leaf).
 * - count: entryCount in the header, O(1).
 *
 * INVARIANTS AND CONCURRENCY
 * - The leaves partition the 48-bit hash space; every table entry names the leaf covering its index.
 * - Mutations of one object are serialized by a per-(store, object) lock and must run inside a hold.
 *   Readers take no lock. Writers order their writes so every intermediate state reads correctly
 *   (a new leaf is written before the table points at it; the table changes size with the header in one
 *   write), and a reader accepts a leaf only if it covers the hash, otherwise it re-reads the header and
 *   retries. This relies on each single write() or modify() being seen whole by a concurrent read().
 * - No state is cached across calls except the salt, which never changes: correctness across holds and
 *   across several KvMap instances of one object comes first; block caching is the ARC's job.
 *
 * LIMITS (all ENOSPC): more keys sharing one 48-bit hash than fit in a leaf (≥ 7 with maximal keys and
 * values; impossible in practice with a salted 64-bit hash), or a map needing a table deeper than 2^24
 * entries (about 10^9 typical entries).
 *
 * ON-DISK FORMAT (big-endian; docs/on-disk-format.md)
 *   KvHeaderPhys, block 0 bytes 0..127:
 *     0 u64 magic 0x434149524e2d4b56 ("CAIRN-KV")  8 u32 version = 1  12 u32 blockSizeShift = 14
 *    16 u32 hashType = 1 (xxh64 salted, top 48 bits)  20 u32 tableShift  24 u64 salt  32 u64 entryCount
 *    40 u64 leafCount  48 u64 nextFreeBlock  56 u64 tableStartBlock (0 = embedded at byte 128 of block 0)
 *    64 u64 tableBlockCount  72..127 reserved (0)
 *   Pointer table: 2^tableShift u32 leaf block numbers.
 *   KvLeafPhys, one 16 KiB block:
 *     0 u32 magic 0x4b564c46 ("KVLF")  4 u16 version = 1  6 u16 prefixLength  8 u64 prefix
 *    16 u32 entryCount  20 u32 payloadBytes  24..31 reserved  32.. entries, sorted by (hash, cd):
 *     u48 hash, u16 cd, u16 keyLength, u16 valueLength, key bytes (UTF-8), value bytes
 */
export { createKv, openKv, xxh64Salted } from './kv.js';
export type { KvHashFunction, KvOptions } from './kv.js';
export { KV_KEY_SIZE_MAX_BYTES, KV_VALUE_SIZE_MAX_BYTES } from './types.js';
export type { KvEntry, KvMap, KvPage } from './types.js';
export { KV_BLOCK_SIZE_BYTES, KvHeaderPhys, KvLeafPhys } from './phys.js';
