/**
 * Throughput of each checksum and compression on 128 KiB blocks, single core, median of several runs.
 * Run: node --import tsx bench/checksum.ts   (the pool's default checksum is chosen from these numbers)
 */
import { randomBytes } from 'node:crypto';
import { xxh3, xxh64 } from '@node-rs/xxhash';
import { computeChecksum } from '../src/io/checksum.js';
import { compressBlock, decompressBlock } from '../src/io/compress.js';
import { ChecksumType, CompressionType } from '../src/io/types.js';

const BLOCK_SIZE_BYTES = 128 * 1024;
const RUN_MS = 300;
const RUNS = 5;

function textBlock(): Buffer {
  const words = ['pool', 'vdev', 'txg', 'block', 'pointer', 'checksum', 'mirror', 'raidz', 'scrub', 'snapshot', 'clone'];
  let seed = 12345;
  const parts: string[] = [];
  let length = 0;
  while (length < BLOCK_SIZE_BYTES) {
    seed = (seed * 1103515245 + 12345) >>> 0;
    const w = `${words[seed % words.length]!}${seed % 97} `;
    parts.push(w);
    length += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, BLOCK_SIZE_BYTES);
}

/** Median MB/s of fn over RUNS runs of RUN_MS each. */
function measure(fn: () => void): number {
  for (let i = 0; i < 20; i++) fn();
  const rates: number[] = [];
  for (let r = 0; r < RUNS; r++) {
    let blocks = 0;
    const start = process.hrtime.bigint();
    let elapsedNs = 0n;
    while (elapsedNs < BigInt(RUN_MS) * 1_000_000n) {
      for (let i = 0; i < 8; i++) fn();
      blocks += 8;
      elapsedNs = process.hrtime.bigint() - start;
    }
    rates.push((blocks * BLOCK_SIZE_BYTES) / 1e6 / (Number(elapsedNs) / 1e9));
  }
  rates.sort((a, b) => a - b);
  return rates[Math.floor(rates.length / 2)]!;
}

const random = randomBytes(BLOCK_SIZE_BYTES);
const text = textBlock();
const out = Buffer.alloc(32);
const rows: [string, string, string][] = [];

for (const [name, type] of [['fletcher4', ChecksumType.fletcher4], ['sha256', ChecksumType.sha256], ['xxh128', ChecksumType.xxh128]] as const) {
  rows.push([`checksum ${name}`, measure(() => computeChecksum(type, random, out)).toFixed(0), '']);
}
// For comparison only (not stored checksum types): the same library's other entry points.
rows.push(['(xxh64 one-shot, 64-bit)', measure(() => xxh64(random)).toFixed(0), 'not a ChecksumType']);
const xxh3Streaming = xxh3.Xxh3.withSeed(0n);
rows.push(['(xxh3 streaming, 64-bit)', measure(() => { xxh3Streaming.reset(); xxh3Streaming.update(random); xxh3Streaming.digest(); }).toFixed(0), 'not a ChecksumType']);
for (const [name, type, level] of [['lz4', CompressionType.lz4, 3], ['zstd-1', CompressionType.zstd, 1], ['zstd-3', CompressionType.zstd, 3]] as const) {
  const compressed = compressBlock(type, text, level);
  const ratio = compressed === null ? 1 : text.length / compressed.length;
  rows.push([`compress ${name} (text)`, measure(() => compressBlock(type, text, level)).toFixed(0), `ratio ${ratio.toFixed(2)}`]);
  rows.push([`compress ${name} (random)`, measure(() => compressBlock(type, random, level)).toFixed(0), 'stored raw']);
  if (compressed !== null) {
    rows.push([`decompress ${name} (text)`, measure(() => decompressBlock(type, compressed, text.length)).toFixed(0), '']);
  }
}

console.log(`128 KiB blocks, median of ${RUNS} × ${RUN_MS} ms, MB/s (logical bytes)`);
console.log(`${'operation'.padEnd(28)}${'MB/s'.padStart(8)}  note`);
for (const [op, rate, note] of rows) console.log(`${op.padEnd(28)}${rate.padStart(8)}  ${note}`);
