import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BlockVolume } from '../dataset/index.js';
import { isCairnError } from '../util/errors.js';
import { MountTable, compareMountpoints, mountsMax, renamedDataset, withinDataset } from './mounts.js';
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

  it('caps mounts below the libuv thread pool size', () => {
    assert.equal(mountsMax({}), 1);
    assert.equal(mountsMax({ UV_THREADPOOL_SIZE: '64' }), 61);
    assert.equal(mountsMax({ UV_THREADPOOL_SIZE: 'x' }), 1);
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
