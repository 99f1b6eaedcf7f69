import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { xxh3 } from '@node-rs/xxhash';
import { checksumEquals, computeChecksum, fletcher4Into, fletcher4Reference, parseChecksumName } from './checksum.js';
import { ChecksumType } from './types.js';
import { isCairnError } from '../util/errors.js';
import { prng, Random } from '../testing/random.js';
import { fletcher4Simd, fletcher4SimdAvailable } from './fletcher4-simd.js';


function randomBuffer(rand: () => number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

test('fletcher4 matches the BigInt reference on random lengths and contents', () => {
  const seed = Number(process.env.CAIRN_SEED ?? Date.now() % 1e9);
  const rand = prng(seed);
  for (let round = 0; round < 200; round++) {
    const length = Math.floor(rand() * 3000) * 4;
    const data = randomBuffer(rand, length);
    assert.deepEqual(computeChecksum(ChecksumType.fletcher4, data), fletcher4Reference(data), `seed ${seed} round ${round} length ${length}`);
  }
});

test('fletcher4 matches the reference where every accumulator wraps mod 2^64', () => {
  // All-ones words make a, b, c, d grow fastest: d passes 2^64 after a few thousand words.
  const data = Buffer.alloc(128 * 1024, 0xff);
  assert.deepEqual(computeChecksum(ChecksumType.fletcher4, data), fletcher4Reference(data));
  const d = data.readBigUInt64LE(0); // sanity: the test data really is extreme
  assert.equal(d, 0xffffffffffffffffn);
});

test('fletcher4 on unaligned views and odd lengths equals the reference of the same bytes', () => {
  const backing = randomBuffer(prng(7), 4099);
  for (const [start, end] of [[1, 4097], [3, 4099], [2, 1003], [0, 4098]] as const) {
    const view = backing.subarray(start, end);
    assert.deepEqual(computeChecksum(ChecksumType.fletcher4, view), fletcher4Reference(view), `view ${start}..${end}`);
  }
});

test('fletcher4 known value: words 1..4', () => {
  const data = Buffer.alloc(16);
  for (let i = 0; i < 4; i++) data.writeUInt32LE(i + 1, i * 4);
  const sum = computeChecksum(ChecksumType.fletcher4, data);
  // a = 10, b = 1+3+6+10 = 20, c = 1+4+10+20 = 35, d = 1+5+15+35 = 56
  assert.deepEqual([0, 8, 16, 24].map((o) => sum.readBigUInt64LE(o)), [10n, 20n, 35n, 56n]);
});

test('sha256 and xxh128 agree with their libraries and are zero-padded to 32 bytes', () => {
  const data = randomBuffer(prng(11), 10_000);
  const sha = computeChecksum(ChecksumType.sha256, data);
  assert.deepEqual(sha, createHash('sha256').update(data).digest());
  const xx = computeChecksum(ChecksumType.xxh128, data);
  assert.equal(xx.length, 32);
  const value = xxh3.xxh128(data);
  assert.equal(xx.readBigUInt64LE(0) | (xx.readBigUInt64LE(8) << 64n), value);
  assert.ok(xx.subarray(16).equals(Buffer.alloc(16)));
});

test('every checksum detects a single flipped bit; out buffer is reused', () => {
  const data = randomBuffer(prng(13), 4096);
  const out = Buffer.alloc(32);
  for (const type of [ChecksumType.fletcher4, ChecksumType.sha256, ChecksumType.xxh128]) {
    const good = Buffer.from(computeChecksum(type, data, out));
    assert.equal(computeChecksum(type, data, out), out);
    assert.ok(checksumEquals(out, good));
    data[1234]! ^= 0x10;
    assert.ok(!checksumEquals(computeChecksum(type, data, out), good), `type ${type}`);
    data[1234]! ^= 0x10;
  }
  assert.ok(checksumEquals(computeChecksum(ChecksumType.off, data), Buffer.alloc(32)));
});

test('parseChecksumName', () => {
  assert.equal(parseChecksumName('fletcher4'), ChecksumType.fletcher4);
  assert.equal(parseChecksumName('SHA256'), ChecksumType.sha256);
  assert.equal(parseChecksumName('on'), ChecksumType.xxh128);
  assert.throws(() => parseChecksumName('crc32'), (e) => isCairnError(e, 'EINVAL'));
  assert.throws(() => parseChecksumName('toString'), (e) => isCairnError(e, 'EINVAL'));
});

test('fletcher4: the WebAssembly SIMD version equals the reference and the JavaScript version on random lengths', () => {
  assert.ok(fletcher4SimdAvailable(), 'Node 20 has WebAssembly SIMD');
  const random = new Random(4242);
  for (let i = 0; i < 150; i++) {
    const length = i < 20 ? i : random.int(300_000);
    const data = random.chance(0.2) ? Buffer.alloc(length, 0xff) : random.bytes(length);
    const simd = Buffer.alloc(32);
    const js = Buffer.alloc(32);
    fletcher4Simd(data, simd);
    fletcher4Into(data, js);
    assert.ok(simd.equals(fletcher4Reference(data)), `simd differs from the reference at length ${length}`);
    assert.ok(js.equals(simd), `javascript differs from simd at length ${length}`);
  }
});
