/**
 * The daemon's NBD exports: volumes served to NBD clients, one NbdServer per listen address shared by
 * every export on it (a client picks by name). An export ends when it is unexported, when its volume or
 * pool goes away, or when the daemon stops: it leaves its server's catalogue (new clients cannot pick
 * it), its clients are disconnected cleanly (running requests finish and are answered, within the
 * server's close grace period) while the server's other exports keep serving, a server left with no
 * export closes, and last the export is marked ended (anything still reaching it fails with EIO) once
 * every volume operation it started has returned.
 */
import { NbdServer } from '../nbd/index.js';
import type { BlockExport, NbdListenOptions } from '../nbd/index.js';
import type { BlockVolume } from '../dataset/index.js';
import { CairnError } from '../util/errors.js';
import type { NbdExportRow } from './protocol.js';

export const NBD_LISTEN_DEFAULT = '127.0.0.1:10809';
/** The NBD spec's limit on an export name. */
const EXPORT_NAME_BYTES_MAX = 4096;

/** "host:port", "[v6]:port" or an absolute Unix socket path → listen options and its canonical text. */
export function parseListen(text: string): { options: NbdListenOptions; key: string } {
  if (text.startsWith('/')) return { options: { path: text }, key: text };
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[3]);
  if (match === null || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new CairnError('EINVAL', `bad listen address '${text}': expected HOST:PORT, [IPV6]:PORT or an absolute socket path`);
  }
  const host = match[1] ?? match[2] ?? '';
  return { options: { host, port }, key: match[1] !== undefined ? `[${host}]:${port}` : `${host}:${port}` };
}

/**
 * NBD READs at least this large (a copy, a guest's read-ahead: streaming reads) read whole blocks the ARC
 * does not hold straight from the device into the reply and leave them uncached; smaller ones (a running
 * guest's random reads) go through the ARC, which keeps what they read hot, as a zvol's reads do.
 */
const DIRECT_READ_MIN_BYTES = 128 * 1024;

/** A volume as a BlockExport, counting its running requests so an ending export can wait for them. */
export class VolumeExport implements BlockExport {
  readonly blockSizeBytes: number;
  readonly readonly: boolean;
  private ended = false;
  private running = 0;
  private onIdle: (() => void) | null = null;

  constructor(
    readonly name: string,
    public dataset: string,
    readonly listen: string,
    private volume: BlockVolume,
    readonlyAsked: boolean,
  ) {
    this.blockSizeBytes = volume.blockSizeBytes;
    this.readonly = readonlyAsked || volume.readonly;
  }

  get description(): string {
    return this.dataset;
  }

  sizeBytes(): number {
    return this.volume.sizeBytes;
  }

  /** After a rollback the dataset has a new volume object; later requests use it. */
  replaceVolume(volume: BlockVolume): void {
    this.volume = volume;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    this.enter();
    try {
      if (length < DIRECT_READ_MIN_BYTES) return await this.volume.read(offset, length);
      const data = Buffer.allocUnsafe(length);
      await this.volume.readInto(offset, data);
      return data;
    } finally {
      this.leave();
    }
  }

  async write(offset: number, data: Buffer): Promise<void> {
    this.enterWrite();
    try {
      await this.volume.write(offset, data);
    } finally {
      this.leave();
    }
  }

  async flush(): Promise<void> {
    if (this.readonly) return;
    this.enter();
    try {
      await this.volume.flush();
    } finally {
      this.leave();
    }
  }

  async trim(offset: number, length: number): Promise<void> {
    this.enterWrite();
    try {
      await this.volume.trim(offset, length);
    } finally {
      this.leave();
    }
  }

  async writeZeroes(offset: number, length: number, mayPunch: boolean): Promise<void> {
    this.enterWrite();
    try {
      await this.volume.writeZeroes(offset, length, { punch: mayPunch });
    } finally {
      this.leave();
    }
  }

  /** Refuses new requests and resolves once the running ones finished. */
  end(): Promise<void> {
    this.ended = true;
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.onIdle = resolve;
    });
  }

  row(): NbdExportRow {
    return { name: this.name, dataset: this.dataset, listen: this.listen, readonly: this.readonly, sizeBytes: this.volume.sizeBytes };
  }

  private enter(): void {
    if (this.ended) throw new CairnError('EIO', `NBD export '${this.name}' has ended`);
    this.running++;
  }

  private enterWrite(): void {
    if (this.readonly) throw new CairnError('EROFS', `NBD export '${this.name}' is read-only`);
    this.enter();
  }

  private leave(): void {
    this.running--;
    if (this.running === 0 && this.onIdle !== null) {
      this.onIdle();
      this.onIdle = null;
    }
  }
}

interface Listener {
  server: NbdServer;
  exports: Map<string, VolumeExport>;
}

export class NbdExportTable {
  private readonly listeners = new Map<string, Listener>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly log: (line: string) => void) {}

  list(): NbdExportRow[] {
    const rows: NbdExportRow[] = [];
    for (const listener of this.listeners.values()) for (const item of listener.exports.values()) rows.push(item.row());
    return rows.sort((a, b) => (a.name !== b.name ? (a.name < b.name ? -1 : 1) : a.listen < b.listen ? -1 : a.listen > b.listen ? 1 : 0));
  }

  add(dataset: string, volume: BlockVolume, options: { listen?: string; name?: string; readonly?: boolean }): Promise<NbdExportRow> {
    return this.serial(async () => {
      const { options: listenOptions, key } = parseListen(options.listen ?? NBD_LISTEN_DEFAULT);
      const name = options.name ?? dataset;
      if (name === '' || Buffer.byteLength(name) > EXPORT_NAME_BYTES_MAX) {
        throw new CairnError('EINVAL', `bad NBD export name '${name}': 1 to ${EXPORT_NAME_BYTES_MAX} bytes`);
      }
      let listener = this.listeners.get(key);
      if (listener?.exports.has(name) === true) throw new CairnError('EEXIST', `NBD export '${name}' already exists on ${key}`);
      const item = new VolumeExport(name, dataset, key, volume, options.readonly === true);
      if (listener === undefined) {
        const exports = new Map<string, VolumeExport>();
        const server = new NbdServer({ exports, log: this.log });
        try {
          await server.listen(listenOptions);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          throw new CairnError(code === 'EADDRINUSE' ? 'EBUSY' : 'EINVAL', `cannot listen on ${key}: ${errorMessage(error)}`);
        }
        listener = { server, exports };
        this.listeners.set(key, listener);
        this.log(`nbd: listening on ${key}`);
      }
      listener.exports.set(name, item);
      this.log(`nbd: exporting ${dataset} as '${name}' on ${key}${item.readonly ? ' (read-only)' : ''}`);
      return item.row();
    });
  }

  /** The exports named (on one address, or on any when listen is not given: it must be unambiguous). */
  find(name: string, listen?: string): NbdExportRow {
    const key = listen === undefined ? undefined : parseListen(listen).key;
    const found = this.list().filter((row) => row.name === name && (key === undefined || row.listen === key));
    if (found.length === 0) throw new CairnError('ENOENT', `no NBD export '${name}'${key !== undefined ? ` on ${key}` : ''}`);
    if (found.length > 1) {
      throw new CairnError('EINVAL', `NBD export '${name}' exists on ${found.map((row) => row.listen).join(', ')}; give --listen`);
    }
    return found[0] as NbdExportRow;
  }

  remove(name: string, listen: string): Promise<NbdExportRow> {
    return this.serial(() => this.removeNow(name, listen));
  }

  /** Ends every export of the datasets matching (a destroyed volume, an exported pool). */
  removeWhere(match: (dataset: string) => boolean): Promise<NbdExportRow[]> {
    return this.serial(async () => {
      const rows = this.list().filter((row) => match(row.dataset));
      for (const row of rows) await this.removeNow(row.name, row.listen);
      return rows;
    });
  }

  /** After `cairn rename`: exports keep their names and follow their volume. */
  renameDataset(rename: (dataset: string) => string): void {
    for (const listener of this.listeners.values()) for (const item of listener.exports.values()) item.dataset = rename(item.dataset);
  }

  /** After a rollback: the exports of dataset serve its new volume object. */
  async reopen(dataset: string, open: () => Promise<BlockVolume>): Promise<void> {
    for (const listener of this.listeners.values()) {
      for (const item of listener.exports.values()) if (item.dataset === dataset) item.replaceVolume(await open());
    }
  }

  async closeAll(): Promise<void> {
    await this.removeWhere(() => true).catch((error: unknown) => this.log(`nbd: closing exports failed: ${errorMessage(error)}`));
  }

  private async removeNow(name: string, listen: string): Promise<NbdExportRow> {
    const listener = this.listeners.get(listen);
    const item = listener?.exports.get(name);
    if (listener === undefined || item === undefined) throw new CairnError('ENOENT', `no NBD export '${name}' on ${listen}`);
    listener.exports.delete(name);
    if (listener.exports.size > 0) {
      await listener.server.disconnect(name);
    } else {
      this.listeners.delete(listen);
      await listener.server.close();
      this.log(`nbd: stopped listening on ${listen}`);
    }
    // A connection still busy after the grace period was dropped with its operations running; end()
    // waits for those, so the volume is not touched once this returns.
    await item.end();
    this.log(`nbd: export '${name}' (${item.dataset}) on ${listen} ended`);
    return item.row();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
