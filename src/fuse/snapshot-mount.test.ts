/**
 * `.cairn/snapshot` through a real FUSE mount of a real pool dataset. Every check on the mount runs in a
 * child process (execFile/spawn, never a Sync call): this process serves the mount and would wait on
 * itself (docs/fuse.md).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPool, type PoolHandle } from '../pool/index.js';
import type { FileSystemApi } from '../fs/types.js';
import { fuseAvailable, mountFilesystem, type FuseMount } from './index.js';
import { run as runChild, safeUnmount } from './test-support.js';
import type { SnapshotProvider } from './snapshot-dir.js';
// The daemon's wiring (api/mounts.ts) is checked here too, through the same real pool and mount: the one
// place the test reaches up a layer.
import { MountTable } from '../api/mounts.js';

const MiB = 1024 * 1024;
const POOL = 'snapmnt';
const DATASET = `${POOL}/home`;
const OLD_MTIME = '2001-02-03 04:05:06.123456789 UTC';
const OLD_MTIME_SECONDS = '981173106.123456789';
/** The kernel may keep a dentry this long after the listing changed (the adapter's entry timeout, 1 s). */
const DISAPPEAR_WAIT_MS = 5000;

/** A tool with a time limit: a hang here means a wedged mount, not a slow test. */
function run(command: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return runChild(command, args, { timeout: 15_000 });
}

async function lines(command: string, args: string[]): Promise<string[]> {
  return (await run(command, args)).stdout.split('\n').filter(Boolean);
}


/**
 * A shell command run inside `dir`. Never spawn with `cwd` on the mount: the child's chdir happens before
 * exec, while this process's event loop waits for the exec, so the lookup it needs is never answered.
 */
function runIn(dir: string, script: string): Promise<{ stdout: string; stderr: string }> {
  return run('sh', ['-c', `cd '${dir}' && ${script}`]);
}

/** Tries each change under .cairn from one child process; prints errno names (or "ok"), one per line. */
const MUTATIONS_PY = `
import errno, os, sys
m = sys.argv[1]
s = os.path.join(m, '.cairn', 'snapshot')
f = os.path.join(s, 'before', 'a.txt')
def t(fn):
    try:
        fn(); return 'ok'
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
ops = [
  ('write', lambda: open(f, 'w').close()),
  ('append', lambda: open(f, 'a').close()),
  ('create', lambda: open(os.path.join(s, 'before', 'new'), 'x').close()),
  ('unlink', lambda: os.unlink(f)),
  ('chmod', lambda: os.chmod(f, 0o600)),
  ('utime', lambda: os.utime(f, (1, 1))),
  ('truncate', lambda: os.truncate(f, 0)),
  ('rename', lambda: os.rename(f, os.path.join(s, 'before', 'b'))),
  ('symlink', lambda: os.symlink('a.txt', os.path.join(s, 'before', 'l'))),
  ('mkdir-in-snapshot', lambda: os.mkdir(os.path.join(s, 'before', 'd'))),
  ('mkdir-snapshot', lambda: os.mkdir(os.path.join(s, 'new'))),
  ('rmdir-snapshot', lambda: os.rmdir(os.path.join(s, 'before'))),
  ('rmdir-subdir', lambda: os.rmdir(os.path.join(s, 'before', 'sub'))),
  ('setxattr', lambda: os.setxattr(f, 'user.x', b'1')),
  ('mkdir-in-control', lambda: os.mkdir(os.path.join(m, '.cairn', 'x'))),
  ('link-out', lambda: os.link(f, os.path.join(m, 'linked'))),
  ('mkdir-control', lambda: os.mkdir(os.path.join(m, '.cairn'))),
  ('rmdir-control', lambda: os.rmdir(os.path.join(m, '.cairn'))),
  ('rename-control', lambda: os.rename(os.path.join(m, '.cairn'), os.path.join(m, 'x'))),
  ('rename-onto-control', lambda: os.rename(os.path.join(m, 'sub'), os.path.join(m, '.cairn'))),
]
for name, fn in ops:
    print(name, t(fn))
`;

/** Opens a file, says so, waits for a line on stdin, then reads it and prints "read <text>" or the errno name. */
const HOLD_AND_READ_PY = `
import errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print('open', flush=True)
sys.stdin.readline()
try:
    print('read', os.pread(fd, 64, 0).decode(), flush=True)
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
`;

const available = fuseAvailable();
const skip = available.ok ? false : `FUSE unavailable: ${available.reason}`;

describe('.cairn/snapshot through a FUSE mount', { skip, timeout: 60_000 }, () => {
  let dir = '';
  let mnt = '';
  let visibleMnt = '';
  let pool: PoolHandle | null = null;
  let live: FileSystemApi;
  let mount: FuseMount | null = null;
  let visible: FuseMount | null = null;

  const provider: SnapshotProvider = {
    list: () =>
      pool!.datasets
        .list()
        .filter((e) => e.name.startsWith(`${DATASET}@`))
        .map((e) => e.name.slice(DATASET.length + 1)),
    open: (s) => pool!.datasets.open(`${DATASET}@${s}`),
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-fuse-snap-'));
    await fsp.chmod(dir, 0o755);
    mnt = join(dir, 'mnt');
    visibleMnt = join(dir, 'visible');
    await mkdir(mnt);
    await mkdir(visibleMnt);
    pool = await createPool({ name: POOL, vdevSpec: [join(dir, 'dev.img')], createSizeBytes: 128 * MiB, cacheSizeBytes: 8 * MiB });
    await pool.datasets.create(DATASET);
    live = await pool.datasets.open(DATASET);
    const p = pool;
    mount = await mountFilesystem(live, mnt, { name: DATASET, snapshots: provider, onSync: () => p.sync() });
    // the old state, made through the mount by real tools, then snapshotted
    await runIn(mnt, `printf old > a.txt && chmod 640 a.txt && touch -m -d '${OLD_MTIME}' a.txt && mkdir sub && printf deep > sub/b.txt && ln -s a.txt link`);
    await pool.datasets.snapshot(`${DATASET}@before`);
  });

  after(async () => {
    try {
      await safeUnmount(visible, visibleMnt);
      await safeUnmount(mount, mnt);
      await pool?.export().catch(() => undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });


  it('lists snapshots taken before and after the mount; a new one is reachable at once', async () => {
    assert.deepEqual(await lines('ls', [join(mnt, '.cairn')]), ['snapshot']);
    assert.deepEqual(await lines('ls', [join(mnt, '.cairn', 'snapshot')]), ['before']);
    await runIn(mnt, 'printf new > a.txt && rm sub/b.txt');
    await pool!.datasets.snapshot(`${DATASET}@after`);
    // a lookup of a name the cached listing lacks asks the provider again
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/after/a.txt')])).stdout, 'new');
    assert.deepEqual(await lines('ls', [join(mnt, '.cairn', 'snapshot')]), ['after', 'before']);
    const { stdout } = await runIn(mnt, 'cd .cairn/snapshot/before && pwd && ls');
    assert.deepEqual(stdout.split('\n').filter(Boolean), [join(mnt, '.cairn/snapshot/before'), 'a.txt', 'link', 'sub']);
  });

  it('a snapshot holds the old data while the live file changed', async () => {
    assert.equal((await run('cat', [join(mnt, 'a.txt')])).stdout, 'new');
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/before/a.txt')])).stdout, 'old');
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/before/sub/b.txt')])).stdout, 'deep');
    await assert.rejects(run('cat', [join(mnt, 'sub/b.txt')]), /No such file/);
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/before/link')])).stdout, 'old', 'a symlink resolves inside the snapshot');
    assert.equal((await run('readlink', [join(mnt, '.cairn/snapshot/before/link')])).stdout.trim(), 'a.txt');
    await run('cmp', [join(mnt, 'a.txt'), join(mnt, '.cairn/snapshot/after/a.txt')]);
  });

  it('another user lists snapshots and reads by the snapshot files\' own modes; writes are EROFS first', async () => {
    const as1000 = { uid: 1000, gid: 1000 };
    assert.ok((await runChild('ls', [join(mnt, '.cairn/snapshot')], as1000)).stdout.includes('before'));
    assert.equal((await runChild('cat', [join(mnt, '.cairn/snapshot/before/sub/b.txt')], as1000)).stdout, 'deep');
    await assert.rejects(runChild('cat', [join(mnt, '.cairn/snapshot/before/a.txt')], as1000), (e: unknown) => /Permission denied/.test((e as { stderr: string }).stderr));
    await assert.rejects(runChild('sh', ['-c', `echo x >> '${join(mnt, '.cairn/snapshot/before/sub/b.txt')}'`], as1000), (e: unknown) => /Read-only file system/.test((e as { stderr: string }).stderr));
  });

  it('stat shows original modes and times, and inode numbers apart from the live ones', async () => {
    const fmt = ['-c', '%a %.9Y %i %s'];
    const [liveMode, , liveIno] = (await run('stat', [...fmt, join(mnt, 'a.txt')])).stdout.trim().split(' ');
    const [snapMode, snapMtime, snapIno, snapSize] = (await run('stat', [...fmt, join(mnt, '.cairn/snapshot/before/a.txt')])).stdout.trim().split(' ');
    const [, , afterIno] = (await run('stat', [...fmt, join(mnt, '.cairn/snapshot/after/a.txt')])).stdout.trim().split(' ');
    assert.equal(snapMode, '640');
    assert.equal(liveMode, '640');
    assert.equal(snapMtime, OLD_MTIME_SECONDS, 'the snapshot keeps the mtime set before it');
    assert.equal(snapSize, '3');
    assert.notEqual(snapIno, liveIno);
    assert.notEqual(snapIno, afterIno);
    assert.notEqual(liveIno, afterIno);
    const roots = await lines('stat', ['-c', '%i', mnt, join(mnt, '.cairn'), join(mnt, '.cairn/snapshot'), join(mnt, '.cairn/snapshot/before'), join(mnt, '.cairn/snapshot/after')]);
    assert.equal(new Set(roots).size, 5, `distinct directory inodes: ${roots.join(' ')}`);
    // ls -i takes d_ino from readdir: it agrees with stat's number inside a snapshot
    const [lsIno] = (await runIn(mnt, 'ls -i .cairn/snapshot/before | grep a.txt')).stdout.trim().split(/\s+/);
    assert.equal(lsIno, snapIno);
    assert.equal((await run('stat', ['-c', '%A', join(mnt, '.cairn')])).stdout.trim(), 'dr-xr-xr-x');
  });

  it('every change under .cairn fails (EROFS), .cairn itself cannot be made, removed or renamed', async () => {
    const { stdout } = await run('python3', ['-c', MUTATIONS_PY, mnt]);
    const got = Object.fromEntries(stdout.trim().split('\n').map((line) => line.split(' ') as [string, string]));
    assert.deepEqual(got, {
      write: 'EROFS',
      append: 'EROFS',
      create: 'EROFS',
      unlink: 'EROFS',
      chmod: 'EROFS',
      utime: 'EROFS',
      truncate: 'EROFS',
      rename: 'EROFS',
      symlink: 'EROFS',
      'mkdir-in-snapshot': 'EROFS',
      'mkdir-snapshot': 'EROFS',
      'rmdir-snapshot': 'EROFS',
      'rmdir-subdir': 'EROFS',
      setxattr: 'EROFS',
      'mkdir-in-control': 'EROFS',
      'link-out': 'EXDEV',
      'mkdir-control': 'EEXIST',
      'rmdir-control': 'EBUSY',
      'rename-control': 'EBUSY',
      'rename-onto-control': 'EBUSY',
    });
    await assert.rejects(run('sh', ['-c', `echo x > '${join(mnt, '.cairn/snapshot/before/a.txt')}'`]), /Read-only file system/);
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/before/a.txt')])).stdout, 'old', 'nothing changed');
    assert.deepEqual(await lines('ls', [join(mnt, '.cairn', 'snapshot')]), ['after', 'before']);
  });

  it('.cairn is hidden from the root listing unless snapdir=visible', async () => {
    const hidden = await lines('ls', ['-a', mnt]);
    assert.ok(!hidden.includes('.cairn'), `hidden: ${hidden.join(' ')}`);
    assert.ok(hidden.includes('a.txt'));
    visible = await mountFilesystem(live, visibleMnt, { name: `${DATASET}-visible`, snapshots: provider, snapdir: 'visible' });
    assert.deepEqual(await lines('ls', ['-a', visibleMnt]), ['.', '..', '.cairn', 'a.txt', 'link', 'sub']);
    assert.equal((await run('cat', [join(visibleMnt, '.cairn/snapshot/before/a.txt')])).stdout, 'old');
    await visible.unmount();
    visible = null;
  });

  it('the daemon mount table serves the snapshots with the snapdir property, and follows a rename', async () => {
    const table = new MountTable(join(dir, 'mounts.json'), () => undefined, 4);
    const tableMnt = join(dir, 'table');
    await pool!.datasets.setProperty(DATASET, 'snapdir', 'visible');
    const p = pool!;
    await table.mount({ dataset: DATASET, mountpoint: tableMnt, readonly: false, followsProperty: false, fs: live, onSync: () => p.sync(), datasets: p.datasets });
    try {
      assert.ok((await lines('ls', ['-a', tableMnt])).includes('.cairn'), 'snapdir=visible from the property');
      assert.equal((await run('cat', [join(tableMnt, '.cairn/snapshot/before/a.txt')])).stdout, 'old');
      const renamed = `${POOL}/renamed`;
      await p.datasets.rename(DATASET, renamed);
      await table.renameDataset(DATASET, renamed);
      try {
        await p.datasets.snapshot(`${renamed}@late`);
        assert.equal((await run('cat', [join(tableMnt, '.cairn/snapshot/late/a.txt')])).stdout, 'new', 'snapshots of the renamed dataset');
      } finally {
        await p.datasets.destroy(`${renamed}@late`);
        await p.datasets.rename(renamed, DATASET);
      }
    } finally {
      await table.closeAll();
      await p.datasets.setProperty(DATASET, 'snapdir', 'hidden');
    }
  });

  it('a destroyed snapshot disappears; a file open in it reads ESTALE, and the mount lives on', async () => {
    await pool!.datasets.snapshot(`${DATASET}@doomed`);
    const reader = spawn('python3', ['-c', HOLD_AND_READ_PY, join(mnt, '.cairn/snapshot/doomed/a.txt')], { stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    reader.stdout.setEncoding('utf8');
    const opened = new Promise<void>((resolve) => reader.stdout.on('data', (chunk: string) => ((out += chunk), out.includes('open') && resolve())));
    const exited = new Promise<number | null>((resolve) => reader.on('exit', resolve));
    try {
      await opened;
      await pool!.datasets.destroy(`${DATASET}@doomed`);
      await pool!.datasets.destroy(`${DATASET}@after`);
      reader.stdin.end('go\n');
      assert.equal(await exited, 0);
    } finally {
      reader.kill();
    }
    assert.equal(out.trim().split('\n')[1], 'ESTALE', `read after destroy: ${out}`);
    const deadline = Date.now() + DISAPPEAR_WAIT_MS;
    let listed = await lines('ls', [join(mnt, '.cairn', 'snapshot')]);
    while (listed.length !== 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      listed = await lines('ls', [join(mnt, '.cairn', 'snapshot')]);
    }
    assert.deepEqual(listed, ['before']);
    for (;;) {
      const gone = await run('stat', [join(mnt, '.cairn/snapshot/after/a.txt')]).then(
        () => false,
        (e: { stderr: string }) => /No such file/.test(e.stderr),
      );
      if (gone) break;
      assert.ok(Date.now() < deadline, 'a destroyed snapshot stays reachable past the dentry timeout');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal((await run('cat', [join(mnt, '.cairn/snapshot/before/a.txt')])).stdout, 'old');
    assert.equal((await run('cat', [join(mnt, 'a.txt')])).stdout, 'new');
  });
});
