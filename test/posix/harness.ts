/**
 * Shared by the POSIX-through-FUSE tests: a file-backed pool with one file system dataset mounted, and
 * child processes that do the POSIX calls. The test process serves the mount, so it never touches the
 * mount itself (a synchronous call would wait on its own event loop; even async calls would test
 * node's fs, not the calls a program makes): every check is a Python script run asynchronously, which
 * prints JSON lines that the tests assert on.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPool, importPool, type Pool, type PoolHandle } from '../../src/pool/index.js';
import type { FileSystemApi } from '../../src/fs/index.js';
import { isCairnError } from '../../src/util/errors.js';
import { cleanupStaleMount, fuseAvailable, mountFilesystem, type FuseMount } from '../../src/fuse/index.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const SCRIPT_PATH = join(dirname(fileURLToPath(import.meta.url)), 'posix_checks.py');
export const STRESS_SCRIPT_PATH = join(dirname(fileURLToPath(import.meta.url)), 'stress.py');
export const NOBODY_ID = 65534;
/** The system interpreter: a per-user shim (pyenv under /root) is not reachable by the unprivileged child. */
export const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const available = fuseAvailable();
/** `skip` option for a describe: FUSE needs root and /dev/fuse. */
export const skipUnlessFuse: false | string = available.ok ? false : `FUSE unavailable: ${available.reason}`;

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Run as uid/gid 65534 (nobody) with no supplementary groups. */
  asNobody?: boolean;
  timeoutMs?: number;
  stdin?: string;
}

/** Runs a command asynchronously and collects its output; never rejects on a non-zero exit. */
export function run(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const argv = options.asNobody ? ['setpriv', `--reuid=${NOBODY_ID}`, `--regid=${NOBODY_ID}`, '--clear-groups', command, ...args] : [command, ...args];
  return new Promise((resolve) => {
    const child = execFile(argv[0]!, argv.slice(1), { encoding: 'utf8', maxBuffer: 16 * MiB, timeout: options.timeoutMs ?? 60_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; signal?: NodeJS.Signals }) | null;
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, signal: e?.signal ?? null, stdout, stderr });
    });
    if (options.stdin !== undefined) child.stdin?.end(options.stdin);
    else child.stdin?.end();
  });
}

/** What one group of checks reported: name → value. */
export type Records = Map<string, unknown>;

export function parseRecords(stdout: string): Records {
  const records = new Map<string, unknown>();
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const { name, value } = JSON.parse(line) as { name: string; value: unknown };
    records.set(name, value);
  }
  return records;
}

/** Runs one group of posix_checks.py; throws with its stderr when the script itself failed. */
export async function checks(group: string, args: string[], options: RunOptions = {}): Promise<Records> {
  const result = await run(PYTHON, [SCRIPT_PATH, group, ...args], options);
  if (result.code !== 0) {
    throw new Error(`posix_checks.py ${group} exited ${result.code ?? result.signal}:\n${result.stderr}\nreported so far:\n${result.stdout}`);
  }
  return parseRecords(result.stdout);
}

/** Spawns a long-lived child (a lock holder) that reports JSON lines on stdout. */
export function spawnChecks(group: string, args: string[]): { child: ChildProcess; lines: AsyncIterable<Records> } {
  const child = spawn(PYTHON, [SCRIPT_PATH, group, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  async function* lines(): AsyncGenerator<Records> {
    let pending = '';
    for await (const chunk of child.stdout!) {
      pending += String(chunk);
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        yield parseRecords(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
    }
  }
  return { child, lines: lines() };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads a whole (small) file through the library, following a path from the root. */
export async function readPath(fs: FileSystemApi, path: string): Promise<Buffer> {
  const st = await fs.resolvePath(path);
  return fs.read(st.ino, 0, st.sizeBytes);
}

/**
 * The file system with every call that fails with EIO (or anything that is not an errno) recorded, so a
 * test that sees EIO through the mount can say where it came from.
 */
function recordingEio(fs: FileSystemApi, dataset: string, sink: string[]): FileSystemApi {
  return new Proxy(fs, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(target, args);
        if (!(result instanceof Promise)) return result;
        return result.catch((error: unknown) => {
          if ((!isCairnError(error) || isCairnError(error, 'EIO')) && sink.length < 20) {
            const shown = args.map((a) => (Buffer.isBuffer(a) ? `<${a.length} bytes>` : typeof a === 'bigint' ? `${a}n` : JSON.stringify(a)));
            sink.push(`${dataset} ${String(property)}(${shown.join(', ')}): ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
          }
          throw error;
        });
      };
    },
  });
}

export interface Rig {
  dir: string;
  devicePath: string;
  deviceSizeBytes: number;
  pool: PoolHandle;
  /** Failures the mounts answered with EIO (bugs or I/O errors), for the message of a failing test. */
  ioErrors: string[];
  /** Mount points by dataset name. */
  mounts: Map<string, { path: string; mount: FuseMount }>;
  /** Creates a file system dataset and mounts it at dir/<last name component>. */
  mountDataset(dataset: string, options?: { readonly?: boolean; create?: boolean; properties?: Record<string, string> }): Promise<string>;
  unmount(dataset: string): Promise<void>;
  unmountAll(): Promise<void>;
  /** Unmounts all, exports and imports the pool again (nothing mounted afterwards). */
  reimport(): Promise<PoolHandle>;
  /** Unmounts all, then closes the devices as a crash would (no sync, no labels), and imports again. */
  crashAndImport(): Promise<PoolHandle>;
  /** Unmounts (lazily if need be), exports and removes the directory. */
  close(): Promise<void>;
}

export async function makeRig(prefix: string, options: { deviceSizeBytes?: number; poolName?: string } = {}): Promise<Rig> {
  const dir = await mkdtemp(join(tmpdir(), `cairn-posix-${prefix}-`));
  // mkdtemp makes the directory 0700; the unprivileged child must be able to reach the mount points
  await chmod(dir, 0o755);
  const devicePath = join(dir, 'dev.img');
  const deviceSizeBytes = options.deviceSizeBytes ?? 256 * MiB;
  const poolName = options.poolName ?? 'p';
  let pool = await createPool({ name: poolName, vdevSpec: [devicePath], createSizeBytes: deviceSizeBytes, cacheSizeBytes: 32 * MiB });
  const mounts = new Map<string, { path: string; mount: FuseMount }>();
  const ioErrors: string[] = [];

  const unmount = async (dataset: string): Promise<void> => {
    const m = mounts.get(dataset);
    if (!m) return;
    mounts.delete(dataset);
    try {
      await m.mount.unmount();
    } catch {
      await cleanupStaleMount(m.path);
      await run('umount', ['-l', m.path]);
    }
  };
  const unmountAll = async (): Promise<void> => {
    for (const name of [...mounts.keys()]) await unmount(name);
  };

  const rig: Rig = {
    dir,
    devicePath,
    deviceSizeBytes,
    get pool() {
      return pool;
    },
    ioErrors,
    mounts,
    async mountDataset(dataset, opts = {}) {
      if (opts.create ?? !dataset.includes('@')) await pool.datasets.create(dataset, opts.properties ? { properties: opts.properties } : {});
      const fs = recordingEio(await pool.datasets.open(dataset), dataset, ioErrors);
      const path = join(dir, dataset.replace(/[/@]/g, '_'));
      await mkdir(path, { recursive: true });
      const p = pool;
      const mount = await mountFilesystem(fs, path, { name: `cairn-${prefix}`, readonly: opts.readonly ?? false, onSync: () => p.sync(),
        onError: (error, opcode) => {
          if (ioErrors.length < 20) ioErrors.push(`${dataset} opcode ${opcode}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
        },
      });
      mounts.set(dataset, { path, mount });
      return path;
    },
    unmount,
    unmountAll,
    async reimport() {
      await unmountAll();
      await pool.export();
      pool = await importPool({ searchPaths: [devicePath], cacheSizeBytes: 32 * MiB });
      return pool;
    },
    async crashAndImport() {
      await unmountAll();
      await (pool as unknown as Pool).abandon();
      pool = await importPool({ searchPaths: [devicePath], cacheSizeBytes: 32 * MiB });
      return pool;
    },
    async close() {
      try {
        await unmountAll();
        await pool.export().catch(() => undefined);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
  return rig;
}
