/**
 * The cairn CLI: a thin client of cairnd. Verbs and flags follow zpool (`cairn pool …`) and zfs
 * (`cairn create|list|get|set|snapshot|…`, datasets.ts), and the file commands follow
 * cp/cat/ls/rm/mkdir/mv/ln/chmod with DATASET:/PATH naming a file in a dataset ("tank:/a" is in the
 * pool's root dataset, "tank/home@monday:/a" in a read-only snapshot). It loads only the API client
 * and pure tables (never the pool engine), so a command costs one process start and one request.
 *
 * Errors: one line `cairn: <message>` on stderr and exit 1; usage errors add the usage line and exit 2;
 * stack traces only with --debug.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat as lstatLocal, mkdir as mkdirLocal, opendir, readlink, stat as statLocal, symlink as symlinkLocal, unlink } from 'node:fs/promises';
import { basename, posix, resolve as resolvePath } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { cairnHome, connectDaemon, processAlive, startDaemon } from '../api/index.js';
import type { CairnHome, DaemonClient, WireDirEntry } from '../api/index.js';
import { CairnError, isCairnError } from '../util/errors.js';
import { UsageError, expectPositionals, flagValue, parseArgs } from './args.js';
import type { FlagKind, ParsedArgs } from './args.js';
import { DATASET_COMMANDS } from './datasets.js';
import { runDemo } from './demo.js';
import { SERVE_COMMANDS } from './serve.js';
import {
  formatHistory,
  formatImportable,
  formatIostatHeader,
  formatIostatRow,
  formatList,
  formatLongListing,
  formatStatus,
  formatUnavailableStatus,
  unavailableListRow,
} from './format.js';
import { formatDuration, parseSize } from './size.js';

const VDEV_KEYWORDS = new Set(['mirror', 'raidz', 'raidz1', 'raidz2', 'raidz3', 'spare', 'log', 'cache']);
/** ls sorts a directory of up to this many entries; a bigger one streams in readdir order. */
const LS_SORT_ENTRIES_MAX = 10_000;
const LIST_PAGE_ENTRIES = 512;
const DAEMON_STOP_TIMEOUT_MS = 70_000;

export interface CliContext {
  home: CairnHome;
  cwd: string;
  /** The command line as typed, for pool history. */
  commandLine: string;
  out: (text: string) => void;
  /** Notes for a person (zfs prints "no datasets available" on stderr), not errors. */
  err: (text: string) => void;
  /** A client of a running daemon, started if needed. */
  client(): Promise<DaemonClient>;
}

export interface Command {
  words: readonly string[];
  usage: string;
  flags: Readonly<Record<string, FlagKind>>;
  run(context: CliContext, args: ParsedArgs, usage: string): Promise<number>;
}

export interface RemotePath {
  /** "tank", "tank/home" or "tank/home@monday" (read-only). */
  dataset: string;
  path: string;
}

/**
 * "tank/home:/a/b" → { dataset: "tank/home", path: "/a/b" }; "tank:" is the root of the pool's root
 * dataset; "tank/home@monday:/a" is in a snapshot. A local path → null. Dataset components here are
 * letters, digits and "_.-" (':' and spaces, which zfs names may hold, would make the split ambiguous).
 */
export function parseRemotePath(text: string): RemotePath | null {
  const match = /^([A-Za-z][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9_.-]+)*(?:@[A-Za-z0-9_.-]+)?):(.*)$/.exec(text);
  if (match === null) return null;
  const rest = match[2] ?? '';
  const path = posix.normalize(rest.startsWith('/') ? rest : `/${rest}`);
  return { dataset: match[1] ?? '', path: path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path };
}

/** Device paths become absolute (the daemon runs elsewhere); vdev type keywords stay. */
export function resolveVdevSpec(tokens: readonly string[], cwd: string): string[] {
  return tokens.map((token) => (VDEV_KEYWORDS.has(token) ? token : resolvePath(cwd, token)));
}

/** A device argument that names a path (has a slash, or is a file here) becomes absolute; a GUID stays. */
async function resolveDevice(token: string, cwd: string): Promise<string> {
  if (token.includes('/')) return resolvePath(cwd, token);
  try {
    await statLocal(resolvePath(cwd, token));
    return resolvePath(cwd, token);
  } catch {
    return token;
  }
}

function sizeFlag(args: ParsedArgs, usage: string): { createSizeBytes?: number } {
  const text = flagValue(args, 's');
  if (text === undefined) return {};
  try {
    return { createSizeBytes: parseSize(text) };
  } catch (error) {
    if (isCairnError(error)) throw new UsageError(error.message, usage);
    throw error;
  }
}

function remoteArg(text: string, usage: string): RemotePath {
  const remote = parseRemotePath(text);
  if (remote === null) throw new UsageError(`'${text}' is not a dataset path (DATASET:/PATH)`, usage);
  return remote;
}

function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

const POOL_COMMANDS: Command[] = [
  {
    words: ['pool', 'create'],
    usage: 'cairn pool create [-f] [-s SIZE] [-o PROPERTY=VALUE]... POOL VDEV...',
    flags: { f: 'boolean', s: 'value', o: 'list' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'vdev specification'], Infinity);
      const [name = '', ...spec] = args.positionals;
      const properties: Record<string, string> = {};
      for (const assignment of args.values.get('o') ?? []) {
        const equals = assignment.indexOf('=');
        if (equals <= 0) throw new UsageError(`bad property '${assignment}': expected PROPERTY=VALUE`, usage);
        properties[assignment.slice(0, equals)] = assignment.slice(equals + 1);
      }
      const size = sizeFlag(args, usage);
      const client = await context.client();
      await client.call('pool.create', {
        name,
        vdevSpec: resolveVdevSpec(spec, context.cwd),
        ...size,
        ...(args.booleans.has('f') ? { force: true } : {}),
        ...(Object.keys(properties).length > 0 ? { properties } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'status'],
    usage: 'cairn pool status [-v] [POOL]...',
    flags: { v: 'boolean' },
    async run(context, args) {
      const client = await context.client();
      const pools = await client.call('pool.status', { names: args.positionals });
      const stanzas = pools.map((pool) => formatStatus(pool, { verbose: args.booleans.has('v') }));
      if (args.positionals.length === 0) {
        const { unavailable } = await client.call('daemon.status', {});
        stanzas.push(...unavailable.map((item) => formatUnavailableStatus(item.name, item.error)));
      }
      context.out(stanzas.length === 0 ? 'no pools available\n' : stanzas.join('\n'));
      return 0;
    },
  },
  {
    words: ['pool', 'list'],
    usage: 'cairn pool list [-H] [-p] [POOL]...',
    flags: { H: 'boolean', p: 'boolean' },
    async run(context, args) {
      const client = await context.client();
      const pools = await client.call('pool.status', { names: args.positionals });
      if (args.positionals.length === 0) {
        const { unavailable } = await client.call('daemon.status', {});
        pools.push(...unavailable.map((item) => unavailableListRow(item.name)));
      }
      if (pools.length === 0) {
        context.out('no pools available\n');
        return 0;
      }
      context.out(formatList(pools, { scripted: args.booleans.has('H'), parsable: args.booleans.has('p') }));
      return 0;
    },
  },
  {
    words: ['pool', 'scrub'],
    usage: 'cairn pool scrub [-s] [-w] POOL...',
    flags: { s: 'boolean', w: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name'], Infinity);
      if (args.booleans.has('s') && args.booleans.has('w')) throw new UsageError("-s and -w can't be combined", usage);
      const client = await context.client();
      for (const name of args.positionals) {
        await client.call('pool.scrub', {
          name,
          ...(args.booleans.has('w') ? { wait: true } : {}),
          ...(args.booleans.has('s') ? { stop: true } : {}),
          command: context.commandLine,
        });
      }
      return 0;
    },
  },
  {
    words: ['pool', 'export'],
    usage: 'cairn pool export POOL...',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name'], Infinity);
      const client = await context.client();
      for (const name of args.positionals) await client.call('pool.export', { name, command: context.commandLine });
      return 0;
    },
  },
  {
    words: ['pool', 'import'],
    usage: 'cairn pool import [-d DIR]... [-f] [POOL]',
    flags: { d: 'list', f: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, [], 1);
      const searchPaths = (args.values.get('d') ?? []).map((dir) => resolvePath(context.cwd, dir));
      const client = await context.client();
      const name = args.positionals[0];
      if (name === undefined) {
        const pools = await client.call('pool.importable', searchPaths.length > 0 ? { searchPaths } : {});
        if (pools.length === 0) throw new CairnError('ENOENT', 'no pools available to import');
        context.out(formatImportable(pools));
        return 0;
      }
      await client.call('pool.import', {
        nameOrGuid: name,
        ...(searchPaths.length > 0 ? { searchPaths } : {}),
        ...(args.booleans.has('f') ? { force: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'offline'],
    usage: 'cairn pool offline POOL DEVICE',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'device']);
      const [name = '', device = ''] = args.positionals;
      const client = await context.client();
      await client.call('pool.offline', {
        name,
        device: await resolveDevice(device, context.cwd),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'online'],
    usage: 'cairn pool online POOL DEVICE',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'device']);
      const [name = '', device = ''] = args.positionals;
      const client = await context.client();
      await client.call('pool.online', {
        name,
        device: await resolveDevice(device, context.cwd),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'replace'],
    usage: 'cairn pool replace [-s SIZE] POOL OLD_DEVICE [NEW_DEVICE]',
    flags: { s: 'value' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'device'], 3);
      const [name = '', oldDevice = '', newDevice] = args.positionals;
      const size = sizeFlag(args, usage);
      const client = await context.client();
      await client.call('pool.replace', {
        name,
        oldDevice: await resolveDevice(oldDevice, context.cwd),
        ...(newDevice !== undefined ? { newDevice: resolvePath(context.cwd, newDevice) } : {}),
        ...size,
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'attach'],
    usage: 'cairn pool attach [-s SIZE] POOL DEVICE NEW_DEVICE',
    flags: { s: 'value' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'device', 'new device']);
      const [name = '', device = '', newDevice = ''] = args.positionals;
      const size = sizeFlag(args, usage);
      const client = await context.client();
      await client.call('pool.attach', {
        name,
        device: await resolveDevice(device, context.cwd),
        newDevice: resolvePath(context.cwd, newDevice),
        ...size,
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'detach'],
    usage: 'cairn pool detach POOL DEVICE',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'device']);
      const [name = '', device = ''] = args.positionals;
      const client = await context.client();
      await client.call('pool.detach', {
        name,
        device: await resolveDevice(device, context.cwd),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'add'],
    usage: 'cairn pool add [-f] [-s SIZE] POOL VDEV...',
    flags: { f: 'boolean', s: 'value' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name', 'vdev specification'], Infinity);
      const [name = '', ...spec] = args.positionals;
      const size = sizeFlag(args, usage);
      const client = await context.client();
      await client.call('pool.add', {
        name,
        vdevSpec: resolveVdevSpec(spec, context.cwd),
        ...size,
        ...(args.booleans.has('f') ? { force: true } : {}),
        command: context.commandLine,
      });
      return 0;
    },
  },
  {
    words: ['pool', 'sync'],
    usage: 'cairn pool sync [POOL]...',
    flags: {},
    async run(context, args) {
      const client = await context.client();
      await client.call('pool.sync', { names: args.positionals });
      return 0;
    },
  },
  {
    words: ['pool', 'destroy'],
    usage: 'cairn pool destroy [-f] POOL',
    flags: { f: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool name']);
      const client = await context.client();
      await client.call('pool.destroy', { name: args.positionals[0] ?? '', command: context.commandLine });
      return 0;
    },
  },
  {
    words: ['pool', 'history'],
    usage: 'cairn pool history [POOL]...',
    flags: {},
    async run(context, args) {
      const client = await context.client();
      const names =
        args.positionals.length > 0
          ? args.positionals
          : (await client.call('pool.status', {})).map((pool) => pool.name);
      if (names.length === 0) {
        context.out('no pools available\n');
        return 0;
      }
      const parts: string[] = [];
      for (const name of names) parts.push(formatHistory(name, await client.call('pool.history', { name })));
      context.out(parts.join('\n'));
      return 0;
    },
  },
  {
    words: ['pool', 'iostat'],
    usage: 'cairn pool iostat [POOL]... [INTERVAL [COUNT]]',
    flags: {},
    async run(context, args, usage) {
      const positionals = [...args.positionals];
      const numbers: number[] = [];
      while (positionals.length > 0 && /^\d+(\.\d+)?$/.test(positionals[positionals.length - 1] ?? '')) {
        numbers.unshift(Number(positionals.pop()));
      }
      if (numbers.length > 2) throw new UsageError('too many numeric arguments', usage);
      const intervalSeconds = numbers[0];
      if (intervalSeconds !== undefined && intervalSeconds <= 0) throw new UsageError('interval must be positive', usage);
      const count = numbers[1] ?? (intervalSeconds === undefined ? 1 : Infinity);
      const client = await context.client();
      let previous = new Map<string, { stats: { readOps: number; writeOps: number; readBytes: number; writeBytes: number }; atMs: number }>();
      for (let report = 0; report < count; report++) {
        if (report > 0) await new Promise((resolve) => setTimeout(resolve, (intervalSeconds ?? 1) * 1000));
        const rows = await client.call('pool.iostat', { names: positionals });
        const nameWidth = Math.max(0, ...rows.map((row) => row.name.length));
        const lines = [formatIostatHeader(nameWidth)];
        const nowMs = Date.now();
        const next = new Map<string, { stats: typeof rows[number]['stats']; atMs: number }>();
        for (const row of rows) {
          const before = previous.get(row.name);
          const deltas = before === undefined
            ? row.stats
            : {
                readOps: row.stats.readOps - before.stats.readOps,
                writeOps: row.stats.writeOps - before.stats.writeOps,
                readBytes: row.stats.readBytes - before.stats.readBytes,
                writeBytes: row.stats.writeBytes - before.stats.writeBytes,
              };
          const elapsedMs = before === undefined ? row.elapsedMs : nowMs - before.atMs;
          lines.push(formatIostatRow(nameWidth, row, deltas, elapsedMs));
          next.set(row.name, { stats: row.stats, atMs: nowMs });
        }
        previous = next;
        context.out(`${lines.join('\n')}\n`);
      }
      return 0;
    },
  },
];

async function localIsDirectory(path: string): Promise<boolean> {
  try {
    return (await statLocal(path)).isDirectory();
  } catch {
    return false;
  }
}

async function remoteIsDirectory(client: DaemonClient, remote: RemotePath): Promise<boolean> {
  try {
    return (await client.call('fs.stat', { dataset: remote.dataset, path: remote.path })).kind === 'directory';
  } catch (error) {
    if (isCairnError(error, 'ENOENT')) return false;
    throw error;
  }
}

async function copyCommand(context: CliContext, args: ParsedArgs, usage: string): Promise<number> {
  expectPositionals(args, usage, ['source', 'destination']);
  const [sourceText = '', targetText = ''] = args.positionals;
  const source = parseRemotePath(sourceText);
  const target = parseRemotePath(targetText);
  if (source === null && target === null) throw new UsageError('one of source and destination must be DATASET:/PATH', usage);
  const client = await context.client();
  if (args.booleans.has('r') || args.booleans.has('R')) {
    if (source !== null && target !== null) throw new UsageError('cp -r copies between a local directory and a dataset, not dataset to dataset', usage);
    if (sourceText === '-' || targetText === '-') throw new UsageError('cp -r cannot use stdin or stdout', usage);
    if (source !== null) return copyTreeDown(context, client, source, resolvePath(context.cwd, targetText));
    if (await localIsDirectory(resolvePath(context.cwd, sourceText))) {
      return copyTreeUp(context, client, resolvePath(context.cwd, sourceText), target as RemotePath, targetText.endsWith('/'));
    }
  }
  if (target !== null) {
    let targetPath = target.path;
    const sourceName = source !== null ? posix.basename(source.path) : basename(sourceText);
    if (sourceText !== '-' && (targetText.endsWith('/') || (await remoteIsDirectory(client, target)))) {
      targetPath = posix.join(target.path, sourceName);
    }
    let body: Readable;
    let modeBits: number | undefined;
    if (source !== null) body = Readable.from(await client.getFile(source.dataset, source.path));
    else if (sourceText === '-') body = process.stdin;
    else {
      const localPath = resolvePath(context.cwd, sourceText);
      const info = await statLocal(localPath).catch((error: NodeJS.ErrnoException) => {
        throw new CairnError('ENOENT', `${sourceText}: ${error.code === 'ENOENT' ? 'no such file or directory' : error.message}`);
      });
      if (info.isDirectory()) throw new CairnError('EISDIR', `${sourceText}: is a directory`);
      modeBits = info.mode & 0o777;
      body = createReadStream(localPath);
    }
    await client.putFile(target.dataset, targetPath, body, modeBits);
    return 0;
  }
  // Pool to local file (or stdout).
  const remote = source as RemotePath;
  const chunks = await client.getFile(remote.dataset, remote.path);
  if (targetText === '-') {
    await pipeline(Readable.from(chunks), process.stdout, { end: false });
    return 0;
  }
  let localPath = resolvePath(context.cwd, targetText);
  if (await localIsDirectory(localPath)) localPath = resolvePath(localPath, posix.basename(remote.path));
  try {
    await pipeline(Readable.from(chunks), createWriteStream(localPath));
  } catch (error) {
    // Never leave a truncated copy that looks like the file.
    await unlink(localPath).catch(() => undefined);
    throw error;
  }
  return 0;
}

/**
 * cp -r LOCALDIR DATASET:/DIR: as cp -r, into DIR/basename(LOCALDIR) when DIR exists, else as DIR.
 * Depth-first with one open directory per level, so memory follows the depth, not the size.
 * Files keep their permission bits; symlinks are copied as links; other kinds are skipped with a note.
 */
async function copyTreeUp(context: CliContext, client: DaemonClient, localDir: string, target: RemotePath, intoExisting: boolean): Promise<number> {
  let top = target.path;
  if (intoExisting || (await remoteIsDirectory(client, target))) top = posix.join(target.path, basename(localDir));
  let skipped = 0;
  const visit = async (localPath: string, remotePath: string): Promise<void> => {
    const info = await lstatLocal(localPath);
    await client.call('fs.mkdir', { dataset: target.dataset, path: remotePath, mode: info.mode & 0o7777 }).catch((error: unknown) => {
      if (!isCairnError(error, 'EEXIST')) throw error;
    });
    for await (const entry of await opendir(localPath)) {
      const from = resolvePath(localPath, entry.name);
      const to = posix.join(remotePath, entry.name);
      if (entry.isDirectory()) await visit(from, to);
      else if (entry.isFile()) await client.putFile(target.dataset, to, createReadStream(from), (await lstatLocal(from)).mode & 0o7777);
      else if (entry.isSymbolicLink()) await client.call('fs.symlink', { dataset: target.dataset, path: to, target: await readlink(from) });
      else {
        context.err(`cairn: skipping ${from}: not a file, directory or symlink\n`);
        skipped++;
      }
    }
  };
  await visit(localDir, top);
  return skipped > 0 ? 1 : 0;
}

/** cp -r DATASET:/DIR LOCALDIR: as cp -r, into LOCALDIR/basename(DIR) when LOCALDIR exists, else as LOCALDIR. */
async function copyTreeDown(context: CliContext, client: DaemonClient, source: RemotePath, localTarget: string): Promise<number> {
  const top = (await remoteIsDirectory(client, source)) ? source : null;
  if (top === null) {
    // A single file: the ordinary copy.
    const chunks = await client.getFile(source.dataset, source.path);
    const localPath = (await localIsDirectory(localTarget)) ? resolvePath(localTarget, posix.basename(source.path)) : localTarget;
    await writeLocalFile(chunks, localPath, undefined);
    return 0;
  }
  const name = source.path === '/' ? source.dataset.replace(/[/@]/g, '_') : posix.basename(source.path);
  const root = (await localIsDirectory(localTarget)) ? resolvePath(localTarget, name) : localTarget;
  const visit = async (remotePath: string, localPath: string, modeBits: number): Promise<void> => {
    await mkdirLocal(localPath, { mode: modeBits }).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error;
    });
    let cursor: string | undefined;
    do {
      const page = await client.call('fs.list', {
        dataset: source.dataset,
        path: remotePath,
        limit: LIST_PAGE_ENTRIES,
        long: true,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      for (const entry of page.entries) {
        const from = posix.join(remotePath, entry.name);
        const to = resolvePath(localPath, entry.name);
        const mode = (entry.stat?.mode ?? 0o644) & 0o7777;
        if (entry.kind === 'directory') await visit(from, to, mode);
        else if (entry.kind === 'symlink') await symlinkLocal(entry.target ?? '', to);
        else await writeLocalFile(await client.getFile(source.dataset, from), to, mode);
      }
      cursor = page.cursor ?? undefined;
    } while (cursor !== undefined);
  };
  await visit(source.path, root, 0o755);
  return 0;
}

/** Writes a download; a failed one is removed, never left looking like the file. */
async function writeLocalFile(chunks: AsyncIterable<Buffer>, localPath: string, modeBits: number | undefined): Promise<void> {
  try {
    await pipeline(Readable.from(chunks), createWriteStream(localPath, modeBits !== undefined ? { mode: modeBits } : {}));
  } catch (error) {
    await unlink(localPath).catch(() => undefined);
    throw error;
  }
}

async function listCommand(context: CliContext, args: ParsedArgs, usage: string): Promise<number> {
  expectPositionals(args, usage, ['pool path'], Infinity);
  const long = args.booleans.has('l');
  const all = args.booleans.has('a');
  const targets = args.positionals.map((text) => ({ text, remote: remoteArg(text, usage) }));
  const client = await context.client();
  for (const [index, { text, remote }] of targets.entries()) {
    if (targets.length > 1) context.out(`${index > 0 ? '\n' : ''}${text}:\n`);
    let cursor: string | undefined;
    let buffered: WireDirEntry[] | null = [];
    let isDirectory = true;
    const emit = (entries: WireDirEntry[]): void => {
      if (entries.length === 0) return;
      context.out(long ? formatLongListing(entries) : entries.map((entry) => `${entry.name}\n`).join(''));
    };
    do {
      const page = await client.call('fs.list', {
        dataset: remote.dataset,
        path: remote.path,
        limit: LIST_PAGE_ENTRIES,
        long,
        ...(cursor !== undefined ? { cursor } : {}),
      });
      isDirectory = page.directory;
      const visible = page.entries.filter((entry) => all || !entry.name.startsWith('.'));
      if (buffered !== null && buffered.length + visible.length <= LS_SORT_ENTRIES_MAX) buffered.push(...visible);
      else {
        // Too big to sort in bounded memory: print what we have and stream the rest in readdir order.
        if (buffered !== null) emit(buffered);
        buffered = null;
        emit(visible);
      }
      cursor = page.cursor ?? undefined;
    } while (cursor !== undefined);
    if (buffered !== null) {
      buffered.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      if (long && isDirectory) {
        const blocks = buffered.reduce((sum, entry) => sum + Math.ceil((entry.stat?.allocatedBytes ?? 0) / 1024), 0);
        context.out(`total ${blocks}\n`);
      }
      emit(buffered);
    }
  }
  return 0;
}

const FILE_COMMANDS: Command[] = [
  {
    words: ['cp'],
    usage: 'cairn cp [-r] SOURCE DESTINATION   (one of them DATASET:/PATH; - is stdin/stdout)',
    flags: { r: 'boolean', R: 'boolean' },
    run: copyCommand,
  },
  {
    words: ['cat'],
    usage: 'cairn cat DATASET:/PATH...',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool path'], Infinity);
      const remotes = args.positionals.map((text) => remoteArg(text, usage));
      const client = await context.client();
      for (const remote of remotes) {
        await pipeline(Readable.from(await client.getFile(remote.dataset, remote.path)), process.stdout, { end: false });
      }
      return 0;
    },
  },
  { words: ['ls'], usage: 'cairn ls [-l] [-a] DATASET:/PATH...', flags: { l: 'boolean', a: 'boolean' }, run: listCommand },
  {
    words: ['rm'],
    usage: 'cairn rm [-r] [-f] DATASET:/PATH...',
    flags: { r: 'boolean', R: 'boolean', f: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool path'], Infinity);
      const remotes = args.positionals.map((text) => remoteArg(text, usage));
      const client = await context.client();
      for (const remote of remotes) {
        if (remote.path === '/') throw new CairnError('EINVAL', `refusing to remove '${remote.dataset}:/'`);
        await client.call('fs.remove', {
          dataset: remote.dataset,
          path: remote.path,
          ...(args.booleans.has('r') || args.booleans.has('R') ? { recursive: true } : {}),
          ...(args.booleans.has('f') ? { force: true } : {}),
        });
      }
      return 0;
    },
  },
  {
    words: ['mkdir'],
    usage: 'cairn mkdir [-p] DATASET:/PATH...',
    flags: { p: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['pool path'], Infinity);
      const remotes = args.positionals.map((text) => remoteArg(text, usage));
      const client = await context.client();
      for (const remote of remotes) {
        await client.call('fs.mkdir', {
          dataset: remote.dataset,
          path: remote.path,
          ...(args.booleans.has('p') ? { parents: true } : {}),
        });
      }
      return 0;
    },
  },
  {
    words: ['mv'],
    usage: 'cairn mv DATASET:/SOURCE DATASET:/DESTINATION   (within one dataset)',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['source', 'destination']);
      const source = remoteArg(args.positionals[0] ?? '', usage);
      const targetText = args.positionals[1] ?? '';
      const target = remoteArg(targetText, usage);
      if (source.path === '/') throw new CairnError('EINVAL', `cannot move the root of '${source.dataset}'`);
      const client = await context.client();
      let toPath = target.path;
      if (targetText.endsWith('/') || (await remoteIsDirectory(client, target))) {
        toPath = posix.join(target.path, posix.basename(source.path));
      }
      await client.call('fs.rename', { dataset: source.dataset, path: source.path, toDataset: target.dataset, toPath });
      return 0;
    },
  },
  {
    words: ['ln'],
    usage: 'cairn ln [-s] TARGET DATASET:/LINK   (hard links: TARGET is DATASET:/PATH in the same dataset)',
    flags: { s: 'boolean' },
    async run(context, args, usage) {
      expectPositionals(args, usage, ['target', 'link name']);
      const targetText = args.positionals[0] ?? '';
      const link = remoteArg(args.positionals[1] ?? '', usage);
      const client = await context.client();
      if (args.booleans.has('s')) {
        // A symlink holds text; "tank:/a" is not resolved, so a dataset-qualified target is stored as its path.
        const target = parseRemotePath(targetText)?.path ?? targetText;
        await client.call('fs.symlink', { dataset: link.dataset, path: link.path, target });
        return 0;
      }
      const target = remoteArg(targetText, usage);
      await client.call('fs.link', { dataset: target.dataset, path: target.path, toDataset: link.dataset, toPath: link.path });
      return 0;
    },
  },
  {
    words: ['chmod'],
    usage: 'cairn chmod OCTAL_MODE DATASET:/PATH...',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, ['mode', 'dataset path'], Infinity);
      const [modeText = '', ...paths] = args.positionals;
      if (!/^[0-7]{1,4}$/.test(modeText)) throw new UsageError(`invalid mode '${modeText}' (octal, such as 644)`, usage);
      const remotes = paths.map((text) => remoteArg(text, usage));
      const client = await context.client();
      for (const remote of remotes) {
        await client.call('fs.chmod', { dataset: remote.dataset, path: remote.path, mode: Number.parseInt(modeText, 8) });
      }
      return 0;
    },
  },
];

function daemonInfoLines(info: { pid: number; socket: string; startedAtMs: number; pools: string[] }): string {
  return (
    `pid: ${info.pid}\nsocket: ${info.socket}\n` +
    `uptime: ${formatDuration(Date.now() - info.startedAtMs)}\npools: ${info.pools.length > 0 ? info.pools.join(' ') : '-'}\n`
  );
}

const DAEMON_COMMANDS: Command[] = [
  {
    words: ['daemon', 'start'],
    usage: 'cairn daemon start',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, []);
      const client = await connectDaemon(context.home, { autoStart: false }).catch((error: unknown) => {
        if (isCairnError(error, 'ENODAEMON')) return null;
        throw error;
      });
      const info = client !== null ? await client.call('daemon.status', {}) : await startDaemon(context.home);
      context.out(daemonInfoLines(info));
      return 0;
    },
  },
  {
    words: ['daemon', 'stop'],
    usage: 'cairn daemon stop',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, []);
      let client: DaemonClient;
      try {
        client = await connectDaemon(context.home, { autoStart: false });
      } catch (error) {
        if (!isCairnError(error, 'ENODAEMON')) throw error;
        context.out('cairnd is not running\n');
        return 0;
      }
      const { pid } = await client.call('daemon.stop', {});
      const deadlineMs = Date.now() + DAEMON_STOP_TIMEOUT_MS;
      while (processAlive(pid)) {
        if (Date.now() > deadlineMs) throw new CairnError('EBUSY', `cairnd (pid ${pid}) did not stop in time`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      context.out(`cairnd stopped (pid ${pid})\n`);
      return 0;
    },
  },
  {
    words: ['daemon', 'status'],
    usage: 'cairn daemon status',
    flags: {},
    async run(context, args, usage) {
      expectPositionals(args, usage, []);
      const client = await connectDaemon(context.home, { autoStart: false });
      const info = await client.call('daemon.status', {});
      context.out(daemonInfoLines(info));
      for (const item of info.unavailable) context.out(`unavailable: ${item.name}: ${item.error}\n`);
      return 0;
    },
  },
];

const DEMO_COMMAND: Command = {
  words: ['demo'],
  usage: 'cairn demo',
  flags: {},
  async run(context, args, usage) {
    expectPositionals(args, usage, []);
    return runDemo(context);
  },
};

export const COMMANDS: readonly Command[] = [
  ...POOL_COMMANDS,
  ...DATASET_COMMANDS,
  ...FILE_COMMANDS,
  ...SERVE_COMMANDS,
  ...DAEMON_COMMANDS,
  DEMO_COMMAND,
];

export function usageSummary(): string {
  return `usage:\n${COMMANDS.map((command) => `  ${command.usage}`).join('\n')}\n\nglobal options: --debug (stack traces), --help, --version\n`;
}

/** The command named by argv and the arguments after its words. */
export function findCommand(argv: readonly string[]): { command: Command; rest: string[] } {
  const first = argv[0];
  if (first === undefined) throw new UsageError('missing command', 'cairn <command> [options]; cairn --help lists them');
  const groups = new Set(COMMANDS.filter((command) => command.words.length > 1).map((command) => command.words[0]));
  if (groups.has(first)) {
    const second = argv[1];
    const groupUsage = `cairn ${first} ${COMMANDS.filter((command) => command.words[0] === first)
      .map((command) => command.words[1])
      .join('|')} ...`;
    if (second === undefined) throw new UsageError(`missing ${first} subcommand`, groupUsage);
    const command = COMMANDS.find((item) => item.words[0] === first && item.words[1] === second);
    if (command === undefined) throw new UsageError(`unknown ${first} subcommand '${second}'`, groupUsage);
    return { command, rest: argv.slice(2) };
  }
  const command = COMMANDS.find((item) => item.words.length === 1 && item.words[0] === first);
  if (command === undefined) throw new UsageError(`unknown command '${first}'`, 'cairn <command> [options]; cairn --help lists them');
  return { command, rest: argv.slice(1) };
}

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** Runs one CLI invocation; returns the exit code (0 ok, 1 error, 2 usage). */
export async function runCli(argvIn: readonly string[], io: CliIo): Promise<number> {
  const debug = argvIn.includes('--debug');
  const argv = argvIn.filter((arg) => arg !== '--debug');
  try {
    if (argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
      io.out(usageSummary());
      return 0;
    }
    if (argv[0] === '--version') {
      io.out('cairn 0.1.0\n');
      return 0;
    }
    const { command, rest } = findCommand(argv);
    if (rest.includes('--help') || (rest[0] === '-h' && !('h' in command.flags))) {
      io.out(`usage: ${command.usage}\n`);
      return 0;
    }
    const args = parseArgs(rest, command.flags, command.usage);
    const home = cairnHome(io.env ?? process.env);
    let client: DaemonClient | null = null;
    const context: CliContext = {
      home,
      cwd: io.cwd ?? process.cwd(),
      commandLine: ['cairn', ...argv].map(shellQuote).join(' '),
      out: io.out,
      err: io.err,
      async client() {
        client ??= await connectDaemon(home, { autoStart: true });
        return client;
      },
    };
    return await command.run(context, args, command.usage);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`cairn: ${error.message}\nusage: ${error.usage}\n`);
      return 2;
    }
    if (debug && error instanceof Error) io.err(`${error.stack ?? error.message}\n`);
    if (isCairnError(error)) io.err(`cairn: ${error.message}\n`);
    else if (isPipeClosed(error)) return 0;
    else io.err(`cairn: internal error: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

function isPipeClosed(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === 'EPIPE';
}

export async function cliMain(argv: readonly string[]): Promise<void> {
  // `cairn cat x | head` closes our stdout early; that is not an error.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code === 'EPIPE') process.exit(0);
  });
  process.exitCode = await runCli(argv, {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  });
}

function isMain(): boolean {
  const entry = process.argv[1];
  return entry !== undefined && import.meta.url === pathToFileURL(resolvePath(entry)).href;
}

if (isMain()) await cliMain(process.argv.slice(2));
