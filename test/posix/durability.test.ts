/**
 * Through FUSE mounts: fsync/fdatasync are durable across a crash of the serving pool, a snapshot's
 * mount is read-only (EROFS on every write), another dataset's mount is EXDEV, a quota gives EDQUOT and a full
 * pool ENOSPC — each within a bounded time, never a hang. Calls on the mounts come from child
 * processes; the test process only serves the mounts and checks the pool through the library.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { isCairnError } from '../../src/util/errors.js';
import { checks, makeRig, MiB, PYTHON, readPath, run, sha256, skipUnlessFuse, type Rig } from './harness.js';

const SEED = Number(process.env['CAIRN_POSIX_SEED'] ?? 777);
/** A write to a full pool or over quota must fail by then, not hang. */
const FAIL_WITHIN_MS = 60_000;

/**
 * Frees are committed with a txg (as in ZFS, space and quota usage come back at sync, not at unlink):
 * each attempt first syncs the file system (fsync of its root directory), then writes. Returns '' on
 * success, else the last error.
 */
async function writeAfterSyncs(mnt: string, name: string, sizeMiB: number): Promise<string> {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    await run('sync', [mnt]);
    const dd = await run('dd', ['if=/dev/urandom', `of=${join(mnt, name)}`, 'bs=1M', `count=${sizeMiB}`, 'conv=fsync', 'status=none'], { timeoutMs: FAIL_WITHIN_MS });
    if (dd.code === 0) return '';
    last = dd.stderr || `dd exit ${dd.code ?? dd.signal}`;
  }
  return last;
}

describe('durability and read-only mounts through FUSE', { skip: skipUnlessFuse }, () => {
  let rig: Rig;

  before(async () => {
    rig = await makeRig('durable');
  });

  after(async () => {
    await rig?.close();
  });

  it(`fsync and fdatasync are durable on return: a crash right after the writer exits keeps every byte (seed ${SEED})`, async () => {
    const mnt = await rig.mountDataset('p/fs');
    await rig.pool.sync(); // the dataset itself is committed; what follows is only made durable by fsync
    const result = await checks('durable_write', [mnt, String(SEED)]);
    const written = result.get('written') as Record<string, string>;
    assert.deepEqual(Object.keys(written).sort(), ['fsynced.bin', 'renamed.bin']);
    // No sync of our own: unmount (which does not sync), then close the devices as a crash would.
    const pool = await rig.crashAndImport();
    const fs = await pool.datasets.open('p/fs');
    for (const [path, digest] of Object.entries(written)) {
      assert.equal(sha256(await readPath(fs, `/${path}`)), digest, `${path} after the crash, seed ${SEED}`);
    }
    for (const path of result.get('gone') as string[]) {
      await assert.rejects(fs.resolvePath(`/${path}`), (e: unknown) => isCairnError(e, 'ENOENT'), `${path} was unlinked or renamed away before the directory fsync`);
    }
  });

  it('a snapshot mounts read-only: every write is EROFS, it shows the data as of the snapshot; across mounts is EXDEV', async () => {
    const mnt = await rig.mountDataset('p/snapsrc');
    const digest = (await checks('snapshot_source', [mnt, String(SEED)])).get('digest') as string;
    await rig.pool.datasets.snapshot('p/snapsrc@s');
    const changed = (await checks('overwrite', [mnt, 'ro.bin'])).get('digest');
    assert.notEqual(changed, digest);
    const snapMnt = await rig.mountDataset('p/snapsrc@s', { readonly: true });
    const r = await checks('erofs', [snapMnt, 'ro.bin', digest]);
    assert.equal(r.get('read_ok'), true, 'the snapshot mount reads the data as it was at the snapshot');
    assert.equal(r.get('xattr_readable'), 'kept');
    const ops = r.get('write_ops') as Record<string, string>;
    const notErofs = Object.entries(ops).filter(([, result]) => result !== 'EROFS');
    assert.deepEqual(notErofs, [], `every write on the snapshot is EROFS: ${JSON.stringify(ops)}`);
    assert.deepEqual(r.get('unchanged'), [true, ['dir', 'ro.bin']]);
    await rig.unmount('p/snapsrc@s');
    // (at most two mounts at once: each holds a libuv thread in its read of /dev/fuse)
    const other = await rig.mountDataset('p/other');
    const cross = await checks('cross_mount', [mnt, other, 'ro.bin']);
    assert.equal(cross.get('rename_across_mounts'), 'EXDEV');
    assert.equal(cross.get('link_across_mounts'), 'EXDEV');
    await rig.unmount('p/other');
    await rig.unmount('p/snapsrc');
  });

  it('writing 16 MiB into a dataset with quota=8M fails with EDQUOT ("Disk quota exceeded"), promptly', async () => {
    await rig.pool.datasets.create('p/q');
    await rig.pool.datasets.setProperty('p/q', 'quota', '8M');
    const mnt = await rig.mountDataset('p/q', { create: false });
    const df = await run('stat', ['-f', '-c', '%b %S', mnt]);
    const [blocks, blockBytes] = df.stdout.trim().split(' ').map(Number);
    assert.ok(blocks! * blockBytes! <= 8 * MiB, `statfs of a dataset with quota=8M shows its size as the quota, as zfs does (${blocks! * blockBytes!} bytes)`);
    const started = Date.now();
    const dd = await run('dd', ['if=/dev/urandom', `of=${join(mnt, 'f')}`, 'bs=1M', 'count=16', 'conv=fsync', 'status=none'], { timeoutMs: FAIL_WITHIN_MS });
    assert.equal(dd.signal, null, `dd was killed after ${Date.now() - started} ms: a hang, not EDQUOT`);
    assert.notEqual(dd.code, 0, 'dd of 16 MiB into an 8 MiB quota succeeded');
    assert.match(dd.stderr, /Disk quota exceeded/);
    const stat = await run('stat', ['-c', '%s', join(mnt, 'f')]);
    const sizeBytes = Number(stat.stdout.trim());
    assert.ok(sizeBytes <= 9 * MiB, `${sizeBytes} bytes landed under an 8 MiB quota`);
    // removing the file gives the space back once the frees are committed: a write fits again
    await run('rm', [join(mnt, 'f')]);
    assert.equal(await writeAfterSyncs(mnt, 'g', 2), '', 'after rm and a few syncs, a 2 MiB write under the quota still fails');
    await rig.unmount('p/q');
  });
});

describe('a full pool through FUSE', { skip: skipUnlessFuse }, () => {
  let rig: Rig;

  before(async () => {
    rig = await makeRig('full', { deviceSizeBytes: 64 * MiB });
  });

  after(async () => {
    await rig?.close();
  });

  it('filling the pool gives ENOSPC ("No space left on device") within a bounded time, and deleting frees space again', async () => {
    const mnt = await rig.mountDataset('p/fill');
    const started = Date.now();
    const dd = await run('dd', ['if=/dev/urandom', `of=${join(mnt, 'fill')}`, 'bs=1M', 'count=256', 'conv=fsync', 'status=none'], { timeoutMs: FAIL_WITHIN_MS });
    assert.equal(dd.signal, null, `dd was killed after ${Date.now() - started} ms: a hang, not ENOSPC`);
    assert.notEqual(dd.code, 0, 'dd of 256 MiB into a 64 MiB pool succeeded');
    assert.match(dd.stderr, /No space left on device/);
    // metadata changes on a full pool succeed or say ENOSPC, never EIO, never hang
    for (const [command, args] of [['mkdir', [join(mnt, 'd')]], ['touch', [join(mnt, 't')]], [PYTHON, ['-c', 'import os, sys; os.setxattr(sys.argv[1], "user.x", b"y")', join(mnt, 'fill')]]] as const) {
      const r = await run(command, [...args], { timeoutMs: FAIL_WITHIN_MS });
      assert.equal(r.signal, null, `${command} on a full pool hung`);
      assert.ok(r.code === 0 || /No space left on device/.test(r.stderr), `${command} on a full pool: ${r.stderr}`);
    }
    // still a working file system: metadata reads, the partial file is readable
    const ls = await run('ls', ['-l', mnt]);
    assert.equal(ls.code, 0, ls.stderr);
    const cat = await run('sh', ['-c', `cat '${join(mnt, 'fill')}' > /dev/null`]);
    assert.equal(cat.code, 0, cat.stderr);
    const rm = await run('rm', [join(mnt, 'fill')]);
    assert.equal(rm.code, 0, rm.stderr);
    assert.equal(await writeAfterSyncs(mnt, 'after', 4), '', 'after deleting the big file and a few syncs, a 4 MiB write still fails');
    const pool = await rig.reimport();
    const fs = await pool.datasets.open('p/fill');
    assert.equal((await fs.resolvePath('/after')).sizeBytes, 4 * MiB);
  });
});
