/**
 * LeafVdev: one BlockDevice seen as a vdev. Its address space [0, asize) is the device's allocatable
 * region (after the front labels and the reserve, see layout.ts); it bounds-checks every request,
 * counts errors, and stops touching a device that is missing, offline or keeps failing.
 */
import { CairnError, isCairnError } from '../util/errors.js';
import { assert, InvariantError } from '../util/assert.js';
import { ALLOCATABLE_START_BYTES } from './layout.js';
import type {
  BlockDevice, BlockVerifier, ReadOptions, ReadResult, Vdev, VdevConfig, VdevErrorCounts, VdevKind, VdevState,
} from './types.js';

/** Consecutive I/O errors after which a leaf is FAULTED and no longer used until clearErrors(). */
export const LEAF_FAULT_AFTER_CONSECUTIVE_ERRORS = 8;

/** A verifier that accepts anything: for raw column reads, where only the whole block can be checked. */
export const ACCEPT_ANY: BlockVerifier = () => true;

export interface LeafVdevOptions {
  guid: string;
  id: number;
  ashift: number;
  asize: number;
  /** Where the device was last seen; defaults to device.path. */
  path?: string;
  /** null: the device is missing (the leaf is UNAVAIL). */
  device: BlockDevice | null;
  offline?: boolean;
}

export class LeafVdev implements Vdev {
  readonly kind: VdevKind = 'file';
  readonly guid: string;
  /** Position among the parent's children; a mirror renumbers it when children come and go. */
  id: number;
  readonly ashift: number;
  readonly asize: number;
  readonly children: readonly Vdev[] = [];
  readonly errors: VdevErrorCounts = { read: 0, write: 0, checksum: 0 };
  private dev: BlockDevice | null;
  private lastPath: string;
  private offline: boolean;
  private faulted = false;
  private consecutiveErrors = 0;

  constructor(options: LeafVdevOptions) {
    assert(options.ashift >= 9 && options.ashift <= 16, `bad ashift ${options.ashift}`);
    assert(options.asize >= 0 && options.asize % 2 ** options.ashift === 0, `bad leaf asize ${options.asize}`);
    this.guid = options.guid;
    this.id = options.id;
    this.ashift = options.ashift;
    this.asize = options.asize;
    this.dev = options.device;
    this.lastPath = options.path ?? options.device?.path ?? '';
    this.offline = options.offline ?? false;
    if (this.dev !== null) {
      assert(this.dev.sizeBytes >= ALLOCATABLE_START_BYTES + this.asize, `${this.dev.path} too small for asize ${this.asize}`);
    }
  }

  get device(): BlockDevice | null {
    return this.dev;
  }

  get path(): string {
    return this.dev?.path ?? this.lastPath;
  }

  get state(): VdevState {
    if (this.offline) return 'OFFLINE';
    if (this.dev === null) return 'UNAVAIL';
    if (this.faulted) return 'FAULTED';
    return 'ONLINE';
  }

  /** True when I/O will be attempted (ONLINE). */
  get usable(): boolean {
    return this.state === 'ONLINE';
  }

  setOffline(offline: boolean): void {
    this.offline = offline;
  }

  /** zpool clear: forget the counters and give a FAULTED device another chance. */
  clearErrors(): void {
    this.errors.read = 0;
    this.errors.write = 0;
    this.errors.checksum = 0;
    this.faulted = false;
    this.consecutiveErrors = 0;
  }

  /**
   * Swaps the device under this leaf (zpool replace, or a missing device that came back). The caller
   * resilvers; the old device is returned for the caller to close.
   */
  replaceDevice(device: BlockDevice | null): BlockDevice | null {
    if (device !== null) {
      assert(device.sizeBytes >= ALLOCATABLE_START_BYTES + this.asize, `${device.path} too small for asize ${this.asize}`);
      this.lastPath = device.path;
    }
    const old = this.dev;
    this.dev = device;
    this.faulted = false;
    this.consecutiveErrors = 0;
    return old;
  }

  allocatedSize(psize: number): number {
    this.checkAligned(0, psize);
    return psize;
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.checkAligned(offset, data.length);
    const dev = this.ioDevice('write');
    try {
      await dev.write(ALLOCATABLE_START_BYTES + offset, data);
    } catch (e) {
      throw this.ioFailed('write', offset, data.length, e);
    }
    this.consecutiveErrors = 0;
  }

  async read(offset: number, size: number, verify: BlockVerifier, options?: ReadOptions): Promise<ReadResult> {
    this.checkAligned(offset, size);
    const dev = this.ioDevice('read');
    const into = options?.all === true || options?.into?.length !== size ? undefined : options.into;
    let data: Buffer;
    try {
      data = await dev.read(ALLOCATABLE_START_BYTES + offset, size, into);
    } catch (e) {
      throw this.ioFailed('read', offset, size, e);
    }
    this.consecutiveErrors = 0;
    if (!verify(data)) {
      this.errors.checksum++;
      throw new CairnError('ECKSUM', `${this.path}: checksum mismatch at ${offset}+${size}`, { guid: this.guid, offset, size });
    }
    return { data, repairedBytes: 0 };
  }

  async flush(): Promise<void> {
    if (!this.usable) return;
    const dev = this.ioDevice('flush');
    try {
      await dev.flush();
    } catch (e) {
      throw this.ioFailed('write', 0, 0, e);
    }
  }

  async close(): Promise<void> {
    const dev = this.dev;
    if (dev !== null) await dev.close();
  }

  config(): VdevConfig {
    const config: VdevConfig = { type: 'file', guid: this.guid, id: this.id, ashift: this.ashift, asize: this.asize, path: this.path };
    if (this.offline) config.offline = true;
    return config;
  }

  private checkAligned(offset: number, size: number): void {
    const sector = 2 ** this.ashift;
    assert(Number.isSafeInteger(offset) && offset >= 0 && offset % sector === 0, `${this.path}: offset ${offset} not sector aligned`);
    assert(size > 0 && size % sector === 0, `${this.path}: size ${size} not a positive sector multiple`);
    assert(offset + size <= this.asize, `${this.path}: ${offset}+${size} beyond asize ${this.asize}`);
  }

  private ioDevice(op: string): BlockDevice {
    const state = this.state;
    if (state !== 'ONLINE' || this.dev === null) {
      throw new CairnError('EIO', `${this.path}: cannot ${op}, device is ${state}`, { guid: this.guid, state });
    }
    return this.dev;
  }

  private ioFailed(op: 'read' | 'write', offset: number, size: number, cause: unknown): Error {
    if (cause instanceof InvariantError) return cause;
    this.errors[op]++;
    this.consecutiveErrors++;
    if (this.consecutiveErrors > LEAF_FAULT_AFTER_CONSECUTIVE_ERRORS) this.faulted = true;
    const why = isCairnError(cause) || cause instanceof Error ? cause.message : String(cause);
    return new CairnError('EIO', `${this.path}: ${op} error at ${offset}+${size}: ${why}`, { guid: this.guid, offset, size });
  }
}
