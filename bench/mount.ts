/**
 * Mount and NBD benchmarks (issue 4, Performance): the same workload through a Cairn FUSE mount, a
 * zfs-fuse mount and a plain libfuse passthrough (bindfs of a directory), all on the same disk, in one
 * run; then nbdcopy in and out of a Cairn volume against `nbdkit file` serving a plain file.
 *
 *   workload   bench/mount-workload.sh, one child process, run with every mount made at once (Cairn,
 *              bindfs, and zfs-fuse inside zfs-fuse.sh's run), each phase taking the mounts in turn:
 *              - seq write: dd of a pre-made random file (BENCH_MB MiB) into the mount, bs=1M, conv=fsync;
 *                seq read: dd back to /dev/null after dropping the kernel caches; then cmp (untimed).
 *              - fio 4 KiB random write, then random read (psync, numjobs 1, buffered, 256 MiB file,
 *                BENCH_FIO_SECONDS each, caches dropped before each): IOPS.
 *              - BENCH_MOUNT_FILES files of 4 KiB created (open, write, close), stat'ed, `ls -l` of their
 *                directory cold then warm, deleted: files/s per phase, seconds per listing. The same
 *                phases run first, untimed, on 3,000 files (a warm-up, on every system alike).
 *              - untar of a generated source-like tree (BENCH_TREE_FILES files, log-normal sizes around
 *                3 KiB, text content from node_modules so it compresses like source) + `sync`; then
 *                `rm -rf` of it + `sync`.
 *              Every phase runs BENCH_ROUNDS rounds, the mounts taking turns 6 s apart in an order that
 *              changes each round (mount-workload.sh); each figure is the median of its rounds. Rows
 *              swung by a fifth or more from one run to the next on this host when each system ran
 *              alone, one after the other; taking turns puts a slow stretch on every system, not on one.
 *   Cairn      a pool on one file vdev in the scratch dir, a filesystem dataset served by
 *              mountFilesystem in this process. This process never touches its own mount: the
 *              workload is a child process awaited asynchronously (docs/fuse.md explains the deadlock).
 *   zfs-fuse   ../shared/peers/zfs-fuse.sh single, copied with bench/zfs-fuse-workload.sh as its
 *              fs-workload.sh, which adds zfs-fuse's mount to the others; its pool files go under /tmp,
 *              the same disk. When zfs-fuse cannot start, the workload runs without it.
 *   bindfs     `bindfs DIR MNT` of a plain directory in the scratch dir (libfuse 2, Debian).
 *   NBD        a volume of min(BENCH_MB, 1024) MiB (thin) served by NbdServer on 127.0.0.1; `nbdcopy
 *              --flush FILE nbd://…/vol` in, caches dropped, `nbdcopy nbd://…/vol OUT` out, cmp (untimed).
 *              Reference: `nbdkit -f file file=F` of a plain file of that size on the same disk.
 *
 * Environment: BENCH_MB (default 2048), BENCH_DIR (default /tmp, the disk zfs-fuse.sh uses),
 * BENCH_MOUNT_FILES (10000), BENCH_TREE_FILES (20000), BENCH_FIO_SECONDS (20), BENCH_ROUNDS (3), BENCH_PEERS=0 skips
 * zfs-fuse and bindfs (nbdkit stays: it is the NBD row's only reference). Needs root for the mounts.
 * Alone: `BENCH_MB=1024 node --import tsx bench/mount.ts`.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, truncate } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPool } from '../src/pool/index.js';
import type { PoolHandle } from '../src/pool/index.js';
import { cleanupStaleMount, fuseAvailable, mountFilesystem } from '../src/fuse/index.js';
import type { FuseMount } from '../src/fuse/index.js';
import { NbdServer } from '../src/nbd/index.js';
import { VolumeExport } from '../src/api/nbd-exports.js';

const MiB = 1024 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
/** zfs-fuse.sh makes 4 GiB sparse devices: the seq file, fio's file and the tree must fit with room. */
const PEER_MB_MAX = 3072;
/** Per round of the workload (every phase on every mount). */
const WORKLOAD_TIMEOUT_MS = 3_600_000;
const TOOL_TIMEOUT_MS = 1_800_000;
const OUTPUT_MAX_BYTES = 1 << 20;
const WORKLOAD_SCRIPT = join(here, 'mount-workload.sh');

export interface MountBenchOptions {
  /** A scratch directory on the disk under test; everything made here is removed. */
  dir: string;
  sizeMb: number;
  nbdMb: number;
  filesCount: number;
  treeFiles: number;
  fioSeconds: number;
  /** Rounds of every mount phase, the mounts taking turns; the table takes each figure's median. */
  rounds: number;
  peers: boolean;
}

/** figure name → value (the median of its rounds for the mount rows). */
type Figures = Record<string, number>;
/** label → figure name → every value the workload printed for it ("LABEL FIGURE VALUE"), in order. */
type Samples = Map<string, Record<string, number[]>>;

/**
 * Writes a tarball of a source-like tree: COUNT files in directories of about 30, three levels deep,
 * sizes log-normal around 3 KiB (capped at 512 KiB), content cut from real text (TypeScript's lib and
 * this repo's src) so compression sees what it would on a checkout. Seeded: every run untars the same tree.
 */
const TREE_GENERATOR = String.raw`
import os, random, sys, tarfile, io
out, count, corpus_dirs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
random.seed(4)
parts, total = [], 0
for top in corpus_dirs:
    for root, _, names in os.walk(top):
        for name in sorted(names):
            if total > 32 << 20: break
            if name.endswith((".ts", ".js", ".json", ".md")):
                with open(os.path.join(root, name), "rb") as f: b = f.read()
                parts.append(b); total += len(b)
corpus = b"".join(parts)
assert len(corpus) > 1 << 20, "corpus too small"
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
    for i in range(count):
        size = min(int(random.lognormvariate(8.0, 1.3)), 512 << 10)
        start = random.randrange(0, len(corpus) - size)
        d = f"pkg{i // 3000}/mod{(i // 300) % 10}/dir{(i // 30) % 10}"
        info = tarfile.TarInfo(f"{d}/file{i}.ts"); info.size = size; info.mode = 0o644; info.mtime = 1764000000
        tar.addfile(info, io.BytesIO(corpus[start:start + size]))
`;

interface ChildResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Children running now, each the leader of its own process group, so an interrupted run can end them. */
const liveChildren = new Set<ChildProcess>();

/**
 * Processes of one process group, by pid, with their command names (from /proc/PID/stat: "pid (comm) state
 * ppid pgrp ...").
 */
async function processGroupMembers(pgid: number): Promise<Array<{ pid: number; comm: string }>> {
  const members: Array<{ pid: number; comm: string }> = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const close = stat.lastIndexOf(')');
    if (close < 0) continue;
    const fields = stat.slice(close + 2).split(' ');
    if (Number(fields[2]) === pgid) members.push({ pid: Number(entry), comm: stat.slice(stat.indexOf('(') + 1, close) });
  }
  return members;
}

/**
 * SIGTERM, by pid, to every process of the group a child of ours leads (a hung dd or fio under bash goes
 * too). The zfs-fuse daemon is spared: zfs-fuse.sh's exit trap needs it alive to destroy its pool (and
 * so unmount), and stops it by its pid afterwards; killed first, it would leave dead mounts behind.
 */
async function terminateGroup(pgid: number): Promise<void> {
  for (const member of await processGroupMembers(pgid)) {
    if (member.comm !== 'zfs-fuse') signalPid(member.pid, 'SIGTERM');
  }
}

function signalPid(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Stops every running child (terminateGroup) and waits up to 10 s. zfs-fuse 0.7 was seen to hang for
 * minutes on the SIGTERM its script sends after an interrupted workload (after destroying the pool), so
 * a zfs-fuse still there is then killed, its script's trap left 5 s to finish, the rest of the group
 * killed, and the daemon's /zfs-kstat mount, dead by then, detached.
 */
async function stopChildren(): Promise<void> {
  const children = [...liveChildren];
  const closed = children.map((child) => new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('close', () => resolve());
  }));
  const allClosed = (timeoutMs: number): Promise<unknown> => Promise.race([Promise.all(closed), sleepMs(timeoutMs)]);
  for (const child of children) {
    if (child.pid !== undefined) await terminateGroup(child.pid);
  }
  await allClosed(10_000);
  const stuck = children.filter((child) => child.pid !== undefined && child.exitCode === null && child.signalCode === null);
  if (stuck.length === 0) return;
  let killedZfsFuse = false;
  for (const child of stuck) {
    for (const member of await processGroupMembers(child.pid ?? 0)) {
      if (member.comm !== 'zfs-fuse') continue;
      killedZfsFuse = true;
      signalPid(member.pid, 'SIGKILL');
    }
  }
  await allClosed(5_000);
  for (const child of stuck) {
    for (const member of await processGroupMembers(child.pid ?? 0)) signalPid(member.pid, 'SIGKILL');
  }
  await allClosed(5_000);
  if (killedZfsFuse) await cleanupStaleMount('/zfs-kstat').catch(() => false);
}

/** Spawns and awaits a child without blocking this process's event loop (which may be serving a mount). */
function runChild(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    liveChildren.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < OUTPUT_MAX_BYTES) stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < OUTPUT_MAX_BYTES) stderr += chunk.toString('utf8');
    });
    const timer = setTimeout(() => {
      if (child.pid !== undefined) void terminateGroup(child.pid);
    }, options.timeoutMs ?? TOOL_TIMEOUT_MS);
    child.on('error', (error) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      reject(error);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      liveChildren.delete(child);
      resolve({ code, stdout, stderr });
    });
  });
}

async function mustRun(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<ChildResult> {
  const result = await runChild(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')}: exit ${result.code}: ${stderrTail(result)}`);
  }
  return result;
}

/** A child's last lines of stderr, for an error message. */
function stderrTail(result: ChildResult): string {
  return result.stderr.trim().split('\n').slice(-3).join(' | ');
}

function hasCommand(name: string): Promise<boolean> {
  return runChild('sh', ['-c', `command -v ${name}`]).then((r) => r.code === 0, () => false);
}

async function dropCaches(): Promise<void> {
  await runChild('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
}

async function secondsOf(fn: () => Promise<unknown>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function parseSamples(stdout: string): Samples {
  const samples: Samples = new Map();
  for (const line of stdout.split('\n')) {
    const [label, figure, value] = line.trim().split(' ');
    if (!label || !figure || value === undefined || !Number.isFinite(Number(value))) continue;
    let figures = samples.get(label);
    if (!figures) samples.set(label, (figures = {}));
    (figures[figure] ??= []).push(Number(value));
  }
  return samples;
}

function medians(figures: Record<string, number[]> | undefined): Figures | null {
  if (!figures) return null;
  const out: Figures = {};
  for (const [figure, values] of Object.entries(figures)) {
    const sorted = [...values].sort((a, b) => a - b);
    const mid = sorted.length >> 1;
    out[figure] = sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
  }
  return out;
}

async function isMounted(path: string): Promise<boolean> {
  const mounts = await readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[1] === path);
}

/** Cleanup actions, run last-in first-out, after success, failure or SIGINT/SIGTERM alike: no mount or daemon outlives a run. */
class Cleanup {
  private readonly actions: Array<[what: string, action: () => Promise<void>]> = [];

  push(what: string, action: () => Promise<void>): void {
    this.actions.push([what, action]);
  }

  async runAll(): Promise<void> {
    for (let entry = this.actions.pop(); entry !== undefined; entry = this.actions.pop()) {
      const [what, action] = entry;
      try {
        await action();
      } catch (e) {
        console.error(`cleanup: ${what}: ${(e as Error).message}`);
      }
    }
  }
}

/** A mount the workload runs on: its label in the output, its directory, and how to unmount it. */
interface Mounted {
  label: string;
  dir: string;
  unmount: () => Promise<void>;
}

function workloadEnv(inputs: Inputs, mountArgs: string[]): NodeJS.ProcessEnv {
  return {
    ...process.env,
    MW_RANDOM: inputs.randomFile,
    MW_MB: String(inputs.options.sizeMb),
    MW_FILES: String(inputs.options.filesCount),
    MW_TARBALL: inputs.tarball,
    MW_TREE_FILES: String(inputs.options.treeFiles),
    MW_FIO_SECONDS: String(inputs.options.fioSeconds),
    MW_ROUNDS: String(inputs.options.rounds),
    MW_SCRIPT: WORKLOAD_SCRIPT,
    MW_MOUNTS: mountArgs.join('\n'),
  };
}

interface Inputs {
  options: MountBenchOptions;
  randomFile: string;
  nbdRandomFile: string;
  tarball: string;
}

async function makeInputs(options: MountBenchOptions): Promise<Inputs> {
  const randomFile = join(options.dir, 'random.bin');
  const nbdRandomFile = join(options.dir, 'random-nbd.bin');
  const tarball = join(options.dir, 'tree.tar');
  await mustRun('dd', ['if=/dev/urandom', `of=${randomFile}`, 'bs=1M', `count=${options.sizeMb}`, 'status=none']);
  await mustRun('dd', [`if=${randomFile}`, `of=${nbdRandomFile}`, 'bs=1M', `count=${options.nbdMb}`, 'status=none']);
  await mustRun('python3', ['-c', TREE_GENERATOR, tarball, String(options.treeFiles), join(here, '../node_modules/typescript/lib'), join(here, '../src')]);
  return { options, randomFile, nbdRandomFile, tarball };
}

/**
 * Runs the workload on every mount, zfs-fuse's included when it can start: through zfs-fuse.sh, whose
 * fs-workload.sh (zfs-fuse-workload.sh) adds its mount to the others. Without zfs-fuse, directly. A
 * workload that fails prints what it measured before its error is thrown.
 */
async function runWorkloads(inputs: Inputs, mounts: readonly Mounted[], checkInterrupted: () => void): Promise<Samples> {
  const mountArgs = mounts.map(({ label, dir }) => `${label}=${dir}`);
  const env = workloadEnv(inputs, mountArgs);
  const timeoutMs = WORKLOAD_TIMEOUT_MS * inputs.options.rounds;
  const failed = (result: ChildResult): Error => {
    for (const [label, figures] of parseSamples(result.stdout)) console.log(`${label} (before the failure): ${JSON.stringify(figures)}`);
    return new Error(`workload failed (exit ${result.code}): ${stderrTail(result)}`);
  };
  const zfsFuse = await zfsFusePeer(inputs);
  if (zfsFuse) {
    const started = join(zfsFuse.scratch, 'started');
    try {
      const result = await runChild('bash', [join(zfsFuse.scratch, 'zfs-fuse.sh'), 'single'], { env: { ...env, MW_STARTED: started }, timeoutMs });
      if (result.code === 0) return parseSamples(result.stdout);
      checkInterrupted();
      if (existsSync(started)) throw failed(result);
      console.error(`zfs-fuse peer did not start: ${stderrTail(result)}`);
    } finally {
      await rm(zfsFuse.scratch, { recursive: true, force: true });
    }
  }
  const result = await runChild('bash', [WORKLOAD_SCRIPT, ...mountArgs], { env, timeoutMs });
  if (result.code !== 0) throw failed(result);
  return parseSamples(result.stdout);
}

/** The Cairn pool both sides of Cairn use: the filesystem mount, then the volume for NBD. */
async function openCairnPool(inputs: Inputs, cleanup: Cleanup): Promise<PoolHandle> {
  const { options } = inputs;
  const device = join(options.dir, 'cairn.img');
  const sizeBytes = (2 * options.sizeMb + 2 * options.nbdMb + 2048) * MiB;
  const pool = await createPool({ name: 'benchmnt', vdevSpec: [device], createSizeBytes: sizeBytes });
  cleanup.push('cairn pool', async () => {
    await pool.destroy();
    await rm(device, { force: true });
  });
  return pool;
}

/** Mounts the Cairn filesystem, served by this process. */
async function mountCairn(mnt: string, pool: PoolHandle, cleanup: Cleanup): Promise<Mounted> {
  await mkdir(mnt);
  await pool.datasets.create('benchmnt/fs');
  const fs = await pool.datasets.open('benchmnt/fs');
  const mount: FuseMount = await mountFilesystem(fs, mnt, { onSync: () => pool.sync(), name: 'benchmnt/fs' });
  let unmounted = false;
  const unmount = async (): Promise<void> => {
    if (unmounted) return;
    unmounted = true;
    try {
      await mount.unmount();
    } catch {
      await mount.abort(); // never leave a mount whose server is gone: its callers would hang
    }
  };
  cleanup.push('cairn mount', unmount);
  return { label: 'cairn', dir: mnt, unmount };
}

/** Mounts a bindfs of a plain directory, or returns null when there is no bindfs. */
async function mountBindfs(inputs: Inputs, mnt: string, cleanup: Cleanup): Promise<Mounted | null> {
  if (!inputs.options.peers) return null;
  if (!(await hasCommand('bindfs'))) {
    console.error('bindfs peer skipped: bindfs not installed (scripts/deps.sh installs it)');
    return null;
  }
  const backing = join(inputs.options.dir, 'bindfs-backing');
  await mkdir(backing);
  await mkdir(mnt);
  await mustRun('bindfs', [backing, mnt]);
  const unmount = async (): Promise<void> => {
    if (!(await isMounted(mnt))) return;
    const r = await runChild('fusermount', ['-u', mnt]);
    if (r.code !== 0) await runChild('fusermount', ['-uz', mnt]);
  };
  cleanup.push('bindfs mount', unmount);
  return { label: 'bindfs', dir: mnt, unmount };
}

/** A scratch copy of zfs-fuse.sh with zfs-fuse-workload.sh beside it as its fs-workload.sh (it cleans up after itself). */
async function zfsFusePeer(inputs: Inputs): Promise<{ scratch: string } | null> {
  if (!inputs.options.peers) return null;
  const peer = join(here, '../../shared/peers/zfs-fuse.sh');
  if (!existsSync(peer)) {
    console.error(`zfs-fuse peer skipped: ${peer} not found`);
    return null;
  }
  if (inputs.options.sizeMb > PEER_MB_MAX) {
    console.error(`zfs-fuse peer skipped: BENCH_MB ${inputs.options.sizeMb} > ${PEER_MB_MAX} does not fit its 4 GiB device`);
    return null;
  }
  const scratch = await mkdtemp(join(inputs.options.dir, 'zfs-fuse-'));
  copyFileSync(peer, join(scratch, 'zfs-fuse.sh'));
  copyFileSync(join(here, 'zfs-fuse-workload.sh'), join(scratch, 'fs-workload.sh'));
  chmodSync(join(scratch, 'zfs-fuse.sh'), 0o755);
  chmodSync(join(scratch, 'fs-workload.sh'), 0o755);
  return { scratch };
}

/** nbdcopy in (with --flush: durable, as conv=fsync above) and out (after dropping caches), checked with cmp. */
async function nbdCopies(inputs: Inputs, uri: string, label: string): Promise<Figures> {
  const out = join(inputs.options.dir, `nbd-out-${label}.bin`);
  try {
    await dropCaches();
    const inS = await secondsOf(() => mustRun('nbdcopy', ['--flush', inputs.nbdRandomFile, uri]));
    await dropCaches();
    const outS = await secondsOf(() => mustRun('nbdcopy', [uri, out]));
    await mustRun('cmp', [inputs.nbdRandomFile, out]);
    return { nbdInMiBps: inputs.options.nbdMb / inS, nbdOutMiBps: inputs.options.nbdMb / outS };
  } finally {
    await rm(out, { force: true });
  }
}

async function cairnNbd(inputs: Inputs, pool: PoolHandle, cleanup: Cleanup): Promise<Figures> {
  await pool.datasets.create('benchmnt/vol', { volsizeBytes: inputs.options.nbdMb * MiB, sparse: true });
  const volume = await pool.datasets.openVolume('benchmnt/vol');
  // the adapter `cairn nbd export` serves volumes with
  const server = new NbdServer({ exports: new Map([['vol', new VolumeExport('vol', 'benchmnt/vol', '127.0.0.1', volume, false)]]) });
  const address = await server.listen({ host: '127.0.0.1', port: 0 });
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    await server.close();
  };
  cleanup.push('nbd server', close);
  try {
    if (!('port' in address)) throw new Error('NBD server is not on TCP');
    return await nbdCopies(inputs, `nbd://127.0.0.1:${address.port}/vol`, 'cairn');
  } finally {
    await close();
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function nbdkitFile(inputs: Inputs, cleanup: Cleanup): Promise<Figures | null> {
  if (!(await hasCommand('nbdkit')) || !(await hasCommand('nbdcopy'))) {
    console.error('NBD rows skipped: nbdkit or nbdcopy missing (scripts/deps.sh installs them)');
    return null;
  }
  const file = join(inputs.options.dir, 'nbdkit.img');
  await rm(file, { force: true });
  await writeFileBytes(file, inputs.options.nbdMb * MiB);
  const port = await freePort();
  const child = spawn('nbdkit', ['-f', '-i', '127.0.0.1', '-p', String(port), 'file', `file=${file}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < OUTPUT_MAX_BYTES) stderr += chunk.toString('utf8');
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
    await rm(file, { force: true });
  };
  cleanup.push('nbdkit', stop);
  try {
    for (let i = 0; !(await canConnect(port)); i++) {
      if (i >= 100 || child.exitCode !== null) throw new Error(`nbdkit did not start: ${stderr.trim()}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return await nbdCopies(inputs, `nbd://127.0.0.1:${port}/`, 'nbdkit');
  } finally {
    await stop();
  }
}

async function writeFileBytes(path: string, sizeBytes: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  writeFileSync(path, '');
  await truncate(path, sizeBytes);
}

interface Row {
  label: string;
  figure: string;
  unit: string;
  higherIsBetter: boolean;
  /** Targets the issue sets: ≥ zfs-fuse (every mount row), ≥ 50% of the passthrough (sequential I/O). */
  bindfsTarget: number | null;
}

const MOUNT_ROWS: Row[] = [
  { label: 'sequential write (dd bs=1M, conv=fsync)', figure: 'seqWriteMiBps', unit: 'MiB/s', higherIsBetter: true, bindfsTarget: 0.5 },
  { label: 'sequential read, cold (dd bs=1M)', figure: 'seqReadMiBps', unit: 'MiB/s', higherIsBetter: true, bindfsTarget: 0.5 },
  { label: '4 KiB random write (fio psync)', figure: 'randWriteIops', unit: 'IOPS', higherIsBetter: true, bindfsTarget: null },
  { label: '4 KiB random read (fio psync)', figure: 'randReadIops', unit: 'IOPS', higherIsBetter: true, bindfsTarget: null },
  { label: 'create 4 KiB files', figure: 'createPerS', unit: 'files/s', higherIsBetter: true, bindfsTarget: null },
  { label: 'stat, cold', figure: 'statPerS', unit: 'files/s', higherIsBetter: true, bindfsTarget: null },
  { label: '`ls -l` of the directory, cold', figure: 'lsColdS', unit: 's', higherIsBetter: false, bindfsTarget: null },
  { label: '`ls -l` of the directory, warm', figure: 'lsWarmS', unit: 's', higherIsBetter: false, bindfsTarget: null },
  { label: 'delete', figure: 'deletePerS', unit: 'files/s', higherIsBetter: true, bindfsTarget: null },
  { label: 'untar of the tree + sync', figure: 'untarS', unit: 's', higherIsBetter: false, bindfsTarget: null },
  { label: '`rm -rf` of the tree + sync', figure: 'rmTreeS', unit: 's', higherIsBetter: false, bindfsTarget: null },
];

function fmt(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '';
  return value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(3).replace(/\.?0+$/, '') || '0';
}

/** Cairn's throughput relative to the peer's: above 1 is Cairn faster, for rates and for times alike. */
function throughputRatio(row: Row, cairn: number | undefined, peer: number | undefined): number | undefined {
  if (cairn === undefined || peer === undefined || cairn <= 0 || peer <= 0) return undefined;
  return row.higherIsBetter ? cairn / peer : peer / cairn;
}

function fmtRatio(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? '' : value.toFixed(2);
}

function verdict(ratio: number | undefined, needed: number): string {
  if (ratio === undefined) return 'n/a';
  return ratio >= needed ? 'met' : 'NOT met';
}

export function mountTable(options: MountBenchOptions, cairn: Figures, zfs: Figures | null, bindfs: Figures | null, nbd: { cairn: Figures; nbdkit: Figures } | null): string[] {
  const rows = [
    `Mounts: ${options.sizeMb} MiB sequential, fio ${options.fioSeconds} s per pattern, ${options.filesCount} small files, untar of ${options.treeFiles} files; each figure the median of ${options.rounds} rounds, the mounts taking turns.`,
    'Ratios are throughput ratios (for time rows: peer time / Cairn time), so above 1 is Cairn faster.',
    'Targets (issue 4): Cairn / zfs-fuse ≥ 1 on every row; Cairn / bindfs ≥ 0.5 on sequential I/O.',
    '',
    '| row | unit | Cairn | zfs-fuse | bindfs | Cairn / zfs-fuse | Cairn / bindfs | ≥ zfs-fuse | ≥ 50% bindfs |',
    '|---|---|---|---|---|---|---|---|---|',
  ];
  for (const row of MOUNT_ROWS) {
    const c = cairn[row.figure];
    const z = zfs?.[row.figure];
    const b = bindfs?.[row.figure];
    const rz = throughputRatio(row, c, z);
    const rb = throughputRatio(row, c, b);
    const bindfsVerdict = row.bindfsTarget === null ? '' : verdict(rb, row.bindfsTarget);
    rows.push(`| ${row.label} | ${row.unit} | ${fmt(c)} | ${fmt(z)} | ${fmt(b)} | ${fmtRatio(rz)} | ${fmtRatio(rb)} | ${verdict(rz, 1)} | ${bindfsVerdict} |`);
  }
  if (nbd) {
    rows.push('');
    rows.push(`NBD: nbdcopy of ${options.nbdMb} MiB of random data, Cairn volume (NbdServer) against \`nbdkit file\` (no target set in the issue).`);
    rows.push('');
    rows.push('| row | unit | Cairn | nbdkit file | Cairn / nbdkit |');
    rows.push('|---|---|---|---|---|');
    for (const [label, figure] of [['nbdcopy in (--flush)', 'nbdInMiBps'], ['nbdcopy out, cold', 'nbdOutMiBps']] as const) {
      const c = nbd.cairn[figure];
      const k = nbd.nbdkit[figure];
      rows.push(`| ${label} | MiB/s | ${fmt(c)} | ${fmt(k)} | ${c !== undefined && k !== undefined ? fmtRatio(c / k) : ''} |`);
    }
  }
  return rows;
}

export function mountOptionsFromEnv(dir: string): MountBenchOptions {
  const sizeMb = Number(process.env['BENCH_MB'] ?? 2048);
  return {
    dir,
    sizeMb,
    nbdMb: Math.min(sizeMb, 1024),
    filesCount: Number(process.env['BENCH_MOUNT_FILES'] ?? 10_000),
    treeFiles: Number(process.env['BENCH_TREE_FILES'] ?? 20_000),
    fioSeconds: Number(process.env['BENCH_FIO_SECONDS'] ?? 20),
    rounds: Number(process.env['BENCH_ROUNDS'] ?? 3),
    peers: process.env['BENCH_PEERS'] !== '0',
  };
}

/**
 * Runs every side and prints the tables; returns their rows (empty when FUSE mounts cannot be made here).
 * `options.dir` must exist; what is made in it is removed, also when a step fails or on SIGINT/SIGTERM.
 */
export async function runMountBench(options: MountBenchOptions): Promise<string[]> {
  console.log(`\n# Mounts and NBD: ${options.sizeMb} MiB, ${new Date().toISOString()}, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const available = fuseAvailable();
  if (!available.ok) {
    console.error(`mount benchmark skipped: ${available.reason}`);
    return [];
  }
  const scratch = await mkdtemp(join(options.dir, 'cairn-mount-bench-'));
  const scoped = { ...options, dir: scratch };
  const cleanup = new Cleanup();
  // A signal ends the running child; the step fails and the finally below cleans up, as on any failure.
  let interrupted: NodeJS.Signals | null = null;
  const onSignal = (signal: NodeJS.Signals): void => {
    console.error(`mount benchmark: ${signal}, stopping and cleaning up`);
    interrupted = signal;
    void stopChildren();
  };
  const checkInterrupted = (): void => {
    if (interrupted !== null) throw new Error(`mount benchmark interrupted by ${interrupted}`);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const inputs = await makeInputs(scoped);
    checkInterrupted();
    const pool = await openCairnPool(inputs, cleanup);
    const mounts = [await mountCairn(join(scratch, 'cairn-mnt'), pool, cleanup)];
    const bindfsMount = await mountBindfs(inputs, join(scratch, 'bindfs-mnt'), cleanup);
    if (bindfsMount) mounts.push(bindfsMount);
    checkInterrupted();
    let samples: Samples;
    try {
      samples = await runWorkloads(inputs, mounts, checkInterrupted);
    } finally {
      for (const mount of mounts) await mount.unmount();
    }
    for (const [label, figures] of samples) console.log(`${label}: ${JSON.stringify(figures)}`);
    const cairn = medians(samples.get('cairn'));
    if (!cairn) throw new Error('the workload printed no figures for cairn');
    const bindfs = medians(samples.get('bindfs'));
    const zfs = medians(samples.get('zfs-fuse'));
    checkInterrupted();
    let nbd: { cairn: Figures; nbdkit: Figures } | null = null;
    const nbdkit = await nbdkitFile(inputs, cleanup);
    checkInterrupted();
    if (nbdkit) {
      console.log(`nbdkit: ${JSON.stringify(nbdkit)}`);
      const cairnNbdFigures = await cairnNbd(inputs, pool, cleanup);
      checkInterrupted();
      console.log(`cairn nbd: ${JSON.stringify(cairnNbdFigures)}`);
      nbd = { cairn: cairnNbdFigures, nbdkit };
    }
    const rows = mountTable(options, cairn, zfs, bindfs, nbd);
    console.log('\n' + rows.join('\n'));
    return rows;
  } finally {
    await cleanup.runAll();
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    // Never recurse into a directory that is still a mount point: it would delete through the mount.
    const leftover = (await readFile('/proc/self/mounts', 'utf8')).split('\n').filter((line) => line.split(' ')[1]?.startsWith(scratch + '/'));
    if (leftover.length > 0) console.error(`mount benchmark: still mounted, ${scratch} left in place: ${leftover.join('; ')}`);
    else await rm(scratch, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const base = process.env['BENCH_DIR'] ?? '/tmp';
  await mkdir(base, { recursive: true });
  await runMountBench(mountOptionsFromEnv(base));
}
