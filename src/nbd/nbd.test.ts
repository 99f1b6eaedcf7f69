/**
 * The NBD server against real clients nobody here wrote (libnbd's nbdinfo and nbdcopy, qemu-img,
 * qemu-io) over a file-backed export, plus a raw-socket client for what real clients never send:
 * malformed requests, bad magic, disconnects mid-write, deep pipelines, and an overfull queue.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createCipheriv, createHash } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { access, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { Random, testSeed } from '../testing/random.js';
import { CairnError } from '../util/errors.js';
import { FileBlockExport } from './file-export.js';
import {
  NBD_CMD_DISC,
  NBD_CMD_FLAG_FUA,
  NBD_CMD_FLUSH,
  NBD_CMD_READ,
  NBD_CMD_TRIM,
  NBD_CMD_WRITE,
  NBD_CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EPERM,
  NBD_FLAG_CAN_MULTI_CONN,
  NBD_FLAG_C_FIXED_NEWSTYLE,
  NBD_FLAG_C_NO_ZEROES,
  NBD_FLAG_FIXED_NEWSTYLE,
  NBD_FLAG_HAS_FLAGS,
  NBD_FLAG_NO_ZEROES,
  NBD_FLAG_READ_ONLY,
  NBD_FLAG_SEND_FLUSH,
  NBD_FLAG_SEND_TRIM,
  NBD_IHAVEOPT,
  NBD_INFO_BLOCK_SIZE,
  NBD_INFO_DESCRIPTION,
  NBD_INFO_EXPORT,
  NBD_INFO_NAME,
  NBD_MAGIC,
  NBD_OPT_ABORT,
  NBD_OPT_EXPORT_NAME,
  NBD_OPT_GO,
  NBD_OPT_INFO,
  NBD_OPT_LIST,
  NBD_OPT_REPLY_MAGIC,
  NBD_OPT_STRUCTURED_REPLY,
  NBD_REP_ACK,
  NBD_REP_ERR_UNKNOWN,
  NBD_REP_ERR_UNSUP,
  NBD_REP_INFO,
  NBD_REP_SERVER,
  NBD_REQUEST_MAGIC,
  NBD_SIMPLE_REPLY_MAGIC,
} from './protocol.js';
import { NbdServer, type BlockExport } from './server.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const DISK_BYTES = 64 * MiB;
const RO_BYTES = 1 * MiB;

// ---------- helpers: exports ----------

/** Counts calls and tracks how many write bytes are inside the export at once. */
class InstrumentedExport implements BlockExport {
  readonly calls = { read: 0, write: 0, flush: 0, trim: 0, writeZeroes: 0, writeZeroesMayPunch: 0 };
  writeBytesInside = 0;
  writeBytesInsideMax = 0;
  /** When set, every write waits for it first (holds writes inside the export). */
  gate: Promise<void> | undefined;
  /** When set, every operation sleeps this many ms (drawn from it) first, so completions reorder. */
  delayMs: (() => number) | undefined;

  readonly description?: string;

  constructor(readonly inner: BlockExport) {
    if (inner.description !== undefined) this.description = inner.description;
  }

  get name(): string {
    return this.inner.name;
  }
  get blockSizeBytes(): number {
    return this.inner.blockSizeBytes;
  }
  get readonly(): boolean {
    return this.inner.readonly;
  }
  sizeBytes(): number {
    return this.inner.sizeBytes();
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.calls.read++;
    await this.pause();
    return this.inner.read(offset, length);
  }
  async write(offset: number, data: Buffer): Promise<void> {
    this.calls.write++;
    this.writeBytesInside += data.length;
    this.writeBytesInsideMax = Math.max(this.writeBytesInsideMax, this.writeBytesInside);
    try {
      if (this.gate !== undefined) await this.gate;
      await this.pause();
      await this.inner.write(offset, data);
    } finally {
      this.writeBytesInside -= data.length;
    }
  }
  async flush(): Promise<void> {
    this.calls.flush++;
    await this.inner.flush();
  }
  async trim(offset: number, length: number): Promise<void> {
    this.calls.trim++;
    await this.pause();
    await this.inner.trim(offset, length);
  }
  async writeZeroes(offset: number, length: number, mayPunch: boolean): Promise<void> {
    this.calls.writeZeroes++;
    if (mayPunch) this.calls.writeZeroesMayPunch++;
    await this.pause();
    await this.inner.writeZeroes(offset, length, mayPunch);
  }
  private async pause(): Promise<void> {
    const delayMs = this.delayMs?.();
    if (delayMs !== undefined && delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

/** An in-memory export, for tests that need no file. */
class MemoryExport implements BlockExport {
  readonly blockSizeBytes = 4096;
  readonly data: Buffer;
  constructor(
    readonly name: string,
    sizeBytes: number,
    readonly readonly = false,
  ) {
    this.data = Buffer.alloc(sizeBytes);
  }
  sizeBytes(): number {
    return this.data.length;
  }
  async read(offset: number, length: number): Promise<Buffer> {
    return Buffer.from(this.data.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    if (this.readonly) throw new CairnError('EROFS', 'read-only');
    data.copy(this.data, offset);
  }
  async flush(): Promise<void> {}
  async trim(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.data.fill(0, offset, offset + length);
  }
}

// ---------- helpers: processes ----------

async function findBinary(name: string): Promise<string | undefined> {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, fsConstants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

/** Runs a client asynchronously (the server lives in this process, so a sync spawn would deadlock). */
function run(file: string, args: string[], timeoutMs = 30_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 4 * MiB }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(MiB);
    for (;;) {
      const { bytesRead } = await handle.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Seeded pseudo-random bytes: AES-128-CTR keyed from the seed, several times faster than Random.fill. */
async function writeRandomFile(path: string, sizeBytes: number, random: Random): Promise<void> {
  const keystream = createCipheriv('aes-128-ctr', random.bytes(16), random.bytes(16));
  const zeroes = Buffer.alloc(MiB);
  const handle = await open(path, 'w');
  try {
    for (let doneBytes = 0; doneBytes < sizeBytes; doneBytes += zeroes.length) {
      const buf = keystream.update(zeroes);
      await handle.write(buf, 0, buf.length, doneBytes);
    }
  } finally {
    await handle.close();
  }
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, offset);
    return buf;
  } finally {
    await handle.close();
  }
}

// ---------- helpers: a raw protocol client ----------

class RawClient {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
      this.serveWaiter();
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.serveWaiter();
        resolve();
      }),
    );
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port }, () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  read(n: number): Promise<Buffer> {
    assert.equal(this.waiter, undefined, 'one read at a time');
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serveWaiter();
    });
  }

  write(buf: Buffer): void {
    this.socket.write(buf);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private serveWaiter(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    if (this.bufferedBytes >= waiter.n) {
      this.waiter = undefined;
      const all = Buffer.concat(this.chunks);
      this.chunks = [all.subarray(waiter.n)];
      this.bufferedBytes -= waiter.n;
      waiter.resolve(all.subarray(0, waiter.n));
    } else if (this.ended) {
      this.waiter = undefined;
      waiter.reject(new Error('connection closed'));
    }
  }
}

async function greet(client: RawClient, clientFlags = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES): Promise<void> {
  const greeting = await client.read(18);
  assert.equal(greeting.readBigUInt64BE(0), NBD_MAGIC);
  assert.equal(greeting.readBigUInt64BE(8), NBD_IHAVEOPT);
  assert.equal(greeting.readUInt16BE(16), NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(clientFlags, 0);
  client.write(flags);
}

function sendOption(client: RawClient, option: number, data: Buffer = Buffer.alloc(0)): void {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(NBD_IHAVEOPT, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(data.length, 12);
  client.write(Buffer.concat([header, data]));
}

interface OptionReply {
  option: number;
  replyType: number;
  data: Buffer;
}

async function readOptionReply(client: RawClient): Promise<OptionReply> {
  const header = await client.read(20);
  assert.equal(header.readBigUInt64BE(0), NBD_OPT_REPLY_MAGIC);
  const dataBytes = header.readUInt32BE(16);
  const data = dataBytes > 0 ? await client.read(dataBytes) : Buffer.alloc(0);
  return { option: header.readUInt32BE(8), replyType: header.readUInt32BE(12), data };
}

function infoRequest(name: string, infoTypes: number[]): Buffer {
  const nameBytes = Buffer.from(name);
  const buf = Buffer.alloc(4 + nameBytes.length + 2 + 2 * infoTypes.length);
  buf.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(buf, 4);
  buf.writeUInt16BE(infoTypes.length, 4 + nameBytes.length);
  infoTypes.forEach((t, i) => buf.writeUInt16BE(t, 4 + nameBytes.length + 2 + 2 * i));
  return buf;
}

/** Sends OPT_GO and collects the replies up to ACK; returns the export's size and flags. */
async function go(client: RawClient, name: string): Promise<{ sizeBytes: number; flags: number }> {
  sendOption(client, NBD_OPT_GO, infoRequest(name, [NBD_INFO_NAME]));
  let sizeBytes = -1;
  let flags = -1;
  for (;;) {
    const reply = await readOptionReply(client);
    assert.equal(reply.option, NBD_OPT_GO);
    if (reply.replyType === NBD_REP_ACK) break;
    assert.equal(reply.replyType, NBD_REP_INFO, `GO ${name} failed with reply 0x${reply.replyType.toString(16)}`);
    if (reply.data.readUInt16BE(0) === NBD_INFO_EXPORT) {
      sizeBytes = Number(reply.data.readBigUInt64BE(2));
      flags = reply.data.readUInt16BE(10);
    }
  }
  assert.ok(sizeBytes >= 0, 'GO sent NBD_INFO_EXPORT');
  return { sizeBytes, flags };
}

async function openExport(port: number, name: string): Promise<{ client: RawClient; sizeBytes: number; flags: number }> {
  const client = await RawClient.connect(port);
  await greet(client);
  const { sizeBytes, flags } = await go(client, name);
  return { client, sizeBytes, flags };
}

function encodeRequest(command: number, handle: number, offset: bigint | number, length: number, commandFlags = 0): Buffer {
  const buf = Buffer.alloc(28);
  buf.writeUInt32BE(NBD_REQUEST_MAGIC, 0);
  buf.writeUInt16BE(commandFlags, 4);
  buf.writeUInt16BE(command, 6);
  buf.writeBigUInt64BE(BigInt(handle), 8);
  buf.writeBigUInt64BE(BigInt(offset), 16);
  buf.writeUInt32BE(length, 24);
  return buf;
}

async function readSimpleReply(client: RawClient): Promise<{ error: number; handle: number }> {
  const header = await client.read(16);
  assert.equal(header.readUInt32BE(0), NBD_SIMPLE_REPLY_MAGIC);
  return { error: header.readUInt32BE(4), handle: Number(header.readBigUInt64BE(8)) };
}

/** One request, one reply (no pipelining); returns the error and, for a successful read, its data. */
async function roundTrip(
  client: RawClient,
  command: number,
  offset: bigint | number,
  length: number,
  payload?: Buffer,
  commandFlags = 0,
): Promise<{ error: number; data?: Buffer }> {
  const handle = 0x1234;
  client.write(encodeRequest(command, handle, offset, length, commandFlags));
  if (payload !== undefined) client.write(payload);
  const reply = await readSimpleReply(client);
  assert.equal(reply.handle, handle);
  if (command === NBD_CMD_READ && reply.error === 0) return { error: 0, data: await client.read(length) };
  return { error: reply.error };
}

// ---------- the suite ----------

describe('NBD server', () => {
  let dir = '';
  let diskPath = '';
  let disk: InstrumentedExport;
  let roExport: FileBlockExport;
  let server: NbdServer;
  let port = 0;
  const logLines: string[] = [];
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason);
  };

  before(async () => {
    process.on('unhandledRejection', onUnhandled);
    dir = await mkdtemp(join(tmpdir(), 'cairn-nbd-'));
    diskPath = join(dir, 'disk.img');
    await writeFile(diskPath, Buffer.alloc(0));
    const fh = await open(diskPath, 'r+');
    await fh.truncate(DISK_BYTES);
    await fh.close();
    const roPath = join(dir, 'ro.img');
    await writeFile(roPath, Buffer.alloc(RO_BYTES, 0x5a));
    disk = new InstrumentedExport(await FileBlockExport.open(diskPath, { name: 'disk', description: 'test disk' }));
    roExport = await FileBlockExport.open(roPath, { name: 'ro', readonly: true });
    const exports = new Map<string, BlockExport>([
      ['disk', disk],
      ['ro', roExport],
    ]);
    server = new NbdServer({ exports, defaultExportName: 'disk', log: (line) => logLines.push(line) });
    const address = await server.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    port = address.port;
  });

  after(async () => {
    await server.close();
    await (disk.inner as FileBlockExport).close();
    await roExport.close();
    await rm(dir, { recursive: true, force: true });
    process.off('unhandledRejection', onUnhandled);
    assert.deepEqual(unhandled, [], 'no unhandled rejections');
  });

  test('nbdinfo shows name, size, description, flags and --list', async (t) => {
    const nbdinfo = await findBinary('nbdinfo');
    if (nbdinfo === undefined) return t.skip('nbdinfo not installed (Debian package libnbd-bin)');
    const info = JSON.parse((await run(nbdinfo, ['--json', `nbd://127.0.0.1:${port}/disk`])).stdout);
    const only = info.exports[0];
    assert.equal(only['export-name'], 'disk');
    assert.equal(only['export-size'], DISK_BYTES);
    assert.equal(only['description'], 'test disk');
    assert.equal(only['is_read_only'], false);
    assert.equal(only['can_flush'], true);
    assert.equal(only['can_fua'], true);
    assert.equal(only['can_trim'], true);
    assert.equal(only['can_zero'], true);
    assert.equal(only['can_multi_conn'], true);
    assert.equal(only['block_size_minimum'], 1);
    assert.equal(only['block_size_preferred'], 4096);

    const ro = JSON.parse((await run(nbdinfo, ['--json', `nbd://127.0.0.1:${port}/ro`])).stdout).exports[0];
    assert.equal(ro['export-size'], RO_BYTES);
    assert.equal(ro['is_read_only'], true);

    // The empty name is the default export.
    const size = (await run(nbdinfo, ['--size', `nbd://127.0.0.1:${port}`])).stdout.trim();
    assert.equal(Number(size), DISK_BYTES);

    const listed = JSON.parse((await run(nbdinfo, ['--list', '--json', `nbd://127.0.0.1:${port}`])).stdout);
    const names = (listed.exports as Array<Record<string, unknown>>).map((e) => e['export-name']).sort();
    assert.deepEqual(names, ['disk', 'ro']);

    await assert.rejects(run(nbdinfo, [`nbd://127.0.0.1:${port}/nope`]), /nope/);
  });

  test('nbdcopy of 64 MiB in and out keeps every byte (sha256)', async (t) => {
    const nbdcopy = await findBinary('nbdcopy');
    if (nbdcopy === undefined) return t.skip('nbdcopy not installed (Debian package libnbd-bin)');
    const seed = testSeed();
    t.diagnostic(`seed ${seed}`);
    const srcPath = join(dir, 'src.bin');
    const backPath = join(dir, 'back.bin');
    try {
      await writeRandomFile(srcPath, DISK_BYTES, new Random(seed));
      const want = await sha256File(srcPath);
      await run(nbdcopy, [srcPath, `nbd://127.0.0.1:${port}/disk`]);
      assert.equal(await sha256File(diskPath), want, `backing file after nbdcopy in (seed ${seed})`);
      await run(nbdcopy, [`nbd://127.0.0.1:${port}/disk`, backPath]);
      assert.equal(await sha256File(backPath), want, `file copied back out (seed ${seed})`);
    } finally {
      await rm(srcPath, { force: true });
      await rm(backPath, { force: true });
    }
  });

  test('qemu-img convert from nbd:// equals the backing file', async (t) => {
    const qemuImg = await findBinary('qemu-img');
    if (qemuImg === undefined) return t.skip('qemu-img not installed (Debian package qemu-utils)');
    // Distinct content even if the nbdcopy test was skipped.
    const seed = testSeed();
    const stamp = new Random(seed).bytes(MiB);
    const fh = await open(diskPath, 'r+');
    await fh.write(stamp, 0, stamp.length, 7 * MiB + 123);
    await fh.close();
    const outPath = join(dir, 'qemu-out.raw');
    try {
      await run(qemuImg, ['convert', '-f', 'raw', '-O', 'raw', `nbd://127.0.0.1:${port}/disk`, outPath]);
      assert.equal(await sha256File(outPath), await sha256File(diskPath), `seed ${seed}`);
    } finally {
      await rm(outPath, { force: true });
    }
  });

  test('qemu-io writes, write -z, discard and reads back through NBD', async (t) => {
    const qemuIo = await findBinary('qemu-io');
    if (qemuIo === undefined) return t.skip('qemu-io not installed (Debian package qemu-utils)');
    const base = 3 * MiB;
    const before = { ...disk.calls };
    const { stdout } = await run(qemuIo, [
      '-f', 'raw', `nbd://127.0.0.1:${port}/disk`,
      '-c', `write -P 0xab ${base} 1M`,
      '-c', `write -z ${base + 512 * KiB} 64k`,
      '-c', `discard ${base} 4k`,
      '-c', `write -f -P 0xcd ${base + MiB} 4k`,
      '-c', 'flush',
      '-c', `read -P 0xab ${base + 4 * KiB} 508k`,
      '-c', `read -P 0 ${base + 512 * KiB} 64k`,
      '-c', `read -P 0xcd ${base + MiB} 4k`,
    ]);
    assert.doesNotMatch(stdout, /fail|error/i, stdout);
    assert.ok(disk.calls.writeZeroes > before.writeZeroes, 'write -z arrived as NBD_CMD_WRITE_ZEROES');
    assert.ok(disk.calls.trim > before.trim, 'discard arrived as NBD_CMD_TRIM');
    assert.ok(disk.calls.flush >= before.flush + 2, 'FUA write and flush both flushed the export');

    // The bytes on the backing file, not just what qemu-io read back.
    const region = await readRange(diskPath, base, MiB + 4 * KiB);
    const expected = Buffer.alloc(MiB + 4 * KiB, 0xab);
    expected.fill(0, 0, 4 * KiB); // discard: this file export zeroes trimmed ranges
    expected.fill(0, 512 * KiB, 576 * KiB);
    expected.fill(0xcd, MiB, MiB + 4 * KiB);
    assert.ok(region.equals(expected), 'backing file holds the writes, zeroes and discard');
  });

  test('option haggling: LIST, INFO, unknown and structured-reply options, EXPORT_NAME with zero padding', async () => {
    const client = await RawClient.connect(port);
    await greet(client);

    sendOption(client, NBD_OPT_LIST);
    const names: string[] = [];
    for (;;) {
      const reply = await readOptionReply(client);
      if (reply.replyType === NBD_REP_ACK) break;
      assert.equal(reply.replyType, NBD_REP_SERVER);
      const nameBytes = reply.data.readUInt32BE(0);
      names.push(reply.data.toString('utf8', 4, 4 + nameBytes));
    }
    assert.deepEqual(names.sort(), ['disk', 'ro']);

    sendOption(client, NBD_OPT_STRUCTURED_REPLY);
    assert.equal((await readOptionReply(client)).replyType, NBD_REP_ERR_UNSUP);
    sendOption(client, 0x7777, Buffer.from('whatever'));
    assert.equal((await readOptionReply(client)).replyType, NBD_REP_ERR_UNSUP);

    sendOption(client, NBD_OPT_INFO, infoRequest('nope', []));
    assert.equal((await readOptionReply(client)).replyType, NBD_REP_ERR_UNKNOWN);

    sendOption(client, NBD_OPT_INFO, infoRequest('disk', [NBD_INFO_NAME, NBD_INFO_DESCRIPTION, NBD_INFO_BLOCK_SIZE]));
    const infos = new Map<number, Buffer>();
    for (;;) {
      const reply = await readOptionReply(client);
      if (reply.replyType === NBD_REP_ACK) break;
      assert.equal(reply.replyType, NBD_REP_INFO);
      infos.set(reply.data.readUInt16BE(0), reply.data.subarray(2));
    }
    assert.equal(Number(infos.get(NBD_INFO_EXPORT)?.readBigUInt64BE(0)), DISK_BYTES);
    assert.equal(infos.get(NBD_INFO_NAME)?.toString(), 'disk');
    assert.equal(infos.get(NBD_INFO_DESCRIPTION)?.toString(), 'test disk');
    const blockSize = infos.get(NBD_INFO_BLOCK_SIZE);
    assert.ok(blockSize !== undefined);
    assert.deepEqual([blockSize.readUInt32BE(0), blockSize.readUInt32BE(4), blockSize.readUInt32BE(8)], [1, 4096, 32 * MiB]);

    // INFO left us in option haggling; an abort ends it cleanly.
    sendOption(client, NBD_OPT_ABORT);
    assert.equal((await readOptionReply(client)).replyType, NBD_REP_ACK);
    await client.closed;

    // Old-style entry without NO_ZEROES: size, flags, then 124 zero bytes, then transmission works.
    const old = await RawClient.connect(port);
    await greet(old, NBD_FLAG_C_FIXED_NEWSTYLE);
    sendOption(old, NBD_OPT_EXPORT_NAME, Buffer.from('ro'));
    const reply = await old.read(134);
    assert.equal(Number(reply.readBigUInt64BE(0)), RO_BYTES);
    const flags = reply.readUInt16BE(8);
    assert.equal(flags & (NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY), NBD_FLAG_HAS_FLAGS | NBD_FLAG_READ_ONLY);
    assert.ok(reply.subarray(10).equals(Buffer.alloc(124)));
    const read = await roundTrip(old, NBD_CMD_READ, 100, 16);
    assert.equal(read.error, 0);
    assert.ok(read.data?.equals(Buffer.alloc(16, 0x5a)));
    old.write(encodeRequest(NBD_CMD_DISC, 0, 0, 0));
    await old.closed;

    // EXPORT_NAME of an unknown export has no error reply: the server closes.
    const unknown = await RawClient.connect(port);
    await greet(unknown);
    sendOption(unknown, NBD_OPT_EXPORT_NAME, Buffer.from('nope'));
    await unknown.closed;
  });

  test('malformed requests get EINVAL and the stream stays in sync; read-only export gives EPERM', async () => {
    const { client, sizeBytes, flags } = await openExport(port, 'disk');
    assert.equal(sizeBytes, DISK_BYTES);
    assert.equal(flags & NBD_FLAG_READ_ONLY, 0);
    assert.ok((flags & (NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_TRIM | NBD_FLAG_CAN_MULTI_CONN)) !== 0);

    assert.equal((await roundTrip(client, NBD_CMD_READ, 0, 32 * MiB + 1)).error, NBD_EINVAL, 'oversize read');
    assert.equal((await roundTrip(client, NBD_CMD_READ, DISK_BYTES - 100, 4096)).error, NBD_EINVAL, 'read past the end');
    assert.equal((await roundTrip(client, NBD_CMD_READ, 1n << 63n, 1)).error, NBD_EINVAL, 'offset beyond 2^53');
    assert.equal((await roundTrip(client, 99, 0, 0)).error, NBD_EINVAL, 'unknown command');
    assert.equal((await roundTrip(client, NBD_CMD_READ, 0, 512, undefined, 1 << 12)).error, NBD_EINVAL, 'unknown flag');
    assert.equal((await roundTrip(client, NBD_CMD_TRIM, DISK_BYTES, 1)).error, NBD_EINVAL, 'trim past the end');
    // A write past the end still carries its payload; the server must consume it to stay in sync.
    const stray = Buffer.alloc(4096, 0xee);
    assert.equal((await roundTrip(client, NBD_CMD_WRITE, DISK_BYTES - 1, stray.length, stray)).error, NBD_EINVAL);
    assert.equal((await roundTrip(client, NBD_CMD_WRITE_ZEROES, 0, 4096)).error, 0);
    // An oversize write: the payload is skipped without being buffered, then refused.
    const huge = Buffer.alloc(32 * MiB + 4096, 0xee);
    assert.equal((await roundTrip(client, NBD_CMD_WRITE, 0, huge.length, huge)).error, NBD_EINVAL, 'oversize write');

    // Still in sync: a real write and read round-trip, and nothing of the refused writes landed.
    const good = Buffer.alloc(8192, 0x42);
    const flushesBefore = disk.calls.flush;
    assert.equal((await roundTrip(client, NBD_CMD_WRITE, 20 * MiB, good.length, good, NBD_CMD_FLAG_FUA)).error, 0);
    assert.equal(disk.calls.flush, flushesBefore + 1, 'a FUA write flushes the export before its reply');
    const back = await roundTrip(client, NBD_CMD_READ, 20 * MiB, good.length);
    assert.ok(back.data?.equals(good));
    const head = await roundTrip(client, NBD_CMD_READ, 0, 4096);
    assert.ok(head.data?.equals(Buffer.alloc(4096)), 'oversize write did not land');
    assert.equal((await roundTrip(client, NBD_CMD_WRITE_ZEROES, 20 * MiB, 4096)).error, 0);
    assert.ok((await roundTrip(client, NBD_CMD_READ, 20 * MiB, 4096)).data?.equals(Buffer.alloc(4096)));
    assert.equal((await roundTrip(client, NBD_CMD_FLUSH, 0, 0)).error, 0);
    client.write(encodeRequest(NBD_CMD_DISC, 0, 0, 0));
    await client.closed;

    const ro = await openExport(port, 'ro');
    assert.equal(ro.flags & NBD_FLAG_READ_ONLY, NBD_FLAG_READ_ONLY);
    const attempt = Buffer.alloc(512, 1);
    assert.equal((await roundTrip(ro.client, NBD_CMD_WRITE, 0, attempt.length, attempt)).error, NBD_EPERM);
    assert.equal((await roundTrip(ro.client, NBD_CMD_TRIM, 0, 512)).error, NBD_EPERM);
    assert.equal((await roundTrip(ro.client, NBD_CMD_WRITE_ZEROES, 0, 512)).error, NBD_EPERM);
    const roRead = await roundTrip(ro.client, NBD_CMD_READ, 0, 512);
    assert.ok(roRead.data?.equals(Buffer.alloc(512, 0x5a)), 'read-only export unchanged');
    ro.client.destroy();
  });

  test('bad magic closes the connection; a client vanishing mid-write harms nobody else', async () => {
    const bad = await openExport(port, 'disk');
    const garbage = encodeRequest(NBD_CMD_READ, 1, 0, 512);
    garbage.writeUInt32BE(0xdeadbeef, 0);
    bad.client.write(garbage);
    await bad.client.closed;
    assert.ok(logLines.some((line) => line.includes('bad request magic')));

    const quitter = await openExport(port, 'disk');
    assert.equal((await roundTrip(quitter.client, NBD_CMD_WRITE_ZEROES, 30 * MiB, MiB)).error, 0);
    quitter.client.write(encodeRequest(NBD_CMD_WRITE, 2, 30 * MiB, MiB));
    quitter.client.write(Buffer.alloc(1000, 0x77));
    await new Promise((resolve) => setTimeout(resolve, 20));
    quitter.client.destroy();

    const quitterInHandshake = await RawClient.connect(port);
    await greet(quitterInHandshake);
    quitterInHandshake.write(Buffer.from('IHAVE'));
    quitterInHandshake.destroy();

    const fresh = await openExport(port, 'disk');
    const check = await roundTrip(fresh.client, NBD_CMD_READ, 30 * MiB, 1000);
    assert.equal(check.error, 0);
    assert.ok(check.data?.equals(Buffer.alloc(1000)), 'the half-sent write never reached the export');
    fresh.client.destroy();
  });

  test('seeded fuzz: random requests and garbage never crash the server or break other clients', async (t) => {
    const seed = testSeed();
    t.diagnostic(`seed ${seed}`);
    const random = new Random(seed);
    const fuzzLog: string[] = [];
    const memory = new MemoryExport('mem', MiB);
    const fuzzServer = new NbdServer({ exports: new Map([['mem', memory]]), log: (line) => fuzzLog.push(line) });
    const address = await fuzzServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      for (let round = 0; round < 20; round++) {
        const client = await RawClient.connect(address.port);
        await client.read(18);
        const inHandshake = random.chance(0.3);
        if (inHandshake) {
          client.write(random.bytes(random.int(64)));
        } else {
          client.write(Buffer.from([0, 0, 0, NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES]));
          sendOption(client, NBD_OPT_GO, infoRequest('mem', []));
          for (let i = 0; i < 30; i++) {
            const command = random.chance(0.8) ? random.int(8) : random.int(0x10000);
            const commandFlags = random.chance(0.8) ? random.int(4) : random.int(0x10000);
            const offset = random.chance(0.8) ? random.int(MiB) : random.int(0x7fffffff) * 65536;
            const length = random.chance(0.9) ? random.int(64 * KiB) : random.nextU32();
            client.write(encodeRequest(command, i, offset, length, commandFlags));
            if (command === NBD_CMD_WRITE && length <= 64 * KiB) client.write(random.bytes(length));
            if (random.chance(0.05)) client.write(random.bytes(random.int(40))); // desynchronise
          }
        }
        if (random.chance(0.5)) await new Promise((resolve) => setTimeout(resolve, random.int(20)));
        client.destroy();
      }
      // Whatever happened above, a well-behaved client is still served correctly.
      const { client } = await openExport(address.port, 'mem');
      const payload = random.bytes(4096);
      assert.equal((await roundTrip(client, NBD_CMD_WRITE, 8192, payload.length, payload)).error, 0);
      assert.ok((await roundTrip(client, NBD_CMD_READ, 8192, payload.length)).data?.equals(payload), `seed ${seed}`);
      client.destroy();
      assert.deepEqual(fuzzLog.filter((line) => line.includes('internal error')), [], `seed ${seed}`);
    } finally {
      await fuzzServer.close();
    }
  });

  test('pipelined overlapping writes land in request order while replies come back out of order', async (t) => {
    const seed = testSeed();
    t.diagnostic(`seed ${seed}`);
    const random = new Random(seed);
    const memory = new MemoryExport('mem', 4 * MiB);
    const slow = new InstrumentedExport(memory);
    slow.delayMs = () => random.int(4);
    const pipelineServer = new NbdServer({ exports: new Map([['mem', slow]]) });
    const address = await pipelineServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      const { client } = await openExport(address.port, 'mem');
      const regionBytes = 256 * KiB;
      const model = Buffer.alloc(regionBytes);
      const requestCount = 300;
      const readLengths = new Map<number, number>();
      for (let handle = 1; handle <= requestCount; handle++) {
        const offset = random.int(regionBytes - 1);
        const length = 1 + random.int(Math.min(32 * KiB, regionBytes - offset));
        const kind = random.int(10);
        if (kind < 6) {
          const payload = Buffer.alloc(length, handle & 0xff);
          client.write(encodeRequest(NBD_CMD_WRITE, handle, offset, length));
          client.write(payload);
          payload.copy(model, offset);
        } else if (kind < 8) {
          client.write(encodeRequest(NBD_CMD_WRITE_ZEROES, handle, offset, length));
          model.fill(0, offset, offset + length);
        } else {
          client.write(encodeRequest(NBD_CMD_READ, handle, offset, length));
          readLengths.set(handle, length);
        }
      }
      const seen = new Set<number>();
      let outOfOrder = 0;
      let previous = 0;
      for (let i = 0; i < requestCount; i++) {
        const reply = await readSimpleReply(client);
        assert.equal(reply.error, 0, `request ${reply.handle} failed (seed ${seed})`);
        assert.ok(!seen.has(reply.handle), `handle ${reply.handle} answered twice`);
        seen.add(reply.handle);
        if (reply.handle < previous) outOfOrder++;
        previous = reply.handle;
        const readLength = readLengths.get(reply.handle);
        if (readLength !== undefined) await client.read(readLength);
      }
      assert.equal(seen.size, requestCount);
      assert.ok(outOfOrder > 0, `replies were all in order (seed ${seed}): the pipeline is not concurrent`);
      const final = await roundTrip(client, NBD_CMD_READ, 0, regionBytes);
      assert.ok(final.data?.equals(model), `overlapping writes applied out of request order (seed ${seed})`);
      client.destroy();
    } finally {
      await pipelineServer.close();
    }
  });

  test('a client that floods writes is held to the in-flight byte cap', async () => {
    const inFlightBytesMax = 2 * MiB;
    const requestBytes = 256 * KiB;
    const memory = new MemoryExport('mem', 32 * MiB);
    const gated = new InstrumentedExport(memory);
    let openGate: () => void = () => {};
    gated.gate = new Promise<void>((resolve) => (openGate = resolve));
    const cappedServer = new NbdServer({ exports: new Map([['mem', gated]]), inFlightBytesMax });
    const address = await cappedServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      const { client } = await openExport(address.port, 'mem');
      const requestCount = 128; // 32 MiB of writes, 16 times the cap
      for (let handle = 0; handle < requestCount; handle++) {
        client.write(encodeRequest(NBD_CMD_WRITE, handle, handle * requestBytes, requestBytes));
        client.write(Buffer.alloc(requestBytes, (handle % 250) + 1));
      }
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.ok(gated.writeBytesInside > 0, 'some writes were admitted');
      assert.ok(
        gated.writeBytesInsideMax <= inFlightBytesMax + requestBytes,
        `${gated.writeBytesInsideMax} bytes of writes admitted at once, cap ${inFlightBytesMax}`,
      );
      openGate();
      for (let i = 0; i < requestCount; i++) assert.equal((await readSimpleReply(client)).error, 0);
      for (let handle = 0; handle < requestCount; handle++) {
        assert.equal(memory.data[handle * requestBytes + 17], (handle % 250) + 1);
      }
      client.destroy();
    } finally {
      openGate();
      await cappedServer.close();
    }
  });

  test('a client that never reads its replies stops being served once the cap is reached', async () => {
    const inFlightBytesMax = 2 * MiB;
    const requestBytes = MiB;
    const memory = new MemoryExport('mem', 4 * MiB);
    memory.data.fill(0x61);
    const counted = new InstrumentedExport(memory);
    // A function source: consulted at each option, so exports may change while serving.
    const stingyServer = new NbdServer({ exports: () => new Map([['mem', counted]]), inFlightBytesMax });
    const address = await stingyServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      const { client } = await openExport(address.port, 'mem');
      client.socket.pause(); // read nothing: replies pile up in the kernel, then in the server
      const requestCount = 96; // 96 MiB of read replies
      for (let handle = 0; handle < requestCount; handle++) {
        client.write(encodeRequest(NBD_CMD_READ, handle, (handle % 4) * requestBytes, requestBytes));
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
      // The loopback socket buffers hold some megabytes; beyond that the server must stop reading.
      assert.ok(counted.calls.read < requestCount / 2, `${counted.calls.read} reads served to a client reading nothing`);
      client.socket.resume();
      for (let i = 0; i < requestCount; i++) {
        const reply = await readSimpleReply(client);
        assert.equal(reply.error, 0);
        const data = await client.read(requestBytes);
        assert.equal(data[requestBytes - 1], 0x61);
      }
      assert.equal(counted.calls.read, requestCount);
      client.destroy();
    } finally {
      await stingyServer.close();
    }
  });

  test('handshake timeout, connection cap, and listen on a busy port failing cleanly', async () => {
    const impatient = new NbdServer({ exports: new Map(), handshakeTimeoutMs: 100, connectionsMax: 1 });
    const address = await impatient.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      const client = await RawClient.connect(address.port);
      await client.read(18);
      const overLimit = await RawClient.connect(address.port);
      await assert.rejects(overLimit.read(18), /closed/, 'a connection over connectionsMax is refused');
      const startedMs = Date.now();
      await client.closed;
      assert.ok(Date.now() - startedMs < 5_000);
      const second = new NbdServer({ exports: new Map() });
      await assert.rejects(second.listen({ host: '127.0.0.1', port: address.port }), /EADDRINUSE/);
      await second.close();
    } finally {
      await impatient.close();
    }
  });

  test('serves on a Unix socket', async (t) => {
    const nbdinfo = await findBinary('nbdinfo');
    if (nbdinfo === undefined) return t.skip('nbdinfo not installed (Debian package libnbd-bin)');
    const socketPath = join(dir, 'nbd.sock');
    const unixServer = new NbdServer({ exports: new Map([['mem', new MemoryExport('mem', 3 * MiB)]]) });
    assert.deepEqual(await unixServer.listen({ path: socketPath }), { path: socketPath });
    try {
      const { stdout } = await run(nbdinfo, ['--size', `nbd+unix:///mem?socket=${socketPath}`]);
      assert.equal(Number(stdout.trim()), 3 * MiB);
    } finally {
      await unixServer.close();
    }
  });

  test('close() answers in-flight requests, then closes connections and refuses new ones', async () => {
    const memory = new MemoryExport('mem', MiB);
    const gated = new InstrumentedExport(memory);
    let openGate: () => void = () => {};
    gated.gate = new Promise<void>((resolve) => (openGate = resolve));
    const closingServer = new NbdServer({ exports: new Map([['mem', gated]]) });
    const address = await closingServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    const { client } = await openExport(address.port, 'mem');
    client.write(encodeRequest(NBD_CMD_WRITE, 9, 0, 4096));
    client.write(Buffer.alloc(4096, 0x33));
    while (gated.writeBytesInside === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const closed = closingServer.close();
    setTimeout(openGate, 50);
    const reply = await readSimpleReply(client);
    assert.deepEqual(reply, { error: 0, handle: 9 });
    await client.closed;
    await closed;
    assert.equal(memory.data[100], 0x33);
    await assert.rejects(RawClient.connect(address.port));
  });
  test('disconnect(name) ends only that export\'s connections, after answering their running requests', { timeout: 10_000 }, async () => {
    const memoryA = new MemoryExport('a', MiB);
    const gatedA = new InstrumentedExport(memoryA);
    let openGate: () => void = () => {};
    gatedA.gate = new Promise<void>((resolve) => (openGate = resolve));
    const memoryB = new MemoryExport('b', MiB);
    memoryB.data.fill(0x62);
    const exports = new Map<string, BlockExport>([
      ['a', gatedA],
      ['b', memoryB],
    ]);
    const twoServer = new NbdServer({ exports, defaultExportName: 'a' });
    const address = await twoServer.listen({ host: '127.0.0.1', port: 0 });
    assert.ok('port' in address);
    try {
      const { client: clientA } = await openExport(address.port, 'a');
      // Asked for the default export: it serves 'a', so disconnect('a') must reach it too.
      const { client: clientDefault } = await openExport(address.port, '');
      const { client: clientB } = await openExport(address.port, 'b');
      clientA.write(encodeRequest(NBD_CMD_WRITE, 7, 0, 4096));
      clientA.write(Buffer.alloc(4096, 0x33));
      while (gatedA.writeBytesInside === 0) await new Promise((resolve) => setTimeout(resolve, 5));

      exports.delete('a');
      let disconnected = false;
      const disconnecting = twoServer.disconnect('a').then(() => (disconnected = true));
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(disconnected, false, 'disconnect waits for the running write');
      const during = await roundTrip(clientB, NBD_CMD_READ, 4096, 16);
      assert.deepEqual(during.data, Buffer.alloc(16, 0x62), 'the other export serves while one drains');
      openGate();
      assert.deepEqual(await readSimpleReply(clientA), { error: 0, handle: 7 }, 'the running write is answered');
      await clientA.closed;
      await clientDefault.closed;
      await disconnecting;
      assert.equal(memoryA.data[100], 0x33, 'the write landed');

      const after = await roundTrip(clientB, NBD_CMD_READ, 0, 16);
      assert.deepEqual(after.data, Buffer.alloc(16, 0x62), 'the other export\'s client still reads');
      const late = await RawClient.connect(address.port);
      await greet(late);
      sendOption(late, NBD_OPT_GO, infoRequest('a', []));
      assert.equal((await readOptionReply(late)).replyType, NBD_REP_ERR_UNKNOWN, 'the dropped name is gone');
      late.destroy();
      await twoServer.disconnect('no-such-export'); // nothing to end: resolves at once
      assert.equal((await roundTrip(clientB, NBD_CMD_READ, 0, 1)).error, 0);
      clientB.destroy();
    } finally {
      openGate();
      await twoServer.close();
    }
  });
});
