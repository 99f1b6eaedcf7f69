import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createPool, findImportablePools, isCairnError, openPool } from './index.js';

describe("the library entry ('cairn')", () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-library-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('createPool, write through fs, export, openPool, read back', async () => {
    const devices = [join(dir, 'a.img'), join(dir, 'b.img')];
    const pool = await createPool({ name: 'lib', vdevSpec: ['mirror', ...devices], createSizeBytes: 64 * 1024 * 1024 });
    const data = Buffer.from('written by an embedding program\n'.repeat(1000));
    const file = await pool.fs.create(pool.fs.rootIno, 'hello.txt', { mode: 0o644 });
    assert.equal(await pool.fs.write(file.ino, 0, data), data.length);
    await pool.export();

    const found = await findImportablePools([dir]);
    assert.deepEqual(found.map((item) => item.name), ['lib']);
    const reopened = await openPool({ nameOrGuid: 'lib', searchPaths: [dir] });
    try {
      const stat = await reopened.fs.resolvePath('/hello.txt');
      assert.ok((await reopened.fs.read(stat.ino, 0, data.length + 10)).equals(data));
      await assert.rejects(openPool({ nameOrGuid: 'lib', searchPaths: [dir] }), (error: unknown) => isCairnError(error));
    } finally {
      await reopened.export();
    }
  });
});
