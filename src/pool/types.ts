/**
 * The pool as its clients (the daemon, the library, tests) see it. See pool/index.ts for the theory.
 */
import type { VdevErrorCounts, VdevState } from '../vdev/types.js';

export type PoolHealth = 'ONLINE' | 'DEGRADED' | 'FAULTED' | 'SUSPENDED' | 'UNAVAIL';

/** One line of the zpool-status config tree. */
export interface VdevStatusNode {
  /** Leaf: its path; interior: mirror-0, raidz2-1; root: the pool name. */
  name: string;
  state: VdevState | PoolHealth;
  errors: VdevErrorCounts;
  /** e.g. "was /dev/x", "(resilvering)". */
  note?: string;
  children: VdevStatusNode[];
}

export interface ScanStatus {
  function: 'scrub' | 'resilver';
  state: 'scanning' | 'finished' | 'canceled';
  startMs: number;
  endMs?: number;
  examinedBytes: number;
  totalBytes: number;
  repairedBytes: number;
  errors: number;
}

export interface PoolSpace {
  sizeBytes: number;
  allocatedBytes: number;
  freeBytes: number;
  /** 0..100, as zpool's FRAG column. */
  fragmentationPercent: number;
  capacityPercent: number;
}

export interface PoolStatus {
  name: string;
  guid: string;
  health: PoolHealth;
  txg: number;
  space: PoolSpace;
  scan: ScanStatus | null;
  config: VdevStatusNode;
  /** Blocks that could not be read or repaired, as paths where known. */
  dataErrors: string[];
}

export interface HistoryEntry {
  timeMs: number;
  command: string;
}

export interface IoStats {
  readOps: number;
  writeOps: number;
  readBytes: number;
  writeBytes: number;
}
