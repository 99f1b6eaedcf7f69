import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlockVolume } from '../dataset/index.js';
import { nbdProtocol } from '../nbd/index.js';
import { isCairnError } from '../util/errors.js';
import { Random } from '../testing/random.js';
import { MountTable, compareMountpoints, renamedDataset, withinDataset } from './mounts.js';
import { NbdExportTable, VolumeExport, parseListen } from './nbd-exports.js';

/** A volume in memory whose reads can be held open, to see an ending export wait for them. */
function memoryVolume(sizeBytes: number): BlockVolume & { hold: () => () => void; data: Buffer } {
  const data = Buffer.alloc(sizeBytes);
  let gate: Promise<void> | null = null;
  return {
    data,
    sizeBytes,
    blockSizeBytes: 4096,
    readonly: false,
    hold() {
      let release = (): void => undefined;
      gate = new Promise((resolve) => (release = resolve));
      return () => {
        gate = null;
        release();
      };
    },
    async read(offset, length) {
      if (gate !== null) await gate;
      return Buffer.from(data.subarray(offset, offset + length));
    },
    async readInto(offset, target) {
      if (gate !== null) await gate;
      data.copy(target, 0, offset, offset + target.length);
    },
    async write(offset, chunk) {
      chunk.copy(data, offset);
    },
    async flush() {},
    async trim(offset, length) {
      data.fill(0, offset, offset + length);
    },
    async writeZeroes(offset, length) {
      data.fill(0, offset, offset + length);
    },
  };
}

/** The least NBD client that can hold a connection open: NBD_OPT_EXPORT_NAME, then simple requests. */
class TinyNbdClient {
  private buffered = Buffer.alloc(0);
  private wanted: { bytes: number; resolve: (data: Buffer) => void; reject: (error: Error) => void } | null = null;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffered = Buffer.concat([this.buffered, chunk]);
      this.serve();
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.ended = true;
        this.serve();
        resolve();
      }),
    );
  }

  /** Connects and asks for the export; rejects if the server closes instead of answering. */
  static async open(path: string, name: string): Promise<TinyNbdClient> {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ path }, () => resolve(s));
      s.once('error', reject);
    });
    const client = new TinyNbdClient(socket);
    await client.take(18); // greeting
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(nbdProtocol.NBD_FLAG_C_FIXED_NEWSTYLE | nbdProtocol.NBD_FLAG_C_NO_ZEROES, 0);
    const option = Buffer.alloc(16);
    option.writeBigUInt64BE(nbdProtocol.NBD_IHAVEOPT, 0);
    option.writeUInt32BE(nbdProtocol.NBD_OPT_EXPORT_NAME, 8);
    option.writeUInt32BE(Buffer.byteLength(name), 12);
    socket.write(Buffer.concat([flags, option, Buffer.from(name)]));
    await client.take(10); // size and transmission flags, no zero padding
    return client;
  }

  /** Sends a read and returns its error and data; one request at a time. */
  async read(offset: number, length: number): Promise<{ error: number; data: Buffer }> {
    const request = Buffer.alloc(nbdProtocol.REQUEST_HEADER_BYTES);
    request.writeUInt32BE(nbdProtocol.NBD_REQUEST_MAGIC, 0);
    request.writeUInt16BE(nbdProtocol.NBD_CMD_READ, 6);
    request.writeBigUInt64BE(BigInt(offset), 16);
    request.writeUInt32BE(length, 24);
    this.socket.write(request);
    const reply = await this.take(nbdProtocol.SIMPLE_REPLY_HEADER_BYTES);
    const error = reply.readUInt32BE(4);
    return { error, data: error === 0 ? await this.take(length) : Buffer.alloc(0) };
  }

  destroy(): void {
    this.socket.destroy();
  }

  private take(bytes: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.wanted = { bytes, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const wanted = this.wanted;
    if (wanted === null) return;
    if (this.buffered.length >= wanted.bytes) {
      this.wanted = null;
      const data = this.buffered.subarray(0, wanted.bytes);
      this.buffered = this.buffered.subarray(wanted.bytes);
      wanted.resolve(data);
    } else if (this.ended) {
      this.wanted = null;
      wanted.reject(new Error('connection closed'));
    }
  }
}

/** Fails instead of hanging when what should happen does not (a hang would keep the sockets open). */
async function within(promise: Promise<unknown>, timeoutMs: number, what: string): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not within ${timeoutMs} ms: ${what}`)), timeoutMs);
  });
  try {
    await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

describe('serving helpers', () => {
  it('parses listen addresses: host:port, [v6]:port, socket paths; refuses the rest', () => {
    assert.deepEqual(parseListen('127.0.0.1:10809'), { options: { host: '127.0.0.1', port: 10809 }, key: '127.0.0.1:10809' });
    assert.deepEqual(parseListen('[::1]:99'), { options: { host: '::1', port: 99 }, key: '[::1]:99' });
    assert.deepEqual(parseListen('/run/x.sock'), { options: { path: '/run/x.sock' }, key: '/run/x.sock' });
    for (const bad of ['localhost', '1.2.3.4:0', 'h:65536', 'x.sock', ':80', '::1:80']) {
      assert.throws(() => parseListen(bad), (e: unknown) => isCairnError(e, 'EINVAL'), bad);
    }
  });

  it('orders mountpoints parents first and follows renames and subtrees', () => {
    const sorted = ['/a-b', '/a/b', '/a', '/b', '/a/b/c'].sort(compareMountpoints);
    assert.deepEqual(sorted, ['/a', '/a/b', '/a/b/c', '/a-b', '/b']);
    assert.equal(renamedDataset('tank/a/b', 'tank/a', 'tank/x'), 'tank/x/b');
    assert.equal(renamedDataset('tank/a@s', 'tank/a', 'tank/x'), 'tank/x@s');
    assert.equal(renamedDataset('tank/ab', 'tank/a', 'tank/x'), 'tank/ab', 'a sibling with a longer name is not renamed');
    assert.ok(withinDataset('tank/a/b', 'tank/a') && withinDataset('tank/a', 'tank/a') && !withinDataset('tank/ab', 'tank/a'));
  });

});

describe('NBD export table and exports', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-serving-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('an export reads and writes its volume; a read-only one refuses mutations; an ended one waits, then fails EIO', async () => {
    const volume = memoryVolume(1 << 16);
    const item = new VolumeExport('vm', 'tank/vm', '/x', volume, false);
    await item.write(100, Buffer.from('abc'));
    assert.equal((await item.read(100, 3)).toString(), 'abc');
    await item.writeZeroes(100, 1, true);
    assert.deepEqual([...(await item.read(100, 3))], [0, 0x62, 0x63]);
    const ro = new VolumeExport('ro', 'tank/vm', '/x', volume, true);
    assert.ok(ro.readonly);
    await assert.rejects(ro.write(0, Buffer.from('z')), (e: unknown) => isCairnError(e, 'EROFS'));
    await assert.rejects(ro.trim(0, 10), (e: unknown) => isCairnError(e, 'EROFS'));

    const release = volume.hold();
    const running = item.read(101, 2);
    let ended = false;
    const ending = item.end().then(() => {
      ended = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(ended, false, 'end() waits for the running read');
    release();
    assert.equal((await running).toString(), 'bc', 'the running read completes');
    await ending;
    await assert.rejects(item.read(0, 1), (e: unknown) => isCairnError(e, 'EIO'));
  });

  it('an export reads small requests through the cache (read) and large ones directly (readInto), the same bytes either way', async () => {
    const volume = memoryVolume(1 << 20);
    new Random(3).bytes(1 << 20).copy(volume.data);
    const calls: string[] = [];
    const counted: typeof volume = {
      ...volume,
      read: (offset, length) => (calls.push(`read ${length}`), volume.read(offset, length)),
      readInto: (offset, target) => (calls.push(`readInto ${target.length}`), volume.readInto(offset, target)),
    };
    const item = new VolumeExport('vm', 'tank/vm', '/x', counted, false);
    for (const [offset, length] of [[4096, 4096], [1000, 128 * 1024 - 1], [8192, 128 * 1024], [65536, 512 * 1024]] as const) {
      assert.ok((await item.read(offset, length)).equals(volume.data.subarray(offset, offset + length)), `${length} bytes at ${offset}`);
    }
    assert.deepEqual(calls, ['read 4096', 'read 131071', 'readInto 131072', 'readInto 524288']);
  });

  it('shares one listener per address; the last export to go closes it; names are unique per address', async () => {
    const lines: string[] = [];
    const table = new NbdExportTable((line) => lines.push(line));
    const socket = join(dir, 'a.sock');
    const other = join(dir, 'b.sock');
    await table.add('tank/vm', memoryVolume(8192), { listen: socket });
    await table.add('tank/vm', memoryVolume(8192), { listen: socket, name: 'second', readonly: true });
    await table.add('tank/other', memoryVolume(8192), { listen: other, name: 'second' });
    await assert.rejects(table.add('tank/vm', memoryVolume(8192), { listen: socket }), (e: unknown) => isCairnError(e, 'EEXIST'));
    assert.deepEqual(
      table.list().map((row) => [row.name, row.dataset, row.listen, row.readonly]),
      [
        ['second', 'tank/vm', socket, true],
        ['second', 'tank/other', other, false],
        ['tank/vm', 'tank/vm', socket, false],
      ],
      'by name, then address',
    );
    assert.throws(() => table.find('second'), /give --listen/);
    assert.equal(table.find('second', other).dataset, 'tank/other');
    await table.remove('tank/vm', socket);
    assert.ok(existsSync(socket), 'the listener stays while an export remains on it');
    table.renameDataset((dataset) => renamedDataset(dataset, 'tank/vm', 'tank/vm2'));
    const removed = await table.removeWhere((dataset) => withinDataset(dataset, 'tank/vm2'));
    assert.deepEqual(removed.map((row) => row.name), ['second']);
    assert.ok(!existsSync(socket), 'the last export closed the listener');
    await table.closeAll();
    assert.deepEqual(table.list(), []);
    assert.ok(!existsSync(other));
  });

  it('unexporting one of two exports on an address closes its clients, after answering them; the other serves on', { timeout: 10_000 }, async () => {
    const table = new NbdExportTable(() => undefined);
    const socket = join(dir, 'c.sock');
    const one = memoryVolume(8192);
    one.data.fill(0x11);
    const two = memoryVolume(8192);
    two.data.fill(0x22);
    await table.add('tank/one', one, { listen: socket, name: 'one' });
    await table.add('tank/two', two, { listen: socket, name: 'two' });
    const clientOne = await TinyNbdClient.open(socket, 'one');
    const clientTwo = await TinyNbdClient.open(socket, 'two');
    try {
      const release = one.hold();
      const running = clientOne.read(0, 16);
      await new Promise((resolve) => setTimeout(resolve, 20));
      const removing = table.remove('one', socket);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual((await clientTwo.read(0, 16)).data, Buffer.alloc(16, 0x22), 'the other export serves meanwhile');
      release();
      assert.deepEqual(await running, { error: 0, data: Buffer.alloc(16, 0x11) }, 'the running read is answered, not EIO');
      await within(clientOne.closed, 5_000, 'the unexported export\'s client is disconnected');
      await removing;
      assert.deepEqual(await clientTwo.read(100, 4), { error: 0, data: Buffer.alloc(4, 0x22) }, 'the other client still reads');
      await assert.rejects(TinyNbdClient.open(socket, 'one'), /closed/, 'the unexported name is refused');
      assert.deepEqual(table.list().map((row) => row.name), ['two']);
    } finally {
      clientOne.destroy();
      clientTwo.destroy();
      await table.closeAll();
    }
    await clientTwo.closed;
  });
});

describe('mount record', () => {
  it('at start, recorded paths that are not dead mounts are left alone and the record is cleared', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-mounts-'));
    try {
      const record = join(dir, 'mounts.json');
      await writeFile(record, JSON.stringify({ version: 1, mounts: [{ dataset: 'tank/a', mountpoint: dir, readonly: false }] }));
      const lines: string[] = [];
      await new MountTable(record, (line) => lines.push(line)).cleanupRecorded();
      assert.deepEqual(JSON.parse(await readFile(record, 'utf8')), { version: 1, mounts: [] });
      assert.ok(existsSync(dir), 'a plain directory is not touched');
      await writeFile(record, 'not json');
      await new MountTable(record, (line) => lines.push(line)).cleanupRecorded();
      assert.match(lines.join('\n'), /ignoring unreadable/);
      assert.deepEqual(JSON.parse(await readFile(record, 'utf8')).mounts, []);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
