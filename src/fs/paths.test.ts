import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MemoryObjectStore } from '../testing/memory-object-store.js';
import { isCairnError } from '../util/errors.js';
import { Filesystem } from './filesystem.js';
import {
  STREAM_CHUNK_SIZE_BYTES,
  listDirectory,
  mkdirp,
  readFileToStream,
  removePath,
  writeFileFromStream,
} from './paths.js';
import { FileKind, type FileSystemApi } from './types.js';

/** Records the largest single read and write the file system hands the object layer. */
class MeasuringStore extends MemoryObjectStore {
  writeLengthMaxBytes = 0;
  readLengthMaxBytes = 0;
  override async write(id: number, offset: number, data: Buffer): Promise<void> {
    this.writeLengthMaxBytes = Math.max(this.writeLengthMaxBytes, data.length);
    return super.write(id, offset, data);
  }
  override async read(id: number, offset: number, length: number): Promise<Buffer> {
    this.readLengthMaxBytes = Math.max(this.readLengthMaxBytes, length);
    return super.read(id, offset, length);
  }
}

async function makeFs(): Promise<{ fs: Filesystem; store: MeasuringStore }> {
  const store = new MeasuringStore();
  let nowNs = 1_700_000_000_000_000_000n;
  const fs = await Filesystem.create(store, { uid: 0, gid: 0, nowNs: () => (nowNs += 1000n) });
  return { fs, store };
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => isCairnError(error, code as never));
}

/** Contents defined by offset (a prime-length random pattern), so nothing has to keep the whole file. */
const BASE = randomBytes(1_000_003);
function contentAt(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const from = (offset + done) % BASE.length;
    const take = Math.min(BASE.length - from, length - done);
    BASE.copy(out, done, from, from + take);
    done += take;
  }
  return out;
}

/** Streams totalBytes in uneven chunks (tiny, odd, larger than the 1 MiB staging buffer). */
async function* generate(totalBytes: number, hash: ReturnType<typeof createHash>): AsyncGenerator<Buffer> {
  const sizes = [1000, 65_536, 3 * 1024 * 1024 + 17, 777, 1024 * 1024];
  let offset = 0;
  for (let i = 0; offset < totalBytes; i++) {
    const length = Math.min(sizes[i % sizes.length] ?? 1, totalBytes - offset);
    const chunk = contentAt(offset, length);
    hash.update(chunk);
    offset += length;
    yield chunk;
  }
}

/** A slow sink with a small buffer, so readFileToStream must wait for 'drain'. */
class HashingSink extends Writable {
  readonly hash = createHash('sha256');
  bytes = 0;
  chunkMaxBytes = 0;
  constructor() {
    super({ highWaterMark: 64 * 1024 });
  }
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.chunkMaxBytes = Math.max(this.chunkMaxBytes, chunk.length);
    setImmediate(callback);
  }
}

test('a 50 MiB file streams in and out intact, in chunks of at most 1 MiB and one record per store call', async () => {
  const { fs, store } = await makeFs();
  await mkdirp(fs, '/data/in');
  const totalBytes = 50 * 1024 * 1024 + 12_345;
  const writeSizes: number[] = [];
  const measuredFs = new Proxy(fs, {
    get(target, property, receiver) {
      if (property === 'write') {
        return (ino: number, offset: number, data: Buffer) => {
          writeSizes.push(data.length);
          return target.write(ino, offset, data);
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  }) as FileSystemApi;
  const inHash = createHash('sha256');
  // Collect garbage before each reading: without it the figure counts whatever the GC has not freed yet.
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  gc();
  const heapBefore = process.memoryUsage().arrayBuffers;
  const written = await writeFileFromStream(measuredFs, '/data/in/big.bin', generate(totalBytes, inHash), 0o600);
  assert.equal(written, totalBytes);
  assert.ok(Math.max(...writeSizes) <= STREAM_CHUNK_SIZE_BYTES);
  assert.equal(writeSizes.length, Math.ceil(totalBytes / STREAM_CHUNK_SIZE_BYTES));
  assert.ok(store.writeLengthMaxBytes <= fs.recordSizeBytes, `store write of ${store.writeLengthMaxBytes} bytes`);
  const stat = await fs.resolvePath('/data/in/big.bin');
  assert.equal(stat.sizeBytes, totalBytes);
  assert.equal(stat.mode & 0o777, 0o600);

  store.readLengthMaxBytes = 0;
  const sink = new HashingSink();
  const read = await readFileToStream(fs, '/data/in/big.bin', sink);
  assert.equal(read, totalBytes);
  assert.equal(sink.bytes, totalBytes);
  assert.ok(sink.chunkMaxBytes <= STREAM_CHUNK_SIZE_BYTES);
  assert.ok(store.readLengthMaxBytes <= STREAM_CHUNK_SIZE_BYTES);
  assert.equal(sink.hash.digest('hex'), inHash.digest('hex'));
  // Beyond the 50 MiB the store itself keeps, the stream added only a few chunks of memory.
  gc();
  const growthBytes = process.memoryUsage().arrayBuffers - heapBefore;
  assert.ok(growthBytes < totalBytes + 32 * 1024 * 1024, `array buffers grew by ${growthBytes}`);

  // Rewriting truncates: a short stream leaves a short file, and the big one's blocks are freed.
  await writeFileFromStream(fs, '/data/in/big.bin', (async function* () {
    yield 'short';
  })());
  const rewritten = await fs.resolvePath('/data/in/big.bin');
  assert.equal(rewritten.sizeBytes, 5);
  assert.ok(rewritten.allocatedBytes <= fs.recordSizeBytes);
  assert.equal((await fs.read(rewritten.ino, 0, 100)).toString(), 'short');
});

test('writeFileFromStream and readFileToStream follow symlinks and refuse directories', async () => {
  const { fs } = await makeFs();
  await mkdirp(fs, '/d');
  await writeFileFromStream(fs, '/d/target', [Buffer.from('one')]);
  await fs.symlink((await fs.resolvePath('/d')).ino, 'link', 'target');
  await writeFileFromStream(fs, '/d/link', [Buffer.from('two!')]);
  assert.equal((await fs.resolvePath('/d/link')).kind, FileKind.symlink, 'the symlink itself stays');
  const sink = new HashingSink();
  assert.equal(await readFileToStream(fs, '/d/link', sink), 4);
  assert.equal(sink.hash.digest('hex'), createHash('sha256').update('two!').digest('hex'));
  await rejectsWith(writeFileFromStream(fs, '/d', [Buffer.from('x')]), 'EISDIR');
  await rejectsWith(readFileToStream(fs, '/d', new HashingSink()), 'EISDIR');
  await rejectsWith(writeFileFromStream(fs, '/missing/x', [Buffer.from('x')]), 'ENOENT');
  await rejectsWith(writeFileFromStream(fs, '/d/target/x', [Buffer.from('x')]), 'ENOTDIR');
});

test('mkdirp creates what is missing, is idempotent, goes through symlinks, stops at files', async () => {
  const { fs } = await makeFs();
  const deep = await mkdirp(fs, '/a/b/c/d', 0o700);
  assert.equal(deep.kind, FileKind.directory);
  assert.equal(deep.mode & 0o777, 0o700);
  assert.equal((await mkdirp(fs, '/a/b/c/d/')).ino, deep.ino);
  await fs.symlink((await fs.resolvePath('/a')).ino, 'alias', 'b');
  assert.equal((await mkdirp(fs, '/a/alias/c/d')).ino, deep.ino);
  await writeFileFromStream(fs, '/a/file', [Buffer.from('x')]);
  await rejectsWith(mkdirp(fs, '/a/file/sub'), 'ENOTDIR');
  assert.equal((await mkdirp(fs, '/')).ino, fs.rootIno);
});

test('removePath: files, empty and non-empty directories, recursive over many pages; nothing leaks', async () => {
  const { fs, store } = await makeFs();
  const baseline = store.objectCount();
  await mkdirp(fs, '/tree/deep/deeper');
  for (let i = 0; i < 600; i++) await fs.create((await fs.resolvePath('/tree')).ino, `f${i}`, { mode: 0o644 });
  await writeFileFromStream(fs, '/tree/deep/deeper/data', [contentAt(0, 300_000)]);
  await fs.symlink((await fs.resolvePath('/tree/deep')).ino, 'ln', '../f1');
  await rejectsWith(removePath(fs, '/tree'), 'ENOTEMPTY');
  await removePath(fs, '/tree/f0');
  await rejectsWith(fs.resolvePath('/tree/f0'), 'ENOENT');
  await removePath(fs, '/tree', { recursive: true });
  await rejectsWith(fs.resolvePath('/tree'), 'ENOENT');
  assert.equal(store.objectCount(), baseline, 'every object of the tree was freed');
  await rejectsWith(removePath(fs, '/'), 'EINVAL');
  await rejectsWith(removePath(fs, '/nothing'), 'ENOENT');
  await mkdirp(fs, '/empty');
  await removePath(fs, '/empty');
  assert.equal((await fs.getattr(fs.rootIno)).nlink, 2);
});

test('listDirectory yields every entry with its stat, page by page; a file lists as itself', async () => {
  const { fs } = await makeFs();
  await mkdirp(fs, '/ls/sub');
  for (let i = 0; i < 50; i++) await writeFileFromStream(fs, `/ls/file${i}`, [Buffer.alloc(i, 1)]);
  const seen = new Map<string, number>();
  for await (const { name, stat } of listDirectory(fs, '/ls', { pageEntries: 7 })) {
    assert.ok(!seen.has(name), `duplicate ${name}`);
    seen.set(name, stat.sizeBytes);
  }
  assert.equal(seen.size, 51);
  for (let i = 0; i < 50; i++) assert.equal(seen.get(`file${i}`), i);
  assert.equal(seen.get('sub'), 2);
  const single = [];
  for await (const entry of listDirectory(fs, '/ls/file7')) single.push(entry);
  assert.equal(single.length, 1);
  assert.equal(single[0]?.name, 'file7');
  assert.equal(single[0]?.stat.sizeBytes, 7);
});
