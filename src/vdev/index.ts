/**
 * The vdev layer: where bytes meet devices (OpenZFS vdev.c, vdev_mirror.c, vdev_raidz.c).
 *
 * Promises
 * - A Vdev is a flat address space [0, asize) of sectors (1 << ashift bytes). Leaves map it onto a
 *   device's allocatable region between the labels; mirrors copy it to every child; raidz stripes it
 *   sector by sector over its children with 1–3 parity columns per block.
 * - read() never returns data the caller's verifier rejects. The verifier (the io layer's checksum of
 *   the block pointer) is the only judge: a mirror tries sides until one verifies, a raidz tries parity
 *   reconstructions of ever larger sets of assumed-bad columns. Whatever was found bad or unreadable is
 *   rewritten with the verified data before read() returns (self-heal), and counted against the child
 *   (errors.read / write / checksum), as zpool status shows them.
 * - Nothing here overwrites live data on its own: writes go where the allocator said, and heal writes
 *   put back exactly what verified.
 * - A missing device is an UNAVAIL leaf, an administrator's offline is OFFLINE, and a device that keeps
 *   failing becomes FAULTED; none of them is touched. Parents keep serving reads and writes while no
 *   more children are out than their redundancy (a mirror: all but one; raidzN: N) and report DEGRADED,
 *   FAULTED beyond that.
 * - Operating failures are CairnErrors (EIO: not enough readable children; ECKSUM: data came back but
 *   nothing verified); a broken invariant (unaligned or out-of-range I/O) is an assertion failure.
 *
 * What this layer does not do: labels, uberblocks and the choice of what to resilver belong to the
 * pool layer; the checksum itself to the io layer.
 */
export type {
  BlockDevice, BlockVerifier, ReadOptions, ReadResult, Vdev, VdevConfig, VdevErrorCounts, VdevKind, VdevState,
} from './types.js';
export {
  ALLOCATABLE_START_BYTES, DEVICE_SIZE_MIN_BYTES, LABEL_COUNT, LABEL_SIZE_BYTES, labelOffsetBytes,
  leafAllocatableBytes, usableSizeBytes,
} from './layout.js';
export { FileDevice, createSparseFile, openFileDevice, type OpenFileDeviceOptions } from './file-device.js';
export { ACCEPT_ANY, LEAF_FAULT_AFTER_CONSECUTIVE_ERRORS, LeafVdev, type LeafVdevOptions } from './leaf.js';
export { MirrorVdev, isReadable, type MirrorVdevOptions } from './mirror.js';
export {
  RAIDZ_PARITY_MAX, RaidzVdev, raidzAllocatedSize, raidzMap, type RaidzColumn, type RaidzMap, type RaidzVdevOptions,
} from './raidz.js';
export {
  ASHIFT_DEFAULT, buildVdevConfig, openVdev, openVdevTree, parseVdevSpec, type BuildVdevConfigOptions,
  type DeviceOpener, type VdevSpecGroup,
} from './tree.js';
export { randomGuid } from './guid.js';
