/**
 * The meta object set (MOS): the pool's own objects, reached from the uberblock.
 *
 *   object 1  object directory (kv): "config" → u64, "history" → u64, "root_dataset" → u64,
 *             "space_maps/<vdev id>" → u64 id of that top-level vdev's space map table (ids, unlike
 *             GUIDs, do not change when a mirror is attached to or detached from a top-level vdev)
 *   config    plain object: PoolConfigPhys JSON (properties, per-vdev metaslab shift)
 *   history   plain object: one JSON line per command, as `zpool history` prints; size in the bonus
 *   dataset   the root dataset: bonus = DatasetPhys (root block pointer of its object set)
 *   tables    one plain object per top-level vdev: u64 space map object id per metaslab
 *   space map one plain object per metaslab: the allocation log; its length in bytes in the bonus
 */
import { BLKPTR_SIZE_BYTES, decodeBlockPointer, encodeBlockPointer, type BlockPointer } from '../io/blkptr.js';
import { createKv, openKv } from '../kv/index.js';
import type { KvMap } from '../kv/types.js';
import type { ObjectSet } from '../objects/objset.js';
import { ObjectType } from '../objects/types.js';
import { CairnError } from '../util/errors.js';

export const OBJECT_DIRECTORY_ID = 1;
const DATASET_MAGIC = 0x314c5344; // "DSL1"

export interface PoolConfigPhys {
  version: number;
  properties: Record<string, string>;
  /** Metaslab shift per top-level vdev id. */
  metaslabShift: Record<string, number>;
}

export interface DatasetPhys {
  createTxg: number;
  rootBp: BlockPointer;
}

export function encodeDatasetPhys(ds: DatasetPhys): Buffer {
  const out = Buffer.alloc(16 + BLKPTR_SIZE_BYTES);
  out.writeUInt32LE(DATASET_MAGIC, 0);
  out.writeUInt32LE(1, 4);
  out.writeBigUInt64LE(BigInt(ds.createTxg), 8);
  encodeBlockPointer(ds.rootBp, out, 16);
  return out;
}

export function decodeDatasetPhys(buf: Buffer): DatasetPhys {
  if (buf.length < 16 + BLKPTR_SIZE_BYTES || buf.readUInt32LE(0) !== DATASET_MAGIC) {
    throw new CairnError('EIO', 'dataset record is damaged');
  }
  return { createTxg: Number(buf.readBigUInt64LE(8)), rootBp: decodeBlockPointer(buf, 16) };
}

function u64(value: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return b;
}

/** Typed access to the MOS object directory and the objects it names. */
export class Mos {
  readonly os: ObjectSet;
  private readonly dir: KvMap;
  private historyTail: Promise<void> = Promise.resolve();

  private constructor(os: ObjectSet, dir: KvMap) {
    this.os = os;
    this.dir = dir;
  }

  static async create(os: ObjectSet, config: PoolConfigPhys): Promise<Mos> {
    const dir = await createKv(os, ObjectType.kv);
    if (dir.objectId !== OBJECT_DIRECTORY_ID) throw new CairnError('EIO', 'object directory did not get object 1');
    const mos = new Mos(os, dir);
    const configId = await os.allocateObject(ObjectType.plainFile, { blockSizeBytes: 16384 });
    await dir.set('config', u64(configId));
    await mos.writeConfig(config);
    const historyId = await os.allocateObject(ObjectType.history, { blockSizeBytes: 16384 });
    await os.setBonus(historyId, u64(0));
    await dir.set('history', u64(historyId));
    return mos;
  }

  static open(os: ObjectSet): Mos {
    return new Mos(os, openKv(os, OBJECT_DIRECTORY_ID));
  }

  async lookup(key: string): Promise<number | undefined> {
    const v = await this.dir.get(key);
    return v === undefined ? undefined : Number(v.readBigUInt64LE(0));
  }

  private async require(key: string): Promise<number> {
    const id = await this.lookup(key);
    if (id === undefined) throw new CairnError('EIO', `pool metadata has no "${key}" entry`);
    return id;
  }

  async readConfig(): Promise<PoolConfigPhys> {
    const id = await this.require('config');
    const info = await this.os.getBonus(id);
    const length = Number(info.readBigUInt64LE(0));
    return JSON.parse((await this.os.read(id, 0, length)).toString('utf8')) as PoolConfigPhys;
  }

  async writeConfig(config: PoolConfigPhys): Promise<void> {
    const id = await this.require('config');
    const json = Buffer.from(JSON.stringify(config));
    await this.os.freeRange(id, 0, Number.MAX_SAFE_INTEGER);
    await this.os.write(id, 0, json);
    await this.os.setBonus(id, u64(json.length));
  }

  /** Appends one line; appends are serialized (each reads the length it writes after). */
  appendHistory(line: string): Promise<void> {
    const next = this.historyTail.then(() => this.appendHistoryNow(line));
    this.historyTail = next.catch(() => undefined);
    return next;
  }

  private async appendHistoryNow(line: string): Promise<void> {
    const id = await this.require('history');
    const length = Number((await this.os.getBonus(id)).readBigUInt64LE(0));
    const data = Buffer.from(`${line}\n`);
    await this.os.write(id, length, data);
    await this.os.setBonus(id, u64(length + data.length));
  }

  /** History lines, oldest first, read in bounded chunks. */
  async *historyLines(): AsyncGenerator<string> {
    const id = await this.require('history');
    const length = Number((await this.os.getBonus(id)).readBigUInt64LE(0));
    let carry = '';
    for (let at = 0; at < length; at += 1 << 20) {
      const chunk = carry + (await this.os.read(id, at, Math.min(1 << 20, length - at))).toString('utf8');
      const lines = chunk.split('\n');
      carry = lines.pop() ?? '';
      for (const line of lines) if (line) yield line;
    }
    if (carry) yield carry;
  }

  async createDataset(ds: DatasetPhys, key: string): Promise<number> {
    const id = await this.os.allocateObject(ObjectType.dataset, { blockSizeBytes: 512 });
    await this.os.setBonus(id, encodeDatasetPhys(ds));
    await this.dir.set(key, u64(id));
    return id;
  }

  async datasetObject(key: string): Promise<number> {
    return this.require(key);
  }

  async readDataset(id: number): Promise<DatasetPhys> {
    return decodeDatasetPhys(await this.os.getBonus(id));
  }

  async writeDataset(id: number, ds: DatasetPhys): Promise<void> {
    await this.os.setBonus(id, encodeDatasetPhys(ds));
  }

  /** Creates the space map objects of a new top-level vdev: one per metaslab, all empty. */
  async createSpaceMaps(vdevId: number, metaslabCount: number): Promise<number[]> {
    const table = await this.os.allocateObject(ObjectType.plainFile, { blockSizeBytes: 16384 });
    const ids: number[] = [];
    const buf = Buffer.alloc(8 * metaslabCount);
    for (let ms = 0; ms < metaslabCount; ms++) {
      const id = await this.os.allocateObject(ObjectType.spaceMap, { blockSizeBytes: 16384 });
      await this.os.setBonus(id, u64(0));
      buf.writeBigUInt64LE(BigInt(id), ms * 8);
      ids.push(id);
    }
    await this.os.write(table, 0, buf);
    await this.dir.set(`space_maps/${vdevId}`, u64(table));
    return ids;
  }

  async hasSpaceMaps(vdevId: number): Promise<boolean> {
    return (await this.lookup(`space_maps/${vdevId}`)) !== undefined;
  }

  async spaceMapIds(vdevId: number, metaslabCount: number): Promise<number[]> {
    const table = await this.require(`space_maps/${vdevId}`);
    const buf = await this.os.read(table, 0, 8 * metaslabCount);
    const ids: number[] = [];
    for (let ms = 0; ms < metaslabCount; ms++) ids.push(Number(buf.readBigUInt64LE(ms * 8)));
    return ids;
  }

  async readSpaceMap(id: number): Promise<Buffer> {
    const length = Number((await this.os.getBonus(id)).readBigUInt64LE(0));
    return this.os.read(id, 0, length);
  }

  /** Appends log entries (sync context: no hold; the syncer owns the MOS). */
  async appendSpaceMap(id: number, entries: Buffer): Promise<void> {
    const length = Number((await this.os.getBonus(id)).readBigUInt64LE(0));
    await this.os.write(id, length, entries);
    await this.os.setBonus(id, u64(length + entries.length));
  }

  /** Replaces a log with a condensed one. */
  async rewriteSpaceMap(id: number, entries: Buffer): Promise<void> {
    await this.os.freeRange(id, 0, Number.MAX_SAFE_INTEGER);
    await this.os.write(id, 0, entries);
    await this.os.setBonus(id, u64(entries.length));
  }
}
