/** Profiling aid: cold sequential read of a 256 MiB file through the library (node --cpu-prof). */
import { createPool, importPool } from '../src/pool/index.js';
import { randomBytes } from 'node:crypto';
import { execSync } from 'node:child_process';
import { Session } from 'node:inspector/promises';
const MiB = 1024 * 1024; const N = 256;
const dir = '/var/tmp/cairn-prof3'; execSync(`rm -rf ${dir}; mkdir -p ${dir}`);
const pool = await createPool({ name: 'prof3', vdevSpec: [`${dir}/a.img`], createSizeBytes: 1024 * MiB });
const st = await pool.fs.create(pool.fs.rootIno, 'f', { mode: 0o644 });
const chunk = randomBytes(MiB);
for (let i = 0; i < N; i++) { chunk.writeUInt32LE(i, 0); await pool.fs.write(st.ino, i * MiB, chunk); }
await pool.export();
execSync('sync; echo 3 > /proc/sys/vm/drop_caches');
const again = await importPool({ searchPaths: [dir] });
const ino = (await again.fs.lookup(again.fs.rootIno, 'f')).ino;
const session = new Session(); session.connect();
await session.post('Profiler.enable'); await session.post('Profiler.start');
const t = Date.now();
const buffer = Buffer.allocUnsafe(MiB);
for (let i = 0; i < N; i++) await again.fs.readInto(ino, i * MiB, buffer);
console.log('cold read MB/s', (N / ((Date.now() - t) / 1000)).toFixed(0));
const { profile } = await session.post('Profiler.stop');
(await import('node:fs')).writeFileSync('/tmp/prof/cold.cpuprofile', JSON.stringify(profile));
await again.destroy();
