import { createPool } from '../src/pool/index.js';
import { randomBytes } from 'node:crypto';
import { execSync } from 'node:child_process';
const MiB = 1024 * 1024; const N = 64;
const dir = '/var/tmp/cairn-prof2'; execSync(`rm -rf ${dir}; mkdir -p ${dir}`);
const pool = await createPool({ name: 'prof2', vdevSpec: [`${dir}/a.img`], createSizeBytes: 1024 * MiB });
const st = await pool.fs.create(pool.fs.rootIno, 'f', { mode: 0o644 });
const chunk = randomBytes(MiB);
for (let i = 0; i < N; i++) { chunk.writeUInt32LE(i, 0); await pool.fs.write(st.ino, i * MiB, chunk); }
await pool.sync();
for (let i = 0; i < N; i++) await pool.fs.read(st.ino, i * MiB, MiB);
const t = Date.now();
for (let r = 0; r < 10; r++) for (let i = 0; i < N; i++) await pool.fs.read(st.ino, i * MiB, MiB);
console.log('warm read MB/s', (10 * N / ((Date.now() - t) / 1000)).toFixed(0));
await pool.destroy();
