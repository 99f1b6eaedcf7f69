/**
 * Dataset benchmarks: is a snapshot, clone or rollback O(1) in the size of the dataset, what does
 * destroying a snapshot cost and give back, and how fast are small files created — against zfs-fuse
 * doing the same work in the same run.
 *
 *   small / big   two datasets: one with 1 file of 4 KiB; one with BENCH_DS_FILES files of 4 KiB (random
 *                 bytes, one directory, create + one 4 KiB write each) plus one file of BENCH_DS_MB MiB.
 *                 On each: snapshot, clone of that snapshot, and rollback to it after writing one 4 KiB
 *                 file, each timed REPEATS times after a pool sync (the median is printed). big/small
 *                 near 1 is the claim: the work does not grow with the dataset.
 *   destroy       a dataset gets BENCH_DS_MB MiB, is snapshotted, the file is unlinked (so the snapshot
 *                 alone holds it), then the snapshot is destroyed: time, bytes the destroy reports and
 *                 bytes the pool's allocation drops once deferred frees have passed.
 *   creates       the BENCH_DS_FILES creates above: files/s including the pool sync that ends them.
 *   zfs-fuse      the same workload with `zfs` commands and a node loop through the mount, run by a copy of
 *                 ../shared/peers/zfs-fuse.sh (its pool setup and cleanup, unchanged) whose neighbouring
 *                 fs-workload.sh is this file's DATASET_WORKLOAD. Its latencies include the `zfs`
 *                 process (a few ms), as a user of zfs-fuse sees them; Cairn's are library calls.
 *
 * Environment: BENCH_DS_FILES (default 100000), BENCH_DS_MB (default min(BENCH_MB, 1024)), BENCH_PEERS=0
 * skips zfs-fuse; the peer is also skipped when BENCH_DS_MB exceeds what its 4 GiB device holds.
 * Alone: `node --import tsx bench/datasets.ts` (pool under BENCH_DIR, default /var/tmp).
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPool } from '../src/pool/index.js';
import type { PoolHandle } from '../src/pool/index.js';
import type { FileSystemApi } from '../src/fs/types.js';

const MiB = 1024 * 1024;
const SMALL_FILE_BYTES = 4096;
const REPEATS = 7;
/** zfs-fuse.sh makes 4 GiB devices: the big dataset and the destroy test must both fit, with room. */
const PEER_DS_MB_MAX = 1024;
const here = dirname(fileURLToPath(import.meta.url));

export interface DatasetBenchOptions {
  /** A directory on the disk under test; the pool's device file goes there and is removed. */
  dir: string;
  filesCount: number;
  bigMb: number;
  peers: boolean;
}

/** Latencies in ms (medians of REPEATS), sizes in bytes, rates per second. */
type Figures = Record<string, number>;

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const t0 = nowMs();
  await fn();
  return nowMs() - t0;
}

/** Deferred frees come back after a few txgs; this lets them pass so allocation can be read. */
async function settle(pool: PoolHandle): Promise<void> {
  for (let i = 0; i < 4; i++) {
    await pool.logHistory('bench settle');
    await pool.sync();
  }
}

async function createSmallFiles(fs: FileSystemApi, dirIno: number, count: number, prefix: string, data: Buffer): Promise<void> {
  for (let i = 0; i < count; i++) {
    const st = await fs.create(dirIno, `${prefix}${i}`, { mode: 0o644 });
    await fs.write(st.ino, 0, data);
  }
}

async function writeBigFile(fs: FileSystemApi, name: string, sizeMb: number): Promise<void> {
  const chunk = randomBytes(MiB);
  const st = await fs.create(fs.rootIno, name, { mode: 0o644 });
  for (let i = 0; i < sizeMb; i++) {
    chunk.writeUInt32LE(i, 0); // every MiB differs, and random data does not compress
    await fs.write(st.ino, i * MiB, chunk);
  }
}

/** Device operations (reads + writes) and milliseconds of one call. */
async function measured(pool: PoolHandle, fn: () => Promise<unknown>): Promise<{ ms: number; ops: number }> {
  const before = pool.iostat();
  const ms = await timedMs(fn);
  const after = pool.iostat();
  return { ms, ops: after.readOps + after.writeOps - before.readOps - before.writeOps };
}

/**
 * Snapshot, clone and rollback, REPEATS times each after a sync, alternating the datasets so that
 * warm-up and the machine's noise fall on both alike. Figures: `${key}${Op}Ms` and `${key}${Op}Ops`.
 */
async function latencies(pool: PoolHandle, datasets: Array<[key: string, name: string]>, data: Buffer): Promise<Figures> {
  const samples = new Map<string, number[]>();
  const record = (figure: string, m: { ms: number; ops: number }): void => {
    samples.set(`${figure}Ms`, [...(samples.get(`${figure}Ms`) ?? []), m.ms]);
    samples.set(`${figure}Ops`, [...(samples.get(`${figure}Ops`) ?? []), m.ops]);
  };
  const last = (name: string): string => `${name}@s${REPEATS - 1}`;
  for (let r = 0; r < REPEATS; r++) {
    for (const [key, name] of datasets) {
      await pool.sync();
      record(`${key}Snapshot`, await measured(pool, () => pool.datasets.snapshot(`${name}@s${r}`)));
    }
  }
  for (let r = 0; r < REPEATS; r++) {
    for (const [key, name] of datasets) {
      await pool.sync();
      record(`${key}Clone`, await measured(pool, () => pool.datasets.clone(last(name), `${name}-clone${r}`)));
    }
  }
  for (let r = 0; r < REPEATS; r++) {
    for (const [key, name] of datasets) {
      // A fixed change since the snapshot: rollback frees what was written since, not the dataset.
      const fs = await pool.datasets.open(name); // a rollback ends the handles opened before it
      await createSmallFiles(fs, fs.rootIno, 1, `since${r}-`, data);
      await pool.sync();
      record(`${key}Rollback`, await measured(pool, () => pool.datasets.rollback(last(name))));
    }
  }
  const figures: Figures = {};
  for (const [figure, values] of samples) figures[figure] = median(values);
  return figures;
}

export async function cairnDatasets(options: DatasetBenchOptions): Promise<Figures> {
  const device = join(options.dir, 'ds.img');
  const sizeBytes = (2 * options.bigMb + 1024) * MiB + options.filesCount * 16 * 1024;
  const pool = await createPool({ name: 'benchds', vdevSpec: [device], createSizeBytes: sizeBytes });
  try {
    const data = randomBytes(SMALL_FILE_BYTES);
    await pool.datasets.create('benchds/small');
    await pool.datasets.create('benchds/big');
    const small = await pool.datasets.open('benchds/small');
    await createSmallFiles(small, small.rootIno, 1, 'f', data);
    const big = await pool.datasets.open('benchds/big');
    await pool.sync();
    const createMs = await timedMs(async () => {
      await createSmallFiles(big, big.rootIno, options.filesCount, 'f', data);
      await pool.sync();
    });
    await writeBigFile(big, 'big', options.bigMb);
    await pool.sync();
    const latency = await latencies(pool, [['small', 'benchds/small'], ['big', 'benchds/big']], data);

    await pool.datasets.create('benchds/uniq');
    const uniq = await pool.datasets.open('benchds/uniq');
    await writeBigFile(uniq, 'big', options.bigMb);
    await pool.sync();
    await pool.datasets.snapshot('benchds/uniq@u');
    await uniq.unlink(uniq.rootIno, 'big');
    await settle(pool);
    const allocatedBefore = pool.status().space.allocatedBytes;
    let reclaimBytes = 0;
    const destroyMs = await timedMs(async () => {
      reclaimBytes = (await pool.datasets.destroyWith('benchds/uniq@u')).reclaimBytes;
    });
    await settle(pool);
    const freedBytes = allocatedBefore - pool.status().space.allocatedBytes;
    return {
      createPerS: options.filesCount / (createMs / 1000),
      ...latency,
      destroyMs, destroyReportedBytes: reclaimBytes, destroyFreedBytes: freedBytes,
    };
  } finally {
    await pool.destroy();
    await rm(device, { force: true });
  }
}

/**
 * The zfs-fuse side, run by zfs-fuse.sh as its "fs-workload.sh DIR LABEL" on the pool's mount. Prints
 * "LABEL FIGURE VALUE" lines in the units of cairnDatasets' figures. Same shape: datasets small and big,
 * 4 KiB random files created one by one (open, write, close) in one directory, REPEATS timed commands.
 */
const DATASET_WORKLOAD = String.raw`#!/usr/bin/env bash
set -eu
mnt=$1; label=$2; files=$DS_FILES; mb=$DS_MB; repeats=$DS_REPEATS
pool=$(zfs list -H -o name,mountpoint | awk -v m="$mnt" '$2 == m { print $1; exit }')
[ -n "$pool" ] || { echo "no pool mounted at $mnt" >&2; exit 1; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000 )) | awk '{ printf "%.3f", $1 / 1000 }'; }
bytes() { zfs get -H -p -o value "$1" "$2"; }
small_files() { # DIR COUNT PREFIX: COUNT files of 4 KiB, open/write/close each
  node -e '
    const fs = require("node:fs"); const [dir, n, prefix] = process.argv.slice(1);
    const data = require("node:crypto").randomBytes(4096);
    for (let i = 0; i < Number(n); i++) { const fd = fs.openSync(dir + "/" + prefix + i, "w", 0o644); fs.writeSync(fd, data); fs.closeSync(fd); }
  ' "$1" "$2" "$3"
}
big_file() { # PATH: mb MiB from a 64 MiB random seed, as fs-workload.sh writes
  dd if=/dev/urandom of="$mnt/seed" bs=1M count=64 status=none
  for i in $(seq $(( (mb + 63) / 64 ))); do cat "$mnt/seed"; done | dd of="$1" bs=1M count=$mb iflag=fullblock conv=fsync status=none
  rm -f "$mnt/seed"
}
latencies() { # alternating small and big, as the Cairn side does
  local r k t0 t1
  for r in $(seq 0 $((repeats - 1))); do for k in small big; do
    sync; t0=$(now); zfs snapshot "$pool/$k@s$r"; t1=$(now); printf '%s %sSnapshotMs %s\n' "$label" "$k" "$(ms $t0 $t1)"
  done; done
  for r in $(seq 0 $((repeats - 1))); do for k in small big; do
    sync; t0=$(now); zfs clone "$pool/$k@s$((repeats - 1))" "$pool/$k-clone$r"; t1=$(now); printf '%s %sCloneMs %s\n' "$label" "$k" "$(ms $t0 $t1)"
  done; done
  for r in $(seq 0 $((repeats - 1))); do for k in small big; do
    small_files "$mnt/$k" 1 "since$r-"; sync
    t0=$(now); zfs rollback "$pool/$k@s$((repeats - 1))"; t1=$(now); printf '%s %sRollbackMs %s\n' "$label" "$k" "$(ms $t0 $t1)"
  done; done
}
zfs create "$pool/small"; zfs create "$pool/big"
small_files "$mnt/small" 1 f; sync
t0=$(now); small_files "$mnt/big" "$files" f; sync; t1=$(now)
echo "$label createPerS $(echo "$files $t0 $t1" | awk '{ printf "%.1f", $1 / (($3 - $2) / 1e9) }')"
big_file "$mnt/big/big"
latencies
# Space moves when a txg commits (up to txg_timeout later): poll, up to a minute, until it has.
settled() { local i; for i in $(seq 60); do eval "$1" && return 0; sleep 1; done; echo "space did not settle: $1" >&2; }
zfs create "$pool/uniq"; big_file "$mnt/uniq/big"; zfs snapshot "$pool/uniq@u"; rm "$mnt/uniq/big"; sync
settled '[ $(bytes used "$pool/uniq@u") -ge $(( mb * 1048576 * 9 / 10 )) ]'
before=$(bytes used "$pool"); unique=$(bytes used "$pool/uniq@u")
echo "$label destroyReportedBytes $unique"
t0=$(now); zfs destroy "$pool/uniq@u"; t1=$(now); echo "$label destroyMs $(ms $t0 $t1)"
sync; settled '[ $(( before - $(bytes used "$pool") )) -ge $(( unique * 9 / 10 )) ]'
echo "$label destroyFreedBytes $(( before - $(bytes used "$pool") ))"
`;

export function zfsFuseDatasets(options: DatasetBenchOptions): Figures | null {
  if (!options.peers) return null;
  const peer = join(here, '../../shared/peers/zfs-fuse.sh');
  if (!existsSync(peer)) {
    console.error(`zfs-fuse peer skipped: ${peer} not found`);
    return null;
  }
  if (options.bigMb > PEER_DS_MB_MAX) {
    console.error(`zfs-fuse peer skipped: BENCH_DS_MB ${options.bigMb} > ${PEER_DS_MB_MAX} does not fit its 4 GiB device twice`);
    return null;
  }
  // The peer script runs the fs-workload.sh beside it; a copy beside our workload keeps its setup as is.
  const scratch = mkdtempSync(join(options.dir, 'zfs-fuse-ds-'));
  try {
    copyFileSync(peer, join(scratch, 'zfs-fuse.sh'));
    writeFileSync(join(scratch, 'fs-workload.sh'), DATASET_WORKLOAD);
    chmodSync(join(scratch, 'zfs-fuse.sh'), 0o755);
    chmodSync(join(scratch, 'fs-workload.sh'), 0o755);
    const env = { ...process.env, DS_FILES: String(options.filesCount), DS_MB: String(options.bigMb), DS_REPEATS: String(REPEATS) };
    const res = spawnSync('bash', [join(scratch, 'zfs-fuse.sh'), 'single'], { encoding: 'utf8', env, timeout: 1_800_000 });
    if (res.status !== 0) {
      console.error(`zfs-fuse peer did not run: ${(res.stderr ?? '').trim().split('\n').pop() ?? res.error?.message ?? ''}`);
      return null;
    }
    const samples = new Map<string, number[]>();
    for (const line of res.stdout.split('\n')) {
      const [, figure, value] = line.split(' ');
      if (!figure || value === undefined || !Number.isFinite(Number(value))) continue;
      samples.set(figure, [...(samples.get(figure) ?? []), Number(value)]);
    }
    const figures: Figures = {};
    for (const [figure, values] of samples) figures[figure] = median(values);
    return figures;
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

function fmt(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? '' : value.toFixed(digits);
}

/** Markdown rows: one per figure, Cairn, the big/small ratio, zfs-fuse, Cairn / zfs-fuse. */
export function datasetTable(options: DatasetBenchOptions, cairn: Figures, peer: Figures | null): string[] {
  const rows = [
    `Datasets: small = 1 file of 4 KiB; big = ${options.filesCount} files of 4 KiB + ${options.bigMb} MiB file; median of ${REPEATS}.`,
    'Latencies in ms (Cairn: library call; zfs-fuse: `zfs` command). Cairn / zfs-fuse below 1 is Cairn faster for times, above 1 for files/s.',
    '',
    '| figure | Cairn small | Cairn big | Cairn big / small | zfs-fuse small | zfs-fuse big | zfs-fuse big / small | Cairn / zfs-fuse (big) |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const [label, key] of [['snapshot ms', 'Snapshot'], ['clone ms', 'Clone'], ['rollback ms', 'Rollback']] as const) {
    const cs = cairn[`small${key}Ms`];
    const cb = cairn[`big${key}Ms`];
    const ps = peer?.[`small${key}Ms`];
    const pb = peer?.[`big${key}Ms`];
    const ratio = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '' : fmt(a / b, 2));
    rows.push(`| ${label} | ${fmt(cs, 1)} | ${fmt(cb, 1)} | ${ratio(cb, cs)} | ${fmt(ps, 1)} | ${fmt(pb, 1)} | ${ratio(pb, ps)} | ${ratio(cb, pb)} |`);
  }
  for (const [label, key] of [['snapshot device I/Os', 'Snapshot'], ['clone device I/Os', 'Clone'], ['rollback device I/Os', 'Rollback']] as const) {
    const cs = cairn[`small${key}Ops`];
    const cb = cairn[`big${key}Ops`];
    rows.push(`| ${label} | ${fmt(cs, 0)} | ${fmt(cb, 0)} | ${cs !== undefined && cb !== undefined ? fmt(cb / cs, 2) : ''} | | | | |`);
  }
  rows.push('');
  rows.push(`| figure | Cairn | zfs-fuse | Cairn / zfs-fuse |`);
  rows.push('|---|---|---|---|');
  const pair = (label: string, key: string, scale: number, digits: number): void => {
    const c = cairn[key];
    const p = peer?.[key];
    rows.push(`| ${label} | ${fmt(c === undefined ? c : c / scale, digits)} | ${fmt(p === undefined ? p : p / scale, digits)} | ${c !== undefined && p !== undefined ? fmt(c / p, 2) : ''} |`);
  };
  pair(`${options.filesCount} creates of 4 KiB, files/s (with the final sync)`, 'createPerS', 1, 0);
  pair(`destroy snapshot holding ${options.bigMb} MiB, ms`, 'destroyMs', 1, 1);
  pair('  bytes the destroy reports (Cairn: destroyWith; zfs-fuse: snapshot used), MiB', 'destroyReportedBytes', MiB, 1);
  pair('  pool allocation drop after deferred frees, MiB', 'destroyFreedBytes', MiB, 1);
  return rows;
}

export function datasetOptionsFromEnv(dir: string): DatasetBenchOptions {
  const totalMb = Number(process.env['BENCH_MB'] ?? 2048);
  return {
    dir,
    filesCount: Number(process.env['BENCH_DS_FILES'] ?? 100_000),
    bigMb: Number(process.env['BENCH_DS_MB'] ?? Math.min(totalMb, 1024)),
    peers: process.env['BENCH_PEERS'] !== '0',
  };
}

/** Runs both sides and prints the table; returns its rows. */
export async function runDatasetBench(options: DatasetBenchOptions): Promise<string[]> {
  console.log(`\n# Datasets: ${options.filesCount} small files, ${options.bigMb} MiB, ${new Date().toISOString()}`);
  const cairn = await cairnDatasets(options);
  console.log(`cairn: ${JSON.stringify(cairn)}`);
  const peer = zfsFuseDatasets(options);
  if (peer) console.log(`zfs-fuse: ${JSON.stringify(peer)}`);
  const rows = datasetTable(options, cairn, peer);
  console.log('\n' + rows.join('\n'));
  return rows;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const base = process.env['BENCH_DIR'] ?? '/var/tmp';
  await mkdir(base, { recursive: true });
  const dir = mkdtempSync(join(base, 'cairn-ds-bench-'));
  try {
    await runDatasetBench(datasetOptionsFromEnv(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
