/**
 * The cache layer: keeps recently and frequently read blocks in memory (OpenZFS ARC).
 *
 * Promises
 * - Memory is bounded: resident bytes never exceed maxSizeBytes, which can change at runtime (shrinking
 *   evicts at once); ghost lists remember only keys and sizes, bounded in bytes and in entries.
 * - A one-time scan (a backup, a `find`, a scrub read path that chooses to cache) cannot flush the
 *   frequently used working set: blocks seen once live in the mru list and evict each other; blocks seen
 *   twice move to mfu. Ghost hits tell the cache which side was too small and move the mru target.
 * - Keys name one immutable version of a block (`${vdev}:${offset}:${birth}`), so a cached value is
 *   never stale while its block lives; callers remove() keys of blocks they free or rewrite in place.
 *
 * Not here: reading from disk on a miss (the caller reads through the io pipeline and put()s the result),
 * an L2ARC on a cache device (future work).
 */
export { ARC_GHOST_ENTRIES_MAX_DEFAULT, Arc, type ArcOptions, type ArcStats } from './arc.js';
