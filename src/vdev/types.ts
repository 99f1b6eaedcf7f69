/**
 * Contracts of the vdev layer (see index.ts for the theory).
 *
 * A BlockDevice is raw bytes at physical offsets: a file, a block device, or the fault-injecting device
 * the simulation uses. A Vdev is a node of the pool's device tree: a leaf (one BlockDevice, labels at
 * both ends, an allocatable region between them) or a mirror / raidz of children. Every Vdev exposes a
 * flat address space [0, asize) of allocatable bytes; offsets given to read/write are in that space and
 * are multiples of 1 << ashift.
 */

/** Raw storage at physical byte offsets. Implementations: FileDevice, FaultyDevice (testing). */
export interface BlockDevice {
  readonly path: string;
  readonly sizeBytes: number;
  /** `into` (exactly `length` bytes): filled and returned instead of a new buffer. */
  read(offset: number, length: number, into?: Buffer): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  /** Makes every completed write durable (fdatasync). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export type VdevState = 'ONLINE' | 'DEGRADED' | 'FAULTED' | 'OFFLINE' | 'UNAVAIL' | 'REMOVED';
export type VdevKind = 'file' | 'mirror' | 'raidz';

export interface VdevErrorCounts {
  read: number;
  write: number;
  checksum: number;
}

/** True when data is what its parent block pointer says it is (the io layer checks the checksum). */
export type BlockVerifier = (data: Buffer) => boolean;

export interface ReadOptions {
  /**
   * Scrub/resilver mode: read every child (every mirror side, every raidz column including parity),
   * not just until one verifies, and rewrite whatever is bad or missing from the good data.
   */
  readonly all?: boolean;
  /**
   * A buffer of exactly `size` bytes the vdev may read into instead of a new one (a leaf, and a mirror
   * through its children, do; raidz assembles its own): ReadResult.data is then this buffer. Its
   * contents are undefined after a failed read. Ignored with `all`, whose reads run at once.
   */
  readonly into?: Buffer;
}

export interface ReadResult {
  data: Buffer;
  /** Bytes rewritten on children that returned bad data, failed, or were stale. */
  repairedBytes: number;
}

/** The JSON tree kept in every label and in the pool config: enough to reopen the tree. */
export interface VdevConfig {
  type: VdevKind;
  /** 64-bit GUID as 16 hex digits. */
  guid: string;
  /** Position among its parent's children (top-level: the vdev id used in DVAs). */
  id: number;
  ashift: number;
  /** Allocatable bytes of this vdev's address space. */
  asize: number;
  /** Leaves: the path of the device when it was last seen. */
  path?: string;
  /** raidz: 1, 2 or 3. */
  nparity?: number;
  /** Leaves taken offline by the administrator stay offline across export/import. */
  offline?: boolean;
  children?: VdevConfig[];
}

export interface Vdev {
  readonly kind: VdevKind;
  readonly guid: string;
  readonly id: number;
  readonly ashift: number;
  readonly asize: number;
  readonly children: readonly Vdev[];
  readonly errors: VdevErrorCounts;
  /** Derived from the children for interior vdevs. */
  readonly state: VdevState;
  /** Bytes of address space a block of psize bytes (already a multiple of 1 << ashift) occupies. */
  allocatedSize(psize: number): number;
  /** Writes to every healthy child; succeeds when enough children took it to read it back. */
  write(offset: number, data: Buffer): Promise<void>;
  /**
   * Returns the first arrangement of the children's data that verify() accepts, healing children that
   * gave bad data. Throws CairnError ECKSUM (nothing verified) or EIO (not enough children readable).
   */
  read(offset: number, size: number, verify: BlockVerifier, options?: ReadOptions): Promise<ReadResult>;
  flush(): Promise<void>;
  close(): Promise<void>;
  config(): VdevConfig;
}
