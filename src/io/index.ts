/**
 * The io layer: how a block becomes bytes on vdevs and comes back verified (OpenZFS zio).
 *
 * Promises
 * - write(data) compresses the block when that saves at least 1/8 and a sector (else stores it raw),
 *   pads it to the sector size of the largest top-level vdev, checksums the padded psize bytes, asks the
 *   pool's allocator for `copies` DVAs and writes every copy in parallel. It returns a BlockPointer that
 *   names, sizes and verifies what was written; if any copy fails to write, the space is returned and the
 *   write fails with EIO (the pool suspends rather than commit a pointer to a missing copy).
 * - read(bp) never returns data whose checksum does not match the pointer. It tries the DVAs in order;
 *   each vdev in turn tries its own mirror sides or raidz reconstructions against the same checksum.
 *   Copies found bad are rewritten from the good one (self-heal) before the read returns. When no copy
 *   verifies the read fails with ECKSUM (bad data came back) or EIO (nothing could be read), and the block
 *   is recorded in a bounded list of permanent errors for `pool status -v`.
 * - scrub(bp) reads every DVA in "all" mode, so every mirror side and raidz column is checked, and
 *   repairs what is bad.
 * - Checksums: fletcher4 (bit-exact with OpenZFS fletcher_4_native), sha256, xxh128, stored 32 bytes wide.
 *   Compression: lz4 and zstd, each payload prefixed by its big-endian stream length so zero padding
 *   after it is harmless; malformed payloads are EIO, never a crash or an oversized allocation.
 *
 * Invariants: psize is a multiple of every target vdev's sector size; the checksum covers exactly the
 * psize bytes written; a BlockPointer is returned only after every copy is on its vdev.
 * Not here: deciding where blocks go (the pool's allocator), caching (cache/), deferred frees (pool/).
 */
export * from './types.js';
export * from './blkptr.js';
export {
  checksumEquals, checksumName, computeChecksum, fletcher4Reference, parseChecksumName,
} from './checksum.js';
export {
  COMPRESSION_HEADER_BYTES, ZSTD_LEVEL_DEFAULT, compressBlock, compressionName, decompressBlock, parseCompressionName,
} from './compress.js';
export {
  DATA_ERRORS_MAX, IoPipeline, type DataErrorRecord, type IoPipelineOptions, type IoStats,
} from './pipeline.js';
