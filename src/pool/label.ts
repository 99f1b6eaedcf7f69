/**
 * Device labels and uberblocks (OpenZFS vdev_label.c, uberblock.c).
 *
 * Every leaf device carries four 256 KiB labels, two at each end (vdev/layout.ts), so that a device
 * whose start or end is overwritten is still recognised. A label is:
 *
 *     0  LabelPhys header: u64 magic "CAIRNLBL", u32 version, u32 config length, 32-byte sha256 of config
 *    64  config: UTF-8 JSON (LabelConfig) — pool name and GUID, state, the whole vdev tree, and which leaf
 *        this is — up to CONFIG_SIZE_MAX_BYTES
 *  128K  uberblock ring: UBERBLOCK_SLOTS slots of 4 KiB; txg t goes to slot t % UBERBLOCK_SLOTS
 *
 * An UberblockPhys (first 200 bytes of a slot): u64 magic "CAIRNUB1", u32 version, u32 reserved,
 * u64 txg, u64 pool GUID, u64 timestamp ms, 128-byte root block pointer (the MOS), 32-byte sha256 of
 * the preceding 168 bytes. A torn or corrupt slot fails its checksum and is ignored; the newest valid
 * uberblock over all labels of all devices is the pool's current state.
 */
import { createHash } from 'node:crypto';
import type { BlockPointer } from '../io/blkptr.js';
import { decodeBlockPointer, encodeBlockPointer } from '../io/blkptr.js';
import { CairnError } from '../util/errors.js';
import { LABEL_COUNT, LABEL_SIZE_BYTES, labelOffsetBytes } from '../vdev/layout.js';
import type { BlockDevice, VdevConfig } from '../vdev/types.js';

const LABEL_MAGIC = 0x4c42_4c4e_5249_4143n; // "CAIRNLBL"
const UBERBLOCK_MAGIC = 0x3142_554e_5249_4143n; // "CAIRNUB1"
export const ON_DISK_VERSION = 1;
const CONFIG_OFFSET = 64;
const RING_OFFSET_BYTES = 128 * 1024;
export const CONFIG_SIZE_MAX_BYTES = RING_OFFSET_BYTES - CONFIG_OFFSET;
export const UBERBLOCK_SLOT_BYTES = 4096;
export const UBERBLOCK_SLOTS = (LABEL_SIZE_BYTES - RING_OFFSET_BYTES) / UBERBLOCK_SLOT_BYTES;
const UBERBLOCK_BODY_BYTES = 168;

export type PoolState = 'active' | 'exported' | 'destroyed';

export interface LabelConfig {
  version: number;
  name: string;
  poolGuid: string;
  state: PoolState;
  /** txg at which this config was written: the newest config wins. */
  txg: number;
  /** The owner while active (one owner per pool). */
  hostname: string;
  pid: number;
  /** GUID of the leaf this label is on. */
  guid: string;
  vdevTree: VdevConfig[];
}

export interface Uberblock {
  txg: number;
  poolGuid: string;
  timestampMs: number;
  rootBp: BlockPointer;
}

function sha256(data: Buffer): Buffer {
  return createHash('sha256').update(data).digest();
}

export function encodeLabelHeaderAndConfig(config: LabelConfig): Buffer {
  const json = Buffer.from(JSON.stringify(config), 'utf8');
  if (json.length > CONFIG_SIZE_MAX_BYTES) throw new CairnError('EINVAL', 'pool configuration is too large for a label');
  const out = Buffer.alloc(RING_OFFSET_BYTES);
  out.writeBigUInt64LE(LABEL_MAGIC, 0);
  out.writeUInt32LE(ON_DISK_VERSION, 8);
  out.writeUInt32LE(json.length, 12);
  sha256(json).copy(out, 16);
  json.copy(out, CONFIG_OFFSET);
  return out;
}

/** The config of one label, or null when it is missing, torn or not a Cairn label. */
export function decodeLabelConfig(buf: Buffer): LabelConfig | null {
  if (buf.length < CONFIG_OFFSET || buf.readBigUInt64LE(0) !== LABEL_MAGIC) return null;
  const length = buf.readUInt32LE(12);
  if (length === 0 || length > CONFIG_SIZE_MAX_BYTES) return null;
  const json = buf.subarray(CONFIG_OFFSET, CONFIG_OFFSET + length);
  if (!sha256(json).equals(buf.subarray(16, 48))) return null;
  try {
    const config = JSON.parse(json.toString('utf8')) as LabelConfig;
    if (typeof config.poolGuid !== 'string' || !Array.isArray(config.vdevTree)) return null;
    return config;
  } catch {
    return null;
  }
}

export function encodeUberblock(ub: Uberblock): Buffer {
  const out = Buffer.alloc(UBERBLOCK_SLOT_BYTES);
  out.writeBigUInt64LE(UBERBLOCK_MAGIC, 0);
  out.writeUInt32LE(ON_DISK_VERSION, 8);
  out.writeBigUInt64LE(BigInt(ub.txg), 16);
  out.writeBigUInt64LE(BigInt(`0x${ub.poolGuid}`), 24);
  out.writeBigUInt64LE(BigInt(ub.timestampMs), 32);
  encodeBlockPointer(ub.rootBp, out, 40);
  sha256(out.subarray(0, UBERBLOCK_BODY_BYTES)).copy(out, UBERBLOCK_BODY_BYTES);
  return out;
}

export function decodeUberblock(buf: Buffer): Uberblock | null {
  if (buf.length < UBERBLOCK_BODY_BYTES + 32 || buf.readBigUInt64LE(0) !== UBERBLOCK_MAGIC) return null;
  if (!sha256(buf.subarray(0, UBERBLOCK_BODY_BYTES)).equals(buf.subarray(UBERBLOCK_BODY_BYTES, UBERBLOCK_BODY_BYTES + 32))) return null;
  if (buf.readUInt32LE(8) > ON_DISK_VERSION) return null;
  return {
    txg: Number(buf.readBigUInt64LE(16)),
    poolGuid: buf.readBigUInt64LE(24).toString(16).padStart(16, '0'),
    timestampMs: Number(buf.readBigUInt64LE(32)),
    rootBp: decodeBlockPointer(buf, 40),
  };
}

export interface DeviceLabels {
  /** Index 0..3; null where that label is unreadable or invalid. */
  configs: (LabelConfig | null)[];
  uberblocks: Uberblock[];
}

/** Reads all four labels of a device; never throws for garbage, only reports what is valid. */
export async function readDeviceLabels(device: BlockDevice): Promise<DeviceLabels> {
  const configs: (LabelConfig | null)[] = [];
  const uberblocks: Uberblock[] = [];
  for (let i = 0; i < LABEL_COUNT; i++) {
    let label: Buffer;
    try {
      label = await device.read(labelOffsetBytes(device.sizeBytes, i), LABEL_SIZE_BYTES);
    } catch {
      configs.push(null);
      continue;
    }
    configs.push(decodeLabelConfig(label));
    for (let slot = 0; slot < UBERBLOCK_SLOTS; slot++) {
      const at = RING_OFFSET_BYTES + slot * UBERBLOCK_SLOT_BYTES;
      const ub = decodeUberblock(label.subarray(at, at + UBERBLOCK_SLOT_BYTES));
      if (ub && ub.txg % UBERBLOCK_SLOTS === slot) uberblocks.push(ub);
    }
  }
  return { configs, uberblocks };
}

/** The newest valid config among a device's labels. */
export function newestConfig(labels: DeviceLabels): LabelConfig | null {
  let best: LabelConfig | null = null;
  for (const c of labels.configs) if (c && (!best || c.txg > best.txg)) best = c;
  return best;
}

/** Writes the config part of the given labels (the uberblock rings are left alone). */
export async function writeLabelConfigs(device: BlockDevice, config: LabelConfig, indexes: readonly number[]): Promise<void> {
  const buf = encodeLabelHeaderAndConfig(config);
  for (const i of indexes) await device.write(labelOffsetBytes(device.sizeBytes, i), buf);
}

/** Writes a whole fresh label set: configs plus empty rings (used when a device joins a pool). */
export async function initializeLabels(device: BlockDevice, config: LabelConfig): Promise<void> {
  const label = Buffer.alloc(LABEL_SIZE_BYTES);
  encodeLabelHeaderAndConfig(config).copy(label, 0);
  for (let i = 0; i < LABEL_COUNT; i++) await device.write(labelOffsetBytes(device.sizeBytes, i), label);
}

export async function writeUberblock(device: BlockDevice, ub: Uberblock): Promise<void> {
  const buf = encodeUberblock(ub);
  const slot = ub.txg % UBERBLOCK_SLOTS;
  for (let i = 0; i < LABEL_COUNT; i++) {
    await device.write(labelOffsetBytes(device.sizeBytes, i) + RING_OFFSET_BYTES + slot * UBERBLOCK_SLOT_BYTES, buf);
  }
}

/** Wipes the label headers so the device is no longer recognised (pool destroy keeps data; this is for labelclear). */
export async function clearLabels(device: BlockDevice): Promise<void> {
  const zero = Buffer.alloc(CONFIG_OFFSET);
  for (let i = 0; i < LABEL_COUNT; i++) await device.write(labelOffsetBytes(device.sizeBytes, i), zero);
}
