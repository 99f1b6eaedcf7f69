/**
 * npm run bench: throughput of the pool against the raw disk measured in the same run, as ratios.
 *
 *   raw        dd of BENCH_MB to a file on the same filesystem (conv=fsync), then a cold read
 *   library    the same bytes written through the library into a pool's root filesystem (1 MiB writes,
 *              then pool sync), cold read back, scrub — on a single device, a mirror and a raidz2
 *   rss        peak RSS of a separate process writing BENCH_RSS_MB with a 256 MiB cache
 *   zfs-fuse   the shared peer workload (../shared/peers/zfs-fuse.sh) when zfs-fuse can be installed
 *   datasets   snapshot / clone / rollback / destroy and small-file creates, against zfs-fuse (datasets.ts)
 *   mounts     the same workloads through a Cairn FUSE mount, zfs-fuse and bindfs; nbdcopy against nbdkit (mount.ts)
 *
 * Environment: BENCH_MB (default 2048), BENCH_RSS_MB (default 4096), BENCH_DIR (default a dir under
 * /var/tmp), BENCH_PEERS=0 to skip zfs-fuse, BENCH_DS_FILES and BENCH_DS_MB size the dataset part,
 * BENCH_MOUNT_FILES, BENCH_TREE_FILES and BENCH_FIO_SECONDS the mount part (BENCH_PEERS=0 also skips bindfs).
 * Results go to stdout as Markdown tables.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPool, importPool } from '../src/pool/index.js';
import type { PoolHandle } from '../src/pool/index.js';
import { datasetOptionsFromEnv, runDatasetBench } from './datasets.js';
import { mountOptionsFromEnv, runMountBench } from './mount.js';

const MiB = 1024 * 1024;
const totalMb = Number(process.env['BENCH_MB'] ?? 2048);
const rssMb = Number(process.env['BENCH_RSS_MB'] ?? 4096);
const benchDir = process.env['BENCH_DIR'] ?? '/var/tmp/cairn-bench';
const here = dirname(fileURLToPath(import.meta.url));

function dropCaches(): void {
  spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], { stdio: 'ignore' });
}

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function secondsAsync(fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function rawDisk(dir: string): { writeMBps: number; readMBps: number } {
  const file = join(dir, 'raw.bin');
  const seed = join(dir, 'seed.bin');
  execFileSync('dd', ['if=/dev/urandom', `of=${seed}`, 'bs=1M', 'count=64', 'status=none']);
  const w = seconds(() => execFileSync('sh', ['-c', `for i in $(seq ${totalMb / 64}); do cat ${seed}; done | dd of=${file} bs=1M iflag=fullblock conv=fsync status=none`]));
  dropCaches();
  const r = seconds(() => execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'status=none']));
  // O_DIRECT bypasses the guest page cache, which drop_caches does not always empty on a VM.
  const rDirect = seconds(() => execFileSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=1M', 'iflag=direct', 'status=none']));
  execFileSync('rm', ['-f', file, seed]);
  return { writeMBps: totalMb / w, readMBps: Math.min(totalMb / r, totalMb / rDirect) };
}

/** cairn cp in and cairn cat out through the daemon, timed as a user would see them. */
function cliRun(dir: string): { cpMBps: number; catMBps: number } {
  const home = join(dir, 'home');
  const env = { ...process.env, CAIRN_HOME: home };
  const cairn = (...args: string[]): string => execFileSync(process.execPath, [join(here, '../bin/cairn.js'), ...args], { env, encoding: 'utf8', maxBuffer: 1 << 20 });
  const src = join(dir, 'cli-src.bin');
  execFileSync('dd', ['if=/dev/urandom', `of=${src}`, 'bs=1M', `count=${totalMb}`, 'status=none']);
  try {
    cairn('pool', 'create', '-s', `${Math.ceil(totalMb * 1.5) + 512}M`, 'benchcli', join(dir, 'cli.img'));
    const cp = seconds(() => {
      cairn('cp', src, 'benchcli:/big');
      cairn('pool', 'sync', 'benchcli');
    });
    cairn('pool', 'export', 'benchcli');
    dropCaches();
    cairn('pool', 'import', '-d', dir, 'benchcli');
    const cat = seconds(() => execFileSync('sh', ['-c', `node ${join(here, '../bin/cairn.js')} cat benchcli:/big > ${join(dir, 'cli-out.bin')}`], { env }));
    execFileSync('cmp', [src, join(dir, 'cli-out.bin')]);
    cairn('pool', 'destroy', 'benchcli');
    return { cpMBps: totalMb / cp, catMBps: totalMb / cat };
  } finally {
    spawnSync(process.execPath, [join(here, '../bin/cairn.js'), 'daemon', 'stop'], { env, stdio: 'ignore' });
    execFileSync('rm', ['-f', src, join(dir, 'cli-out.bin'), join(dir, 'cli.img')]);
  }
}

async function poolRun(dir: string, layout: string[], label: string): Promise<Record<string, number>> {
  const devices = layout.filter((t) => t.includes('/'));
  const pool: PoolHandle = await createPool({ name: `bench${label}`, vdevSpec: layout, createSizeBytes: Math.ceil((totalMb * 2.5) / Math.max(1, devices.length - 2)) * MiB + 512 * MiB });
  const chunk = randomBytes(MiB);
  const st = await pool.fs.create(pool.fs.rootIno, 'big', { mode: 0o644 });
  const w = await secondsAsync(async () => {
    for (let i = 0; i < totalMb; i++) {
      chunk.writeUInt32LE(i, 0); // every MiB differs
      await pool.fs.write(st.ino, i * MiB, chunk);
    }
    await pool.sync();
  });
  await pool.export();
  dropCaches();
  const again = await importPool({ searchPaths: devices });
  const ino = (await again.fs.lookup(again.fs.rootIno, 'big')).ino;
  // A streaming reader reuses one buffer (fs.readInto), as cat or a FUSE read does.
  const buffer = Buffer.allocUnsafe(MiB);
  const r = await secondsAsync(async () => {
    for (let i = 0; i < totalMb; i++) {
      await again.fs.readInto(ino, i * MiB, buffer);
      if (buffer.readUInt32LE(0) !== i) throw new Error(`bench read back wrong data at MiB ${i}`);
    }
  });
  dropCaches();
  const s = await secondsAsync(() => again.scrub({ wait: true }));
  const allocatedMb = again.status().space.allocatedBytes / MiB;
  await again.destroy();
  for (const d of devices) await rm(d, { force: true });
  return { writeMBps: totalMb / w, readMBps: totalMb / r, scrubMBps: allocatedMb / s, scrubAllocatedMb: allocatedMb };
}

function peakRss(dir: string): number {
  const script = `
    import { createPool } from '${join(here, '../src/pool/index.ts')}';
    import { randomBytes } from 'node:crypto';
    const MiB = 1024 * 1024;
    const pool = await createPool({ name: 'rss', vdevSpec: ['${join(dir, 'rss.img')}'], createSizeBytes: ${rssMb + 1024} * MiB, cacheSizeBytes: 256 * MiB });
    const st = await pool.fs.create(pool.fs.rootIno, 'f', { mode: 0o644 });
    const chunk = randomBytes(MiB);
    for (let i = 0; i < ${rssMb}; i++) { chunk.writeUInt32LE(i, 0); await pool.fs.write(st.ino, i * MiB, chunk); }
    await pool.sync();
    for (let i = 0; i < ${rssMb}; i += 1) await pool.fs.read(st.ino, i * MiB, MiB);
    await pool.destroy();
    console.log(process.resourceUsage().maxRSS);
  `;
  const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 1 << 20 });
  execFileSync('rm', ['-f', join(dir, 'rss.img')]);
  return Number(out.trim().split('\n').pop()) / 1024;
}

function zfsFusePeer(): Record<string, number> | null {
  if (process.env['BENCH_PEERS'] === '0') return null;
  const script = join(here, '../../shared/peers/zfs-fuse.sh');
  if (!existsSync(script)) return null;
  const res = spawnSync('bash', [script, 'single'], { encoding: 'utf8', env: { ...process.env, WORKLOAD_MB: String(Math.min(totalMb, 1024)), WORKLOAD_FILES: '2000' }, timeout: 900_000 });
  if (res.status !== 0) {
    console.error(`zfs-fuse peer did not run: ${res.stderr.trim().split('\n').pop() ?? ''}`);
    return null;
  }
  const figures: Record<string, number> = {};
  for (const line of res.stdout.split('\n')) {
    const [, figure, value] = line.split(' ');
    if (figure && value) figures[figure] = Number(value);
  }
  return figures;
}

async function main(): Promise<void> {
  await rm(benchDir, { recursive: true, force: true });
  await mkdir(benchDir, { recursive: true });
  console.log(`# Cairn benchmark: ${totalMb} MiB sequential, ${new Date().toISOString()}`);
  const raw = rawDisk(benchDir);
  console.log(`raw disk: write ${raw.writeMBps.toFixed(0)} MB/s, cold read ${raw.readMBps.toFixed(0)} MB/s`);
  const layouts: [string, string[]][] = [
    ['single', [join(benchDir, 's1.img')]],
    ['mirror', ['mirror', join(benchDir, 'm1.img'), join(benchDir, 'm2.img')]],
    ['raidz2', ['raidz2', ...[1, 2, 3, 4, 5, 6].map((i) => join(benchDir, `z${i}.img`))]],
  ];
  const rows: string[] = [];
  rows.push('| layout | write MB/s | write / raw | read MB/s | read / raw | scrub MB/s | scrub / raw read |');
  rows.push('|---|---|---|---|---|---|---|');
  let single: Record<string, number> | null = null;
  for (const [label, layout] of layouts) {
    const r = await poolRun(benchDir, layout, label);
    if (label === 'single') single = r;
    rows.push(`| library ${label} | ${r['writeMBps']?.toFixed(0)} | ${((r['writeMBps'] ?? 0) / raw.writeMBps).toFixed(2)} | ${r['readMBps']?.toFixed(0)} | ${((r['readMBps'] ?? 0) / raw.readMBps).toFixed(2)} | ${r['scrubMBps']?.toFixed(0)} | ${((r['scrubMBps'] ?? 0) / raw.readMBps).toFixed(2)} |`);
    console.log(rows[rows.length - 1]);
  }
  const cli = cliRun(benchDir);
  rows.push(`| cairn cp / cat, single | ${cli.cpMBps.toFixed(0)} | ${(cli.cpMBps / raw.writeMBps).toFixed(2)} | ${cli.catMBps.toFixed(0)} | ${(cli.catMBps / raw.readMBps).toFixed(2)} | | |`);
  console.log(rows[rows.length - 1]);
  const rss = peakRss(benchDir);
  const peer = zfsFusePeer();
  console.log('\n' + rows.join('\n'));
  console.log(`\npeak RSS writing and reading ${rssMb} MiB with a 256 MiB cache: ${rss.toFixed(0)} MiB`);
  if (peer && single) {
    const pw = peer['seq_write_MBps'] ?? 0;
    const pr = peer['seq_read_MBps'] ?? 0;
    console.log(`zfs-fuse (single device, fs-workload ${Math.min(totalMb, 1024)} MiB): write ${pw} MB/s, cold read ${pr} MB/s`);
    console.log(`cairn library single / zfs-fuse: write ${((single['writeMBps'] ?? 0) / pw).toFixed(2)}, read ${((single['readMBps'] ?? 0) / pr).toFixed(2)}`);
  }
  await runDatasetBench(datasetOptionsFromEnv(benchDir));
  await runMountBench(mountOptionsFromEnv(benchDir));
  await rm(benchDir, { recursive: true, force: true });
}

await main();
