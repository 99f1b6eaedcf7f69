/**
 * The remembered pools ($CAIRN_HOME/pools.json), OpenZFS's cachefile idea: the pools this daemon has
 * imported with the device paths they were last seen on, so the next daemon start re-imports them; and
 * the devices it has ever seen, which `cairn pool import` with no -d searches. Writes are atomic
 * (temporary file, fsync, rename) and serialized, so a crash leaves the old or the new file.
 */
import { open, readFile, rename } from 'node:fs/promises';

export const KNOWN_DEVICES_MAX = 4096;
const CACHEFILE_VERSION = 1;

export interface RememberedPool {
  name: string;
  guid: string;
  devices: string[];
}

interface CacheFileContents {
  version: number;
  pools: RememberedPool[];
  knownDevices: string[];
}

export class PoolCacheFile {
  private contents: CacheFileContents = { version: CACHEFILE_VERSION, pools: [], knownDevices: [] };
  private saving: Promise<void> = Promise.resolve();

  constructor(
    readonly path: string,
    private readonly log: (line: string) => void,
  ) {}

  async load(): Promise<void> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as Partial<CacheFileContents>;
      const pools = Array.isArray(parsed.pools) ? parsed.pools.filter(isRememberedPool) : [];
      const knownDevices = Array.isArray(parsed.knownDevices)
        ? parsed.knownDevices.filter((item): item is string => typeof item === 'string')
        : [];
      this.contents = { version: CACHEFILE_VERSION, pools, knownDevices };
    } catch (error) {
      // A damaged cachefile must not keep the daemon down: keep it aside for a human, start empty.
      this.log(`pools.json is unreadable (${(error as Error).message}); keeping it as pools.json.bad`);
      await rename(this.path, `${this.path}.bad`).catch(() => undefined);
    }
  }

  pools(): readonly RememberedPool[] {
    return this.contents.pools;
  }

  knownDevices(): readonly string[] {
    return this.contents.knownDevices;
  }

  remember(pool: RememberedPool): Promise<void> {
    this.contents.pools = this.contents.pools.filter((item) => item.name !== pool.name && item.guid !== pool.guid);
    this.contents.pools.push(pool);
    const known = new Set(this.contents.knownDevices);
    for (const device of pool.devices) known.add(device);
    // Oldest first, so the bound drops the devices seen longest ago.
    this.contents.knownDevices = [...known].slice(-KNOWN_DEVICES_MAX);
    return this.save();
  }

  forget(name: string): Promise<void> {
    this.contents.pools = this.contents.pools.filter((item) => item.name !== name);
    return this.save();
  }

  private save(): Promise<void> {
    const text = `${JSON.stringify(this.contents, null, 2)}\n`;
    this.saving = this.saving.catch(() => undefined).then(() => this.writeAtomically(text));
    return this.saving;
  }

  private async writeAtomically(text: string): Promise<void> {
    const temporaryPath = `${this.path}.tmp`;
    const handle = await open(temporaryPath, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporaryPath, this.path);
  }
}

function isRememberedPool(value: unknown): value is RememberedPool {
  if (typeof value !== 'object' || value === null) return false;
  const item = value as Record<string, unknown>;
  return (
    typeof item['name'] === 'string' &&
    typeof item['guid'] === 'string' &&
    Array.isArray(item['devices']) &&
    item['devices'].every((device) => typeof device === 'string')
  );
}
