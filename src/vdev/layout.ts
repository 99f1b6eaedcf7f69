/**
 * Physical layout of a leaf device (see docs/on-disk-format.md):
 *
 *   [L0 256K][L1 256K][reserved to 4 MiB][allocatable region ...][L2 256K][L3 256K]
 *
 * The usable size is the device size rounded down to a multiple of LABEL_SIZE_BYTES, so the trailing
 * labels are found again from the size alone. Offsets inside the allocatable region are what a leaf
 * vdev's read/write take.
 */
export const LABEL_SIZE_BYTES = 256 * 1024;
export const LABEL_COUNT = 4;
export const ALLOCATABLE_START_BYTES = 4 * 1024 * 1024;
/** Smallest device that holds four labels, the reserve and 16 MiB of data. */
export const DEVICE_SIZE_MIN_BYTES = ALLOCATABLE_START_BYTES + 16 * 1024 * 1024 + 2 * LABEL_SIZE_BYTES;

export function usableSizeBytes(deviceSizeBytes: number): number {
  return Math.floor(deviceSizeBytes / LABEL_SIZE_BYTES) * LABEL_SIZE_BYTES;
}

/** Physical offset of label index 0..3 on a device of this size. */
export function labelOffsetBytes(deviceSizeBytes: number, index: number): number {
  const usable = usableSizeBytes(deviceSizeBytes);
  return index < 2 ? index * LABEL_SIZE_BYTES : usable - (LABEL_COUNT - index) * LABEL_SIZE_BYTES;
}

/** Bytes of allocatable region, rounded down to the sector size. */
export function leafAllocatableBytes(deviceSizeBytes: number, ashift: number): number {
  const end = usableSizeBytes(deviceSizeBytes) - 2 * LABEL_SIZE_BYTES;
  const bytes = end - ALLOCATABLE_START_BYTES;
  return bytes <= 0 ? 0 : Math.floor(bytes / 2 ** ashift) * 2 ** ashift;
}
