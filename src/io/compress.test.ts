import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { compressBlock, decompressBlock, parseCompressionName, COMPRESSION_HEADER_BYTES } from './compress.js';
import { CompressionType } from './types.js';
import { isCairnError } from '../util/errors.js';

const BLOCK = 128 * 1024;
const textData = Buffer.from('The quick brown fox jumps over the lazy dog; block pointers verify children. '.repeat(2000)).subarray(0, BLOCK);
const samples: Record<string, Buffer> = { random: randomBytes(BLOCK), zeros: Buffer.alloc(BLOCK), text: textData, small: Buffer.from('x') };

test('compress then decompress returns the original for lz4 and zstd, padded like the pipeline pads', () => {
  for (const type of [CompressionType.lz4, CompressionType.zstd]) {
    for (const [name, data] of Object.entries(samples)) {
      const payload = compressBlock(type, data);
      if (payload === null) continue;
      assert.ok(payload.length <= data.length - data.length / 8, `${name}: kept a payload that saves < 1/8`);
      const padded = Buffer.alloc(Math.ceil(payload.length / 4096) * 4096);
      payload.copy(padded);
      assert.ok(decompressBlock(type, padded, data.length).equals(data), `type ${type} ${name}`);
    }
  }
});

test('random data is stored raw; zeros and text compress well', () => {
  for (const type of [CompressionType.lz4, CompressionType.zstd]) {
    assert.equal(compressBlock(type, samples.random!), null);
    assert.equal(compressBlock(type, samples.small!), null);
    assert.ok(compressBlock(type, samples.zeros!)!.length < 1024);
    assert.ok(compressBlock(type, samples.text!)!.length < BLOCK / 4);
  }
  assert.equal(compressBlock(CompressionType.off, samples.zeros!), null);
});

test('zstd level is honoured (higher level no larger on text) and both decode', () => {
  const fast = compressBlock(CompressionType.zstd, textData, 1)!;
  const strong = compressBlock(CompressionType.zstd, textData, 19)!;
  assert.ok(strong.length <= fast.length);
  assert.ok(decompressBlock(CompressionType.zstd, fast, BLOCK).equals(textData));
  assert.ok(decompressBlock(CompressionType.zstd, strong, BLOCK).equals(textData));
});

test('malformed payloads throw CairnError EIO, never garbage or a crash', () => {
  const isEio = (e: unknown): boolean => isCairnError(e, 'EIO');
  for (const type of [CompressionType.lz4, CompressionType.zstd]) {
    const good = compressBlock(type, textData)!;
    // Header claims more than the payload holds.
    const longHeader = Buffer.from(good);
    longHeader.writeUInt32BE(good.length, 0);
    assert.throws(() => decompressBlock(type, longHeader, BLOCK), isEio);
    // Wrong lsize.
    assert.throws(() => decompressBlock(type, good, BLOCK + 4096), isEio);
    assert.throws(() => decompressBlock(type, good, BLOCK - 1), isEio);
    // Random garbage of every kind, with a plausible header.
    for (let i = 0; i < 50; i++) {
      const garbage = randomBytes(200 + i * 37);
      garbage.writeUInt32BE(garbage.length - COMPRESSION_HEADER_BYTES - (i % 7), 0);
      if (type === CompressionType.lz4) garbage.writeUInt32LE(BLOCK, 4);
      assert.throws(() => decompressBlock(type, garbage, BLOCK), isEio);
    }
    // Corrupted stream bytes: either an error, or (if the codec cannot tell) never a wrong-size result.
    for (let i = 0; i < 50; i++) {
      const bad = Buffer.from(good);
      const at = COMPRESSION_HEADER_BYTES + 4 + ((i * 7919) % (bad.length - 8));
      bad[at]! ^= 0xff;
      try {
        const out = decompressBlock(type, bad, BLOCK);
        assert.equal(out.length, BLOCK);
      } catch (e) {
        assert.ok(isEio(e), String(e));
      }
    }
    assert.throws(() => decompressBlock(type, Buffer.alloc(2), BLOCK), isEio);
    assert.throws(() => decompressBlock(type, Buffer.alloc(4096), BLOCK), isEio);
  }
  assert.throws(() => decompressBlock(CompressionType.off, Buffer.alloc(10), 11), isEio);
});

test('parseCompressionName', () => {
  assert.equal(parseCompressionName('zstd'), CompressionType.zstd);
  assert.equal(parseCompressionName('on'), CompressionType.lz4);
  assert.equal(parseCompressionName('off'), CompressionType.off);
  assert.throws(() => parseCompressionName('gzip'), (e) => isCairnError(e, 'EINVAL'));
});
