/**
 * Block compression. A compressed payload is a 4-byte big-endian length of the compressed stream
 * followed by the stream, as OpenZFS's lz4 and zstd wrappers do: the pipeline pads a payload with zeros
 * to the sector size, and the length is how decompression finds where the stream ends.
 *
 *   lz4:  stream = lz4-napi compressSync output (u32 LE uncompressed size, then a raw lz4 block).
 *   zstd: stream = one zstd frame.
 *
 * A block is stored compressed only when that saves at least 1/8 of its size (OpenZFS's rule): random
 * data does not compress, and a small saving is not worth the CPU on every read. Decompression treats the
 * payload as untrusted: a malformed payload is a CairnError EIO, never a crash or an oversized buffer.
 */
import { compressSync as lz4CompressSync, uncompressSync as lz4UncompressSync } from 'lz4-napi';
import * as zstdBindingModule from 'zstd-napi/binding.js';
import { CompressionType, type CompressionName } from './types.js';
import { CairnError } from '../util/errors.js';

export const COMPRESSION_HEADER_BYTES = 4;
export const ZSTD_LEVEL_DEFAULT = 3;

type ZstdBinding = typeof zstdBindingModule;
const zstd: ZstdBinding = ((zstdBindingModule as unknown as { default?: ZstdBinding }).default ?? zstdBindingModule);

/** One compression and one decompression context, reused: contexts are expensive to create. */
let zstdCompressContext: InstanceType<ZstdBinding['CCtx']> | undefined;
let zstdCompressLevel = Number.NaN;
let zstdDecompressContext: InstanceType<ZstdBinding['DCtx']> | undefined;
let zstdScratch = Buffer.alloc(0);

/**
 * Compresses data; returns header + stream, or null when the block should be stored raw (compression
 * off, or the result would not save at least 1/8 of data.length).
 */
export function compressBlock(type: CompressionType, data: Buffer, level = ZSTD_LEVEL_DEFAULT): Buffer | null {
  if (data.length === 0) return null;
  const limitBytes = data.length - (data.length >>> 3);
  switch (type) {
    case CompressionType.off:
      return null;
    case CompressionType.lz4:
      if (looksIncompressible(data)) return null;
      return lz4Compress(data, limitBytes);
    case CompressionType.zstd:
      return zstdCompress(data, limitBytes, level);
    default:
      throw new CairnError('EINVAL', `unknown compression type ${String(type)}`);
  }
}

/** Blocks at least this large are probed before lz4 runs over all of them. */
const PROBE_BLOCK_MIN_BYTES = 32 * 1024;
const PROBE_SAMPLE_BYTES = 4096;

/**
 * Early abort: lz4 over incompressible data (media, archives, encrypted files) costs as much as over
 * text and gains nothing. Two 4 KiB samples (start and middle) that each fail to save 1/8 mark the
 * block incompressible; it is then stored raw. A block whose samples are random but whose rest would
 * compress is stored raw too: a little space lost, never data.
 */
function looksIncompressible(data: Buffer): boolean {
  if (data.length < PROBE_BLOCK_MIN_BYTES) return false;
  const limit = PROBE_SAMPLE_BYTES - (PROBE_SAMPLE_BYTES >>> 3);
  for (const at of [0, (data.length >>> 1) & ~(PROBE_SAMPLE_BYTES - 1)]) {
    if (lz4Compress(data.subarray(at, at + PROBE_SAMPLE_BYTES), limit) !== null) return false;
  }
  return true;
}

/**
 * Decompresses a payload written by compressBlock (trailing padding allowed) into exactly lsize bytes.
 * Throws CairnError EIO when the payload is malformed or does not decode to lsize bytes.
 */
export function decompressBlock(type: CompressionType, payload: Buffer, lsize: number): Buffer {
  if (type === CompressionType.off) {
    if (payload.length < lsize) throw malformed(type, `payload ${payload.length} bytes < lsize ${lsize}`);
    return payload.subarray(0, lsize);
  }
  if (payload.length < COMPRESSION_HEADER_BYTES) throw malformed(type, 'payload shorter than its header');
  const streamBytes = payload.readUInt32BE(0);
  if (streamBytes === 0 || streamBytes > payload.length - COMPRESSION_HEADER_BYTES) {
    throw malformed(type, `stream length ${streamBytes} does not fit a ${payload.length}-byte payload`);
  }
  const stream = payload.subarray(COMPRESSION_HEADER_BYTES, COMPRESSION_HEADER_BYTES + streamBytes);
  switch (type) {
    case CompressionType.lz4:
      return lz4Decompress(stream, lsize);
    case CompressionType.zstd:
      return zstdDecompress(stream, lsize);
    default:
      throw malformed(type, 'unknown compression type');
  }
}

/** 'lz4' → CompressionType.lz4; 'on' is the pool default (lz4, as in OpenZFS). */
export function parseCompressionName(name: string): CompressionType {
  const lower = name.toLowerCase();
  if (lower === 'on') return CompressionType.lz4;
  if (Object.hasOwn(CompressionType, lower)) return CompressionType[lower as CompressionName];
  throw new CairnError('EINVAL', `unknown compression '${name}' (expected one of: on, ${Object.keys(CompressionType).join(', ')})`);
}

export function compressionName(type: CompressionType): CompressionName {
  for (const [name, id] of Object.entries(CompressionType)) if (id === type) return name as CompressionName;
  throw new CairnError('EINVAL', `unknown compression type ${String(type)}`);
}

function lz4Compress(data: Buffer, limitBytes: number): Buffer | null {
  const stream = lz4CompressSync(data);
  if (COMPRESSION_HEADER_BYTES + stream.length > limitBytes) return null;
  const out = Buffer.allocUnsafe(COMPRESSION_HEADER_BYTES + stream.length);
  out.writeUInt32BE(stream.length, 0);
  stream.copy(out, COMPRESSION_HEADER_BYTES);
  return out;
}

function lz4Decompress(stream: Buffer, lsize: number): Buffer {
  // The library trusts its size prefix to allocate; check it first so a bad payload cannot ask for GBs.
  if (stream.length < 4 || stream.readUInt32LE(0) !== lsize) {
    throw malformed(CompressionType.lz4, 'stream size prefix does not match lsize');
  }
  let out: Buffer;
  try {
    out = lz4UncompressSync(stream);
  } catch (e) {
    throw malformed(CompressionType.lz4, (e as Error).message);
  }
  if (out.length !== lsize) throw malformed(CompressionType.lz4, `decoded ${out.length} bytes, expected ${lsize}`);
  return out;
}

function zstdCompress(data: Buffer, limitBytes: number, level: number): Buffer | null {
  zstdCompressContext ??= new zstd.CCtx();
  if (level !== zstdCompressLevel) {
    zstdCompressContext.setParameter(zstd.CParameter.compressionLevel, level);
    zstdCompressLevel = level;
  }
  // Compress into a reused scratch sized to the bound (zstd never fails for lack of room), then copy out
  // only what is kept, so a small result does not pin a block-sized allocation.
  const boundBytes = zstd.compressBound(data.length);
  if (zstdScratch.length < boundBytes) zstdScratch = Buffer.allocUnsafe(boundBytes);
  const streamBytes = zstdCompressContext.compress2(zstdScratch.subarray(0, boundBytes), data);
  if (COMPRESSION_HEADER_BYTES + streamBytes > limitBytes) return null;
  const out = Buffer.allocUnsafe(COMPRESSION_HEADER_BYTES + streamBytes);
  out.writeUInt32BE(streamBytes, 0);
  zstdScratch.copy(out, COMPRESSION_HEADER_BYTES, 0, streamBytes);
  return out;
}

function zstdDecompress(stream: Buffer, lsize: number): Buffer {
  zstdDecompressContext ??= new zstd.DCtx();
  const out = Buffer.allocUnsafe(lsize);
  let written: number;
  try {
    written = zstdDecompressContext.decompress(out, stream);
  } catch (e) {
    throw malformed(CompressionType.zstd, (e as Error).message);
  }
  if (written !== lsize) throw malformed(CompressionType.zstd, `decoded ${written} bytes, expected ${lsize}`);
  return out;
}

function malformed(type: CompressionType, detail: string): CairnError {
  return new CairnError('EIO', `malformed ${String(compressionNameOrId(type))} payload: ${detail}`, { compression: type });
}

function compressionNameOrId(type: CompressionType): string {
  for (const [name, id] of Object.entries(CompressionType)) if (id === type) return name;
  return `type ${String(type)}`;
}
