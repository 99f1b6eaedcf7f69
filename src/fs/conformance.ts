/**
 * The file-operations conformance suite, model-based: one seeded random sequence of path operations runs
 * on a FileSystemApi and on a real directory through node:fs (the oracle, Linux's own semantics), and
 * every result, error code, file content, symlink target, link count and mode must match. Reusable: any
 * FileSystemApi (the POSIX layer on MemoryObjectStore or on a real pool, later translator stacks) is
 * checked by passing a factory. A failure throws with the seed, the step and the last operations.
 *
 * Symlink targets are relative only (an absolute target would leave the oracle's temp directory).
 * Directory sizes and timestamps are not compared (they are file-system specific or wall-clock based);
 * timestamps are covered by focused tests with an injected clock.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import * as nodeFs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isCairnError } from '../util/errors.js';
import { FileKind, type FileSystemApi, type Stat } from './types.js';
import { resolvePathFollow, splitPath } from './paths.js';

export interface FileOpsConformanceOptions {
  /** A fresh, empty file system for this run. */
  makeFs: () => Promise<FileSystemApi>;
  seed: number;
  steps: number;
  /** Names drawn from this pool (small pools mean more collisions and more error paths). */
  names?: string[];
  /** Largest offset a random write or truncate reaches. */
  offsetMaxBytes?: number;
  /** Largest random write. */
  writeMaxBytes?: number;
  /**
   * Closes and reopens the file system under test (Filesystem.open on the same store, a pool export and
   * import), called every reopenEverySteps steps and before the final comparison: what was written must
   * survive it.
   */
  reopen?: (fs: FileSystemApi) => Promise<FileSystemApi>;
  reopenEverySteps?: number;
}

/** Small, fast, seedable PRNG (mulberry32): the same seed replays the same operations exactly. */
export class SeededRandom {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(maxExclusive: number): number {
    return Math.floor(this.next() * maxExclusive);
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  fill(buffer: Buffer): Buffer {
    for (let i = 0; i < buffer.length; i += 4) {
      const word = (this.next() * 4294967296) >>> 0;
      for (let j = 0; j < 4 && i + j < buffer.length; j++) buffer[i + j] = (word >>> (8 * j)) & 0xff;
    }
    return buffer;
  }
}

const DEFAULT_NAMES = ['a', 'b', 'c', 'd', 'e'];
const ORACLE_ROOT_NAME = '.cairn-oracle-root';

type Outcome = { ok: true; value: unknown } | { ok: false; code: string };

async function outcomeOf(fn: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: true, value: await fn() };
  } catch (error) {
    if (isCairnError(error)) return { ok: false, code: error.code };
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string' && code.startsWith('E')) return { ok: false, code };
    throw error; // a bug (InvariantError, TypeError): never compared, always fatal
  }
}

/** Runs one seeded random sequence on the file system under test and on node:fs; throws on divergence. */
/** What a run exercised, so a test can check it was not vacuous (every operation failing the same way). */
export interface FileOpsConformanceReport {
  operations: number;
  succeeded: number;
  /** Count of each error code both sides agreed on. */
  errors: Record<string, number>;
}

export async function runFileOpsAgainstOracle(options: FileOpsConformanceOptions): Promise<FileOpsConformanceReport> {
  const oracleBase = await mkdtemp(join(tmpdir(), 'cairn-fs-oracle-'));
  try {
    // In the file system under test ".." of the root is the root; in the oracle it would leave the temp
    // directory. So the oracle's root sits one level down and its parent holds, for every name in the
    // pool, a symlink back into the root: "../a" from the root then lands on the root's "a" as it should.
    const oracleRoot = join(oracleBase, ORACLE_ROOT_NAME);
    await nodeFs.mkdir(oracleRoot);
    for (const name of options.names ?? DEFAULT_NAMES) {
      await nodeFs.symlink(join(ORACLE_ROOT_NAME, name), join(oracleBase, name));
    }
    const run = new OracleRun(await options.makeFs(), oracleRoot, options);
    await run.run();
    return run.report;
  } finally {
    await rm(oracleBase, { recursive: true, force: true });
  }
}

class OracleRun {
  private readonly random: SeededRandom;
  private readonly names: string[];
  private readonly offsetMaxBytes: number;
  private readonly writeMaxBytes: number;
  private readonly history: string[] = [];
  private step = 0;
  readonly report: FileOpsConformanceReport = { operations: 0, succeeded: 0, errors: {} };

  constructor(
    private fs: FileSystemApi,
    private readonly oracleRoot: string,
    private readonly options: FileOpsConformanceOptions,
  ) {
    this.random = new SeededRandom(options.seed);
    this.names = options.names ?? DEFAULT_NAMES;
    this.offsetMaxBytes = options.offsetMaxBytes ?? 400_000;
    this.writeMaxBytes = options.writeMaxBytes ?? 150_000;
  }

  async run(): Promise<void> {
    for (this.step = 0; this.step < this.options.steps; this.step++) {
      await this.randomOperation();
      if (this.options.reopen !== undefined && this.step % (this.options.reopenEverySteps ?? 200) === 199) {
        await this.reopen();
      }
      if (this.step % 50 === 49) await this.compareTrees();
    }
    if (this.options.reopen !== undefined) await this.reopen();
    await this.compareTrees();
  }

  private async reopen(): Promise<void> {
    this.history.push('(reopen)');
    if (this.options.reopen !== undefined) this.fs = await this.options.reopen(this.fs);
  }

  private fail(message: string): never {
    const recent = this.history.slice(-Number(process.env['CAIRN_FS_HISTORY'] ?? 25)).join('\n  ');
    throw new Error(
      `file-ops conformance diverged (seed ${this.options.seed}, step ${this.step}): ${message}\n` +
        `last operations:\n  ${recent}`,
    );
  }

  /**
   * Mostly a path near what exists (walk down the oracle's real directories, then name an existing entry
   * or a new one), sometimes a blind one: blind paths alone would make most operations fail with ENOENT.
   */
  private async randomPath(want: 'new' | 'file' | 'directory' | 'any'): Promise<string> {
    if (this.random.next() < 0.15) return this.blindPath();
    let path = '';
    for (let depth = 0; depth < 4; depth++) {
      const entries = (await nodeFs.readdir(this.oraclePath(path === '' ? '/' : path), { withFileTypes: true }))
        .map((entry) => ({ name: entry.name, isDirectory: entry.isDirectory() }))
        .sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
      const directories = entries.filter((entry) => entry.isDirectory);
      if (directories.length > 0 && this.random.next() < 0.55) {
        path += `/${this.random.pick(directories).name}`;
        continue;
      }
      return `${path}/${this.pickName(entries, want)}`;
    }
    return `${path}/${this.random.pick(this.names)}`;
  }

  private pickName(entries: { name: string; isDirectory: boolean }[], want: 'new' | 'file' | 'directory' | 'any'): string {
    const wanted =
      want === 'new'
        ? this.names.filter((name) => !entries.some((entry) => entry.name === name))
        : want === 'file'
          ? entries.filter((entry) => !entry.isDirectory).map((entry) => entry.name)
          : want === 'directory'
            ? entries.filter((entry) => entry.isDirectory).map((entry) => entry.name)
            : entries.map((entry) => entry.name);
    if (wanted.length > 0 && this.random.next() < 0.85) return this.random.pick(wanted);
    return this.random.pick(this.names);
  }

  private blindPath(): string {
    const depth = 1 + this.random.int(3);
    const parts: string[] = [];
    for (let i = 0; i < depth; i++) parts.push(this.random.pick(this.names));
    return `/${parts.join('/')}`;
  }

  private oraclePath(path: string): string {
    return join(this.oracleRoot, path);
  }

  /** The parent directory of path, symlinks followed, as the kernel resolves it. */
  private async parentDir(path: string): Promise<{ ino: number; name: string }> {
    const { parentPath, name } = splitPath(path);
    const parent = await this.fs.resolvePath(parentPath === '/' ? '/' : `${parentPath}/`);
    return { ino: parent.ino, name };
  }

  private async compare(description: string, mine: () => Promise<unknown>, oracle: () => Promise<unknown>): Promise<Outcome> {
    this.history.push(description);
    const expected = await outcomeOf(oracle);
    const actual = await outcomeOf(mine);
    if (expected.ok !== actual.ok || (!expected.ok && !actual.ok && expected.code !== actual.code)) {
      this.fail(
        `${description}: oracle ${expected.ok ? 'succeeded' : `failed ${expected.code}`}, ` +
          `file system ${actual.ok ? 'succeeded' : `failed ${actual.code}`}`,
      );
    }
    if (expected.ok && actual.ok && expected.value !== undefined) {
      const same =
        Buffer.isBuffer(expected.value) && Buffer.isBuffer(actual.value)
          ? expected.value.equals(actual.value)
          : JSON.stringify(expected.value) === JSON.stringify(actual.value);
      if (!same) {
        this.fail(
          `${description}: results differ\n    oracle: ${describe(expected.value)}\n    file system: ${describe(actual.value)}`,
        );
      }
    }
    this.report.operations++;
    if (actual.ok) this.report.succeeded++;
    else this.report.errors[actual.code] = (this.report.errors[actual.code] ?? 0) + 1;
    return actual;
  }

  private async randomOperation(): Promise<void> {
    const roll = this.random.int(100);
    const want =
      roll < 24 || (roll >= 84 && roll < 89)
        ? 'new'
        : roll < 63 || (roll >= 79 && roll < 84)
          ? 'file'
          : roll < 69 || (roll >= 89 && roll < 94)
            ? 'directory'
            : 'any';
    const path = await this.randomPath(want);
    const fs = this.fs;
    if (roll < 12) {
      const mode = this.random.pick([0o755, 0o700, 0o750]);
      await this.compare(
        `mkdir ${path} ${mode.toString(8)}`,
        async () => {
          const parent = await this.parentDir(path);
          await fs.mkdir(parent.ino, parent.name, { mode });
        },
        async () => {
          await nodeFs.mkdir(this.oraclePath(path));
          await nodeFs.chmod(this.oraclePath(path), mode);
        },
      );
    } else if (roll < 24) {
      const mode = this.random.pick([0o644, 0o600, 0o640]);
      await this.compare(
        `create ${path} ${mode.toString(8)}`,
        async () => {
          const parent = await this.parentDir(path);
          await fs.create(parent.ino, parent.name, { mode });
        },
        async () => {
          const handle = await nodeFs.open(this.oraclePath(path), 'wx');
          await handle.close();
          await nodeFs.chmod(this.oraclePath(path), mode);
        },
      );
    } else if (roll < 40) {
      const offset = this.random.next() < 0.3 ? 0 : this.random.int(this.offsetMaxBytes);
      const data = this.random.fill(Buffer.alloc(1 + this.random.int(this.writeMaxBytes)));
      await this.compare(
        `write ${path} @${offset} +${data.length}`,
        async () => {
          const stat = await resolvePathFollow(fs, path);
          return fs.write(stat.ino, offset, data);
        },
        async () => {
          const handle = await nodeFs.open(this.oraclePath(path), 'r+');
          try {
            return (await handle.write(data, 0, data.length, offset)).bytesWritten;
          } finally {
            await handle.close();
          }
        },
      );
    } else if (roll < 47) {
      const sizeBytes = this.random.next() < 0.3 ? 0 : this.random.int(this.offsetMaxBytes);
      await this.compare(
        `truncate ${path} ${sizeBytes}`,
        async () => {
          const stat = await resolvePathFollow(fs, path);
          await fs.setattr(stat.ino, { sizeBytes });
        },
        () => nodeFs.truncate(this.oraclePath(path), sizeBytes),
      );
    } else if (roll < 55) {
      const offset = this.random.int(this.offsetMaxBytes);
      const length = this.random.int(this.writeMaxBytes);
      await this.compare(
        `read ${path} @${offset} +${length}`,
        async () => fs.read((await resolvePathFollow(fs, path)).ino, offset, length),
        async () => {
          const handle = await nodeFs.open(this.oraclePath(path), 'r');
          try {
            const buffer = Buffer.alloc(length);
            const { bytesRead } = await handle.read(buffer, 0, length, offset);
            return buffer.subarray(0, bytesRead);
          } finally {
            await handle.close();
          }
        },
      );
    } else if (roll < 63) {
      await this.compare(
        `unlink ${path}`,
        async () => {
          const parent = await this.parentDir(path);
          await fs.unlink(parent.ino, parent.name);
        },
        () => nodeFs.unlink(this.oraclePath(path)),
      );
    } else if (roll < 69) {
      await this.compare(
        `rmdir ${path}`,
        async () => {
          const parent = await this.parentDir(path);
          await fs.rmdir(parent.ino, parent.name);
        },
        () => nodeFs.rmdir(this.oraclePath(path)),
      );
    } else if (roll < 79) {
      const newPath = await this.randomPath(this.random.next() < 0.5 ? 'new' : 'any');
      await this.compare(
        `rename ${path} ${newPath}`,
        async () => {
          const from = await this.parentDir(path);
          const to = await this.parentDir(newPath);
          await fs.rename(from.ino, from.name, to.ino, to.name);
        },
        () => nodeFs.rename(this.oraclePath(path), this.oraclePath(newPath)),
      );
    } else if (roll < 84) {
      const newPath = await this.randomPath('new');
      await this.compare(
        `link ${path} ${newPath}`,
        async () => {
          const source = await fs.resolvePath(path);
          const to = await this.parentDir(newPath);
          await fs.link(source.ino, to.ino, to.name);
        },
        () => nodeFs.link(this.oraclePath(path), this.oraclePath(newPath)),
      );
    } else if (roll < 89) {
      const target = this.randomTarget();
      await this.compare(
        `symlink ${path} -> ${target}`,
        async () => {
          const parent = await this.parentDir(path);
          await fs.symlink(parent.ino, parent.name, target);
        },
        () => nodeFs.symlink(target, this.oraclePath(path)),
      );
    } else if (roll < 94) {
      await this.compare(
        `readdir ${path}`,
        async () => this.listAll((await resolvePathFollow(fs, path)).ino, 1 + this.random.int(4)),
        async () =>
          (await nodeFs.readdir(this.oraclePath(path), { withFileTypes: true }))
            .map((entry) => `${entry.name}:${entry.isDirectory() ? 'd' : entry.isSymbolicLink() ? 'l' : 'f'}`)
            .sort(),
      );
    } else if (roll < 97) {
      const mode = this.random.pick([0o600, 0o644, 0o755, 0o4755, 0o1777]);
      await this.compare(
        `chmod ${path} ${mode.toString(8)}`,
        async () => {
          await fs.setattr((await resolvePathFollow(fs, path)).ino, { mode });
        },
        () => nodeFs.chmod(this.oraclePath(path), mode),
      );
    } else {
      await this.compare(
        `lstat ${path}`,
        async () => summarize(await fs.resolvePath(path)),
        async () => {
          const stat = await nodeFs.lstat(this.oraclePath(path));
          return summarizeNode(stat);
        },
      );
    }
  }

  private randomTarget(): string {
    const roll = this.random.int(4);
    if (roll === 0) return `../${this.random.pick(this.names)}`;
    if (roll === 1) return `${this.random.pick(this.names)}/${this.random.pick(this.names)}`;
    return this.random.pick(this.names);
  }

  /** All entries of a directory through readdir pages; a duplicate across pages is a failure. */
  private async listAll(ino: number, pageEntries: number): Promise<string[]> {
    const seen = new Set<string>();
    let cursor: bigint | null = 0n;
    while (cursor !== null) {
      const page: Awaited<ReturnType<FileSystemApi['readdir']>> = await this.fs.readdir(ino, cursor, pageEntries);
      for (const entry of page.entries) {
        const tag = `${entry.name}:${entry.kind === FileKind.directory ? 'd' : entry.kind === FileKind.symlink ? 'l' : 'f'}`;
        if (seen.has(tag)) this.fail(`readdir of inode ${ino} returned ${entry.name} twice`);
        seen.add(tag);
      }
      cursor = page.cursor;
    }
    return [...seen].sort();
  }

  /** Walks both trees (symlinks not followed) and compares every entry's kind, mode, links and content. */
  private async compareTrees(): Promise<void> {
    this.history.push('(compare trees)');
    await this.compareDirectory('/', this.fs.rootIno);
  }

  private async compareDirectory(path: string, ino: number): Promise<void> {
    const mine = await this.listAll(ino, 64);
    const oracle = (await nodeFs.readdir(this.oraclePath(path), { withFileTypes: true }))
      .map((entry) => `${entry.name}:${entry.isDirectory() ? 'd' : entry.isSymbolicLink() ? 'l' : 'f'}`)
      .sort();
    if (JSON.stringify(mine) !== JSON.stringify(oracle)) {
      this.fail(`directory ${path} differs\n    oracle: ${oracle.join(' ')}\n    file system: ${mine.join(' ')}`);
    }
    for (const tag of mine) {
      const name = tag.slice(0, tag.lastIndexOf(':'));
      const childPath = path === '/' ? `/${name}` : `${path}/${name}`;
      const stat = await this.fs.lookup(ino, name);
      const nodeStat = await nodeFs.lstat(this.oraclePath(childPath));
      const mineSummary = JSON.stringify(summarize(stat));
      const oracleSummary = JSON.stringify(summarizeNode(nodeStat));
      if (mineSummary !== oracleSummary) {
        this.fail(`stat of ${childPath} differs\n    oracle: ${oracleSummary}\n    file system: ${mineSummary}`);
      }
      if (stat.kind === FileKind.directory) {
        await this.compareDirectory(childPath, stat.ino);
      } else if (stat.kind === FileKind.symlink) {
        const target = await this.fs.readlink(stat.ino);
        const oracleTarget = await nodeFs.readlink(this.oraclePath(childPath));
        if (target !== oracleTarget) this.fail(`symlink ${childPath}: oracle ${oracleTarget}, file system ${target}`);
      } else {
        await this.compareContents(childPath, stat);
      }
    }
  }

  private async compareContents(path: string, stat: Stat): Promise<void> {
    const handle = await nodeFs.open(this.oraclePath(path), 'r');
    try {
      const chunkBytes = 256 * 1024;
      for (let offset = 0; offset < stat.sizeBytes; offset += chunkBytes) {
        const expected = Buffer.alloc(Math.min(chunkBytes, stat.sizeBytes - offset));
        await handle.read(expected, 0, expected.length, offset);
        const actual = await this.fs.read(stat.ino, offset, chunkBytes);
        if (!actual.equals(expected)) this.fail(`contents of ${path} differ in [${offset}, +${chunkBytes})`);
      }
    } finally {
      await handle.close();
    }
  }
}

function summarize(stat: Stat): Record<string, unknown> {
  return {
    kind: stat.kind,
    mode: (stat.mode & 0o7777).toString(8),
    nlink: stat.nlink,
    sizeBytes: stat.kind === FileKind.directory ? 'dir' : stat.sizeBytes,
  };
}

function summarizeNode(stat: import('node:fs').Stats): Record<string, unknown> {
  const kind = stat.isDirectory() ? FileKind.directory : stat.isSymbolicLink() ? FileKind.symlink : FileKind.file;
  return {
    kind,
    // Linux symlinks are always 0777, whatever chmod on their path did to the target.
    mode: (stat.mode & 0o7777).toString(8),
    nlink: stat.nlink,
    sizeBytes: kind === FileKind.directory ? 'dir' : stat.size,
  };
}

function describe(value: unknown): string {
  if (Buffer.isBuffer(value)) return `<${value.length} bytes>`;
  return JSON.stringify(value);
}
