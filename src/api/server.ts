/**
 * The daemon's HTTP API on its Unix socket: one owner for every imported pool (invariant 5), serving the
 * verbs of protocol.ts and the file streams. Requests against a pool are counted while they run, so an
 * export, destroy or daemon stop first takes the pool out of the table (new requests get ENOENT), then
 * waits for the running ones to finish before it closes the devices.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { chmod } from 'node:fs/promises';
import { createPool, findImportablePools, importPool } from '../pool/index.js';
import type { PoolHandle, PoolStatus, VdevStatusNode } from '../pool/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import type { ErrorCode } from '../util/errors.js';
import { PoolCacheFile } from './cachefile.js';
import { checkUploadTarget, fsError, listPath, mkdirPath, readFileChunks, removePathTree, toWireStat, writeFileFrom } from './fs-ops.js';
import type { CairnHome } from './home.js';
import {
  API_PREFIX,
  ERROR_TRAILER,
  FILE_ENDPOINT,
  JSON_BODY_BYTES_MAX,
  LIST_PAGE_ENTRIES_MAX,
  isVerb,
  validateArgs,
} from './protocol.js';
import type { ApiResponse, Verb, VerbArgs, VerbResult } from './protocol.js';

const POOL_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.-]{0,254}$/;
const RESERVED_POOL_NAMES = new Set(['mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3', 'draid', 'spare', 'log', 'cache']);
const FILE_MODE_DEFAULT = 0o644;
const DIRECTORY_MODE_DEFAULT = 0o755;

interface PoolEntry {
  handle: PoolHandle;
  importedAtMs: number;
  inflight: number;
  onDrained: (() => void) | null;
}

export interface DaemonServerOptions {
  home: CairnHome;
  log: (line: string) => void;
  /** Called once the answer to daemon.stop has been sent. */
  onStopRequested: () => void;
}

type Handlers = { [V in Verb]: (args: VerbArgs<V>) => Promise<VerbResult<V>> };

const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  ENOENT: 404,
  EEXIST: 409,
  EBUSY: 409,
  EPOOLINUSE: 409,
  EINVAL: 400,
  EPROTO: 400,
  EBADSPEC: 400,
  ENOTSUP: 501,
};

export class DaemonServer {
  readonly startedAtMs = Date.now();
  private readonly pools = new Map<string, PoolEntry>();
  /** Remembered pools the start-up import could not open, with why. */
  private readonly unavailable = new Map<string, string>();
  private readonly cache: PoolCacheFile;
  private server: Server | null = null;
  private readonly restored: Promise<void>;
  private resolveRestored: () => void = () => undefined;
  private readonly handlers: Handlers;

  constructor(private readonly options: DaemonServerOptions) {
    this.cache = new PoolCacheFile(options.home.poolsPath, options.log);
    this.restored = new Promise((resolve) => {
      this.resolveRestored = resolve;
    });
    this.handlers = this.makeHandlers();
  }

  /** Listens on the socket at once; requests wait until the remembered pools are back. */
  async listen(): Promise<void> {
    const server = createServer((request, response) => {
      this.handle(request, response).catch((error: unknown) => {
        this.options.log(`request failed outside its handler: ${describe(error)}`);
        response.destroy();
      });
    });
    // A scrub -w or a large upload may take hours; Node's default 5-minute request timeout would cut it.
    server.requestTimeout = 0;
    server.on('checkContinue', (request, response) => {
      this.handleContinue(request, response).catch((error: unknown) => {
        this.options.log(`request failed outside its handler: ${describe(error)}`);
        response.destroy();
      });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.home.socketPath, () => {
        server.off('error', reject);
        resolve();
      });
    });
    await chmod(this.options.home.socketPath, 0o600);
  }

  /** Re-imports the pools remembered in pools.json (a failure leaves the pool remembered, unavailable). */
  async restorePools(): Promise<void> {
    try {
      await this.cache.load();
      for (const remembered of this.cache.pools()) {
        try {
          const handle = await importPool({ nameOrGuid: remembered.guid, searchPaths: remembered.devices });
          this.addPool(handle);
          this.options.log(`re-imported pool ${handle.name} (${handle.guid})`);
        } catch (error) {
          this.unavailable.set(remembered.name, errorMessage(error));
          this.options.log(`could not re-import pool ${remembered.name}: ${describe(error)}`);
        }
      }
    } finally {
      this.resolveRestored();
    }
  }

  /** Stops serving and closes every pool cleanly (they stay remembered for the next start). */
  async close(): Promise<void> {
    const server = this.server;
    if (server !== null) {
      server.close();
      server.closeIdleConnections();
    }
    for (const name of [...this.pools.keys()]) {
      const entry = await this.retirePool(name);
      try {
        await entry.handle.close();
        this.options.log(`closed pool ${name}`);
      } catch (error) {
        this.options.log(`closing pool ${name} failed: ${describe(error)}`);
      }
    }
    server?.closeAllConnections();
  }

  private addPool(handle: PoolHandle): PoolEntry {
    const entry: PoolEntry = { handle, importedAtMs: Date.now(), inflight: 0, onDrained: null };
    this.pools.set(handle.name, entry);
    this.unavailable.delete(handle.name);
    return entry;
  }

  private lookupPool(name: string): PoolEntry {
    const entry = this.pools.get(name);
    if (entry !== undefined) return entry;
    const why = this.unavailable.get(name);
    if (why !== undefined) throw new CairnError('EFAULTED', `pool '${name}' is unavailable: ${why}`);
    throw new CairnError('ENOENT', `no such pool '${name}'`);
  }

  /** Runs fn with the pool counted as in use, so export waits for it. */
  private async usePool<T>(name: string, fn: (entry: PoolEntry) => Promise<T>): Promise<T> {
    const entry = this.lookupPool(name);
    entry.inflight++;
    try {
      return await fn(entry);
    } finally {
      entry.inflight--;
      if (entry.inflight === 0 && entry.onDrained !== null) entry.onDrained();
    }
  }

  /** Takes the pool out of the table and waits until no request uses it. */
  private async retirePool(name: string): Promise<PoolEntry> {
    const entry = this.lookupPool(name);
    this.pools.delete(name);
    if (entry.inflight > 0) {
      await new Promise<void>((resolve) => {
        entry.onDrained = resolve;
      });
      entry.onDrained = null;
    }
    return entry;
  }

  private async remember(handle: PoolHandle): Promise<void> {
    await this.cache.remember({ name: handle.name, guid: handle.guid, devices: leafDevices(handle.status().config) });
  }

  private async logHistory(entry: PoolEntry, command: string | undefined, fallback: string): Promise<void> {
    this.options.log(`${entry.handle.name}: ${command ?? fallback}`);
    try {
      await entry.handle.logHistory(command ?? fallback);
    } catch (error) {
      this.options.log(`pool ${entry.handle.name}: could not log history: ${describe(error)}`);
    }
  }

  private selectedPools(names: string[] | undefined): PoolEntry[] {
    if (names === undefined || names.length === 0) {
      return [...this.pools.keys()].sort().map((name) => this.lookupPool(name));
    }
    return names.map((name) => this.lookupPool(name));
  }

  private searchPaths(given: string[] | undefined): string[] {
    if (given !== undefined && given.length > 0) return given;
    return [...this.cache.knownDevices()];
  }

  /** A pool command that changes the pool, logged to its history as the user typed it. */
  private async poolCommand(
    name: string,
    command: string | undefined,
    fallback: string,
    fn: (handle: PoolHandle) => Promise<void>,
    configChanges = false,
  ): Promise<PoolStatus> {
    return this.usePool(name, async (entry) => {
      await fn(entry.handle);
      await this.logHistory(entry, command, fallback);
      if (configChanges) await this.remember(entry.handle);
      return entry.handle.status();
    });
  }

  private makeHandlers(): Handlers {
    return {
      'daemon.status': async () => ({
        pid: process.pid,
        socket: this.options.home.socketPath,
        home: this.options.home.dir,
        startedAtMs: this.startedAtMs,
        pools: [...this.pools.keys()].sort(),
        unavailable: [...this.unavailable].map(([name, error]) => ({ name, error })),
      }),
      'daemon.stop': async () => {
        setTimeout(this.options.onStopRequested, 10);
        return { pid: process.pid };
      },
      'pool.create': async (args) => {
        validatePoolName(args.name);
        if (this.pools.has(args.name)) throw new CairnError('EEXIST', `pool '${args.name}' already exists`);
        const handle = await createPool({
          name: args.name,
          vdevSpec: args.vdevSpec,
          ...(args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {}),
          ...(args.force !== undefined ? { force: args.force } : {}),
          ...(args.properties !== undefined ? { properties: args.properties } : {}),
        });
        const entry = this.addPool(handle);
        await this.logHistory(entry, args.command, `cairn pool create ${args.name} ${args.vdevSpec.join(' ')}`);
        await this.remember(handle);
        return handle.status();
      },
      'pool.import': async (args) => {
        if (this.pools.has(args.nameOrGuid)) {
          throw new CairnError('EEXIST', `a pool named '${args.nameOrGuid}' is already imported`);
        }
        const remembered = this.cache.pools().find((item) => item.name === args.nameOrGuid);
        const searchPaths = this.searchPaths(args.searchPaths);
        if (args.searchPaths === undefined && remembered !== undefined) searchPaths.push(...remembered.devices);
        if (searchPaths.length === 0) {
          throw new CairnError('ENOENT', `cannot import '${args.nameOrGuid}': no devices known; give -d DIR`);
        }
        const handle = await importPool({
          nameOrGuid: args.nameOrGuid,
          searchPaths,
          ...(args.force !== undefined ? { force: args.force } : {}),
        });
        if (this.pools.has(handle.name)) {
          await handle.export().catch(() => undefined);
          throw new CairnError('EEXIST', `a pool named '${handle.name}' is already imported`);
        }
        const entry = this.addPool(handle);
        await this.logHistory(entry, args.command, `cairn pool import ${args.nameOrGuid}`);
        await this.remember(handle);
        return handle.status();
      },
      'pool.importable': async (args) => {
        const searchPaths = this.searchPaths(args.searchPaths);
        if (searchPaths.length === 0) return [];
        const guids = new Set([...this.pools.values()].map((entry) => entry.handle.guid));
        const found = await findImportablePools(searchPaths);
        return found.filter((pool) => !guids.has(pool.guid));
      },
      'pool.export': async (args) => {
        if (!this.pools.has(args.name) && this.unavailable.has(args.name)) {
          this.unavailable.delete(args.name);
          await this.cache.forget(args.name);
          return null;
        }
        const entry = this.lookupPool(args.name);
        await this.logHistory(entry, args.command, `cairn pool export ${args.name}`);
        await this.retirePool(args.name);
        try {
          await entry.handle.export();
        } catch (error) {
          this.pools.set(args.name, entry);
          throw error;
        }
        await this.cache.forget(args.name);
        return null;
      },
      'pool.destroy': async (args) => {
        if (!this.pools.has(args.name) && this.unavailable.has(args.name)) {
          throw new CairnError('EFAULTED', `cannot destroy '${args.name}': pool is unavailable; export it instead`);
        }
        const entry = await this.retirePool(args.name);
        try {
          await entry.handle.destroy();
        } catch (error) {
          this.pools.set(args.name, entry);
          throw error;
        }
        await this.cache.forget(args.name);
        return null;
      },
      'pool.status': async (args) => this.selectedPools(args.names).map((entry) => entry.handle.status()),
      'pool.scrub': async (args) => {
        // Not counted as in use: a scrub -w may run for hours and must not hold up an export.
        const entry = this.lookupPool(args.name);
        const scrubOptions = {
          ...(args.wait !== undefined ? { wait: args.wait } : {}),
          ...(args.stop !== undefined ? { stop: args.stop } : {}),
        };
        await entry.handle.scrub(scrubOptions);
        // Logged once it has started (with -w: finished), so a refused scrub leaves no history line.
        await this.logHistory(entry, args.command, `cairn pool scrub ${args.stop === true ? '-s ' : ''}${args.name}`);
        return entry.handle.status();
      },
      'pool.offline': async (args) =>
        this.poolCommand(args.name, args.command, `cairn pool offline ${args.name} ${args.device}`, (handle) =>
          handle.offline(args.device),
        ),
      'pool.online': async (args) =>
        this.poolCommand(args.name, args.command, `cairn pool online ${args.name} ${args.device}`, (handle) =>
          handle.online(args.device),
        ),
      'pool.replace': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool replace ${args.name} ${args.oldDevice} ${args.newDevice ?? ''}`.trimEnd(),
          (handle) =>
            handle.replace(
              args.oldDevice,
              args.newDevice,
              args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {},
            ),
          true,
        ),
      'pool.attach': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool attach ${args.name} ${args.device} ${args.newDevice}`,
          (handle) =>
            handle.attach(
              args.device,
              args.newDevice,
              args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {},
            ),
          true,
        ),
      'pool.detach': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool detach ${args.name} ${args.device}`,
          (handle) => handle.detach(args.device),
          true,
        ),
      'pool.add': async (args) =>
        this.poolCommand(
          args.name,
          args.command,
          `cairn pool add ${args.name} ${args.vdevSpec.join(' ')}`,
          (handle) =>
            handle.add(args.vdevSpec, {
              ...(args.createSizeBytes !== undefined ? { createSizeBytes: args.createSizeBytes } : {}),
              ...(args.force !== undefined ? { force: args.force } : {}),
            }),
          true,
        ),
      'pool.sync': async (args) => {
        for (const entry of this.selectedPools(args.names)) {
          await this.usePool(entry.handle.name, (used) => used.handle.sync());
        }
        return null;
      },
      'pool.history': async (args) => this.usePool(args.name, (entry) => entry.handle.history()),
      'pool.iostat': async (args) =>
        this.selectedPools(args.names).map((entry) => ({
          name: entry.handle.name,
          stats: entry.handle.iostat(),
          space: entry.handle.status().space,
          elapsedMs: Date.now() - entry.importedAtMs,
        })),
      'fs.stat': async (args) =>
        this.fsCall(args.pool, args.path, async (entry) => toWireStat(await entry.handle.fs.resolvePath(args.path))),
      'fs.list': async (args) =>
        this.fsCall(args.pool, args.path, (entry) =>
          listPath(entry.handle.fs, args.path, args.cursor, args.limit ?? LIST_PAGE_ENTRIES_MAX, args.long === true),
        ),
      'fs.mkdir': async (args) =>
        this.fsCall(args.pool, args.path, async (entry) =>
          toWireStat(
            await mkdirPath(entry.handle.fs, args.path, args.parents === true, args.mode ?? DIRECTORY_MODE_DEFAULT),
          ),
        ),
      'fs.remove': async (args) =>
        this.fsCall(args.pool, args.path, async (entry) => {
          await removePathTree(entry.handle.fs, args.path, args.recursive === true, args.force === true);
          return null;
        }),
    };
  }

  private async fsCall<T>(pool: string, path: string, fn: (entry: PoolEntry) => Promise<T>): Promise<T> {
    return this.usePool(pool, async (entry) => {
      try {
        return await fn(entry);
      } catch (error) {
        throw fsError(error, pool, path);
      }
    });
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      await this.restored;
      const url = new URL(request.url ?? '/', 'http://cairnd');
      if (url.pathname === FILE_ENDPOINT) {
        await this.handleFile(request, response, url);
        return;
      }
      if (request.method !== 'POST' || !url.pathname.startsWith(API_PREFIX)) {
        throw new CairnError('EPROTO', `unsupported request ${request.method ?? '?'} ${url.pathname}`);
      }
      const verb = url.pathname.slice(API_PREFIX.length);
      if (!isVerb(verb)) {
        request.resume();
        throw new CairnError('EPROTO', `unknown verb '${verb}'`);
      }
      const body = await readJsonBody(request);
      const result = await this.dispatch(verb, body);
      sendJson(response, 200, { ok: true, result });
    } catch (error) {
      this.sendError(response, error);
    }
  }

  /** An upload that asked before sending its body: answer the error now, or let the body come. */
  private async handleContinue(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      await this.restored;
      const url = new URL(request.url ?? '/', 'http://cairnd');
      const pool = url.searchParams.get('pool');
      const path = url.searchParams.get('path');
      if (url.pathname === FILE_ENDPOINT && request.method === 'PUT' && pool !== null && path !== null) {
        await this.fsCall(pool, path, (entry) => checkUploadTarget(entry.handle.fs, path));
      }
    } catch (error) {
      this.sendError(response, error);
      return;
    }
    response.writeContinue();
    await this.handle(request, response);
  }

  private dispatch<V extends Verb>(verb: V, body: unknown): Promise<VerbResult<V>> {
    const args = validateArgs(verb, body);
    const handler = this.handlers[verb] as (args: VerbArgs<V>) => Promise<VerbResult<V>>;
    return handler(args);
  }

  private async handleFile(request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
    const pool = url.searchParams.get('pool');
    const path = url.searchParams.get('path');
    if (pool === null || path === null) {
      request.resume();
      throw new CairnError('EPROTO', 'file request needs pool and path');
    }
    if (request.method === 'PUT') {
      const modeText = url.searchParams.get('mode');
      const modeBits = modeText === null ? FILE_MODE_DEFAULT : Number.parseInt(modeText, 8);
      if (!Number.isInteger(modeBits) || modeBits < 0 || modeBits > 0o7777) {
        request.resume();
        throw new CairnError('EINVAL', `bad file mode '${modeText ?? ''}'`);
      }
      try {
        const sizeBytes = await this.fsCall(pool, path, (entry) =>
          writeFileFrom(entry.handle.fs, path, request, modeBits),
        );
        sendJson(response, 200, { ok: true, result: { sizeBytes } });
      } catch (error) {
        // Read the rest of the upload (discarding it) before answering: closing early would make the
        // client's next write fail with EPIPE and hide our error behind "connection failed".
        await drain(request);
        throw error;
      }
      return;
    }
    if (request.method === 'GET') {
      await this.fsCall(pool, path, (entry) => streamFile(entry.handle, path, response));
      return;
    }
    request.resume();
    throw new CairnError('EPROTO', `unsupported method ${request.method ?? '?'} on ${FILE_ENDPOINT}`);
  }

  private sendError(response: ServerResponse, error: unknown): void {
    const cairnError = isCairnError(error) ? error : new CairnError('EIO', `internal error: ${errorMessage(error)}`);
    if (!isCairnError(error)) this.options.log(`internal error: ${describe(error)}`);
    if (response.headersSent) {
      response.destroy();
      return;
    }
    const body: ApiResponse<never> = { ok: false, error: cairnError.toWire() };
    sendJson(response, HTTP_STATUS[cairnError.code] ?? 500, body);
  }
}

/**
 * Streams a file as the response body. The first chunk is read before the headers go out, so a missing
 * file or a directory is an ordinary error answer; a failure later is reported in the trailer.
 */
async function streamFile(handle: PoolHandle, path: string, response: ServerResponse): Promise<void> {
  const chunks = readFileChunks(handle.fs, path);
  const first = await chunks.next();
  response.writeHead(200, { 'content-type': 'application/octet-stream', trailer: ERROR_TRAILER });
  let trailer = '';
  try {
    if (first.done !== true) {
      if (!(await writeChunk(response, first.value))) return;
      for await (const chunk of chunks) {
        if (!(await writeChunk(response, chunk))) return;
      }
    }
  } catch (error) {
    const wire = isCairnError(error) ? error.toWire() : { code: 'EIO', message: errorMessage(error), data: {} };
    trailer = encodeURIComponent(JSON.stringify(wire));
  }
  response.addTrailers({ [ERROR_TRAILER]: trailer === '' ? 'none' : trailer });
  response.end();
}

/** Writes with backpressure; false when the client went away. */
async function writeChunk(response: ServerResponse, chunk: Buffer): Promise<boolean> {
  if (response.destroyed) return false;
  if (response.write(chunk)) return true;
  return new Promise((resolve) => {
    const onDrain = (): void => {
      response.off('close', onClose);
      resolve(true);
    };
    const onClose = (): void => {
      response.off('drain', onDrain);
      resolve(false);
    };
    response.once('drain', onDrain);
    response.once('close', onClose);
  });
}

function drain(request: IncomingMessage): Promise<void> {
  if (request.readableEnded || request.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    request.once('end', resolve);
    request.once('close', resolve);
    request.resume();
  });
}

async function readJsonBody(request: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  for await (const chunk of request as AsyncIterable<Buffer>) {
    sizeBytes += chunk.length;
    if (sizeBytes > JSON_BODY_BYTES_MAX) {
      request.resume();
      throw new CairnError('EPROTO', `request body larger than ${JSON_BODY_BYTES_MAX} bytes`);
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CairnError('EPROTO', 'request body is not valid JSON');
  }
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  response.end(text);
}

function validatePoolName(name: string): void {
  if (!POOL_NAME_PATTERN.test(name)) {
    throw new CairnError(
      'EINVAL',
      `invalid pool name '${name}': must begin with a letter and contain only letters, digits, '_', '-' and '.'`,
    );
  }
  if (RESERVED_POOL_NAMES.has(name)) throw new CairnError('EINVAL', `invalid pool name '${name}': name is reserved`);
}

/** Device paths of the leaves of a status config tree. */
export function leafDevices(node: VdevStatusNode): string[] {
  const devices: string[] = [];
  const visit = (current: VdevStatusNode, depth: number): void => {
    if (depth > 0 && current.children.length === 0) devices.push(current.name);
    for (const child of current.children) visit(child, depth + 1);
  };
  visit(node, 0);
  return devices;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function describe(error: unknown): string {
  if (isCairnError(error)) return `${error.code}: ${error.message}`;
  return error instanceof Error ? (error.stack ?? error.message) : String(error);
}
