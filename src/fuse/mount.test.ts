/**
 * Through a real FUSE mount of a real pool: node:fs (async only — a sync call from this process would
 * wait on the mount this process serves) and real tools run as child processes (execFile, never the
 * Sync variants). Every mount is unmounted in a finally, lazily if the clean unmount fails.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import * as nodeFs from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createPool, importPool, type PoolHandle } from '../pool/index.js';
import { Random } from '../testing/random.js';
import { CairnError, ERROR_CODES, type ErrorCode } from '../util/errors.js';
import { constants as osConstants } from 'node:os';
import { cleanupStaleMount, errnoOf, fuseAvailable, mountFilesystem, type FuseMount } from './index.js';
import { run, safeUnmount } from './test-support.js';
import { ChangeReportingFs } from '../fs/index.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env['CAIRN_FUSE_SEED'] ?? 20261125);


function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function errCode(code: string): (e: unknown) => boolean {
  return (e) => (e as NodeJS.ErrnoException).code === code;
}


async function isMounted(path: string): Promise<boolean> {
  const mounts = await fsp.readFile('/proc/self/mounts', 'utf8');
  return mounts.split('\n').some((line) => line.split(' ')[1] === path);
}

describe('errnoOf', () => {
  it('maps every registered CairnError code to a real errno, and anything else to EIO', () => {
    const errno = osConstants.errno as Record<string, number>;
    for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
      const name = ERROR_CODES[code].errno;
      assert.ok(errno[name] !== undefined, `${code}: errno ${name} is not a Linux errno`);
      assert.equal(errnoOf(new CairnError(code, 'x')), errno[name], code);
    }
    assert.equal(errnoOf(new CairnError('ENOENT', 'x')), 2);
    assert.equal(errnoOf(new CairnError('ENOTEMPTY', 'x')), 39);
    assert.equal(errnoOf(new CairnError('EROFS', 'x')), 30);
    assert.equal(errnoOf(new Error('a bug')), 5);
    assert.equal(errnoOf('not even an error'), 5);
  });
});

const available = fuseAvailable();
const skip = available.ok ? false : `FUSE unavailable: ${available.reason}`;

describe('FUSE mount of a pool', { skip }, () => {
  let dir = '';
  let mnt = '';
  let devicePath = '';
  let pool: PoolHandle | null = null;
  let mount: FuseMount | null = null;
  let syncCalls = 0;
  const random = new Random(SEED);
  const big = random.bytes(20 * MiB);
  const bigHash = sha256(big);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-fuse-'));
    await fsp.chmod(dir, 0o755); // other users (the permission test) must reach the mount point
    mnt = join(dir, 'mnt');
    await mkdir(mnt);
    devicePath = join(dir, 'dev.img');
    pool = await createPool({ name: 'fusetest', vdevSpec: [devicePath], createSizeBytes: 256 * MiB, cacheSizeBytes: 16 * MiB });
    const p = pool;
    mount = await mountFilesystem(p.fs, mnt, {
      name: 'fusetest',
      onSync: async () => {
        syncCalls++;
        await p.sync();
      },
    });
  });

  after(async () => {
    try {
      await safeUnmount(mount, mnt);
      await pool?.export().catch(() => undefined);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('is a fuse mount the kernel reports, with statfs from the pool', async () => {
    assert.ok(await isMounted(mnt));
    const s = await fsp.statfs(mnt);
    assert.ok(s.blocks > 0 && s.bavail > 0 && s.bavail <= s.blocks, `statfs ${JSON.stringify(s)}`);
    const { stdout } = await run('stat', ['-f', '-c', '%T', mnt]);
    assert.match(stdout, /fuse/);
    // The read-ahead set at mount must survive INIT, which lowers it to what the kernel asked for.
    const dev = (await run('mountpoint', ['-d', mnt])).stdout.trim();
    const readAhead = await fsp.readFile(`/sys/class/bdi/${dev}/read_ahead_kb`, 'utf8').catch(() => null);
    if (readAhead !== null && process.getuid?.() === 0) assert.equal(readAhead.trim(), '4096');
  });

  it(`a random 20 MiB file reads back equal (node, cat, dd, cp), seed ${SEED}`, async () => {
    await fsp.writeFile(join(mnt, 'big.bin'), big);
    assert.equal((await fsp.stat(join(mnt, 'big.bin'))).size, big.length);
    assert.equal(sha256(await fsp.readFile(join(mnt, 'big.bin'))), bigHash, `seed ${SEED}`);
    const viaCat = await run('sh', ['-c', `cat '${join(mnt, 'big.bin')}' | sha256sum`]);
    assert.equal(viaCat.stdout.split(' ')[0], bigHash);
    // dd with odd block sizes crosses record boundaries at unaligned offsets
    await run('dd', [`if=${join(mnt, 'big.bin')}`, `of=${join(mnt, 'dd.bin')}`, 'bs=77777', 'conv=fsync', 'status=none']);
    await run('cp', [join(mnt, 'dd.bin'), join(mnt, 'cp.bin')]);
    await run('cmp', [join(mnt, 'big.bin'), join(mnt, 'cp.bin')]);
    assert.ok(syncCalls > 0, 'conv=fsync reached onSync');
    // the bytes are in the pool, not only in the kernel's page cache
    const st = await pool!.fs.resolvePath('/cp.bin');
    assert.equal(sha256(await pool!.fs.read(st.ino, 0, st.sizeBytes)), bigHash);
  });

  it('O_EXCL gives EEXIST, O_APPEND appends, O_TRUNC truncates', async () => {
    const p = join(mnt, 'flags.txt');
    await fsp.writeFile(p, 'one\n', { flag: 'wx' });
    await assert.rejects(fsp.writeFile(p, 'x', { flag: 'wx' }), errCode('EEXIST'));
    await fsp.appendFile(p, 'two\n');
    const h = await fsp.open(p, 'a');
    try {
      await h.write('three\n', 0); // position is ignored with O_APPEND on Linux
    } finally {
      await h.close();
    }
    await run('sh', ['-c', `echo four >> '${p}'`]);
    assert.equal(await fsp.readFile(p, 'utf8'), 'one\ntwo\nthree\nfour\n');
    await fsp.writeFile(p, 'new');
    assert.equal(await fsp.readFile(p, 'utf8'), 'new');
    const t = await fsp.open(p, 'r+');
    try {
      await t.truncate(1);
    } finally {
      await t.close();
    }
    assert.equal(await fsp.readFile(p, 'utf8'), 'n');
  });

  it('rename over an existing target is atomic and works across directories', async () => {
    await mkdir(join(mnt, 'r1'));
    await mkdir(join(mnt, 'r2'));
    const target = join(mnt, 'r2', 'target');
    await fsp.writeFile(target, 'v0');
    // a reader in another process must never miss the target while we replace it over and over
    const stop = join(mnt, 'r2-stop');
    const readerFailure = run('sh', ['-c', `n=0; while [ ! -e '${stop}' ]; do cat '${target}' > /dev/null || exit 7; n=$((n+1)); done; [ $n -gt 3 ] || exit 8`]).then(
      () => null,
      (e: unknown) => (e as { stderr: string }).stderr,
    );
    for (let i = 1; i <= 40; i++) {
      const tmp = join(mnt, 'r1', `tmp${i}`);
      await fsp.writeFile(tmp, `v${i}`);
      await fsp.rename(tmp, target);
    }
    await fsp.writeFile(stop, '');
    assert.equal(await readerFailure, null, 'cat never misses the target');
    assert.equal(await fsp.readFile(target, 'utf8'), 'v40');
    assert.deepEqual(await fsp.readdir(join(mnt, 'r1')), []);
    await run('mv', [target, join(mnt, 'r1', 'moved')]);
    assert.equal(await fsp.readFile(join(mnt, 'r1', 'moved'), 'utf8'), 'v40');
    await assert.rejects(fsp.rename(join(mnt, 'r1'), join(mnt, 'r1', 'inside')), errCode('EINVAL'));
  });

  it('an inode lives while the kernel holds it: unlinked behind the mount it is kept, and freed once the kernel forgets it', async () => {
    const p = join(mnt, 'held');
    await fsp.writeFile(p, 'kept');
    const ino = (await fsp.stat(p)).ino;
    const fs = pool!.fs;
    await fs.unlink(fs.rootIno, 'held'); // behind the mount, with no notice: the kernel still holds the inode
    assert.equal((await fs.getattr(ino)).nlink, 0, 'kept (nlink 0) for the kernel, not freed under it');
    assert.equal((await run('cat', [p])).stdout, 'kept', 'a path walk that found it can still read it');
    await mount!.invalidate({ kind: 'entry', parentIno: fs.rootIno, name: 'held' }); // the kernel drops the name, then forgets the inode
    const deadline = Date.now() + 10_000;
    for (;;) {
      const gone = await fs.getattr(ino).then(() => false, (e: unknown) => (e as { code?: string }).code === 'ENOENT');
      if (gone) break;
      assert.ok(Date.now() < deadline, 'freed once the kernel forgot it');
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  it('hard links share the inode and count links; symlinks resolve', async () => {
    const a = join(mnt, 'link-a');
    await fsp.writeFile(a, 'linked');
    await run('ln', [a, join(mnt, 'link-b')]);
    const sa = await fsp.stat(a);
    const sb = await fsp.stat(join(mnt, 'link-b'));
    assert.equal(sa.ino, sb.ino);
    assert.equal(sa.nlink, 2);
    assert.equal((await run('stat', ['-c', '%h', a])).stdout.trim(), '2');
    await fsp.unlink(a);
    assert.equal((await fsp.stat(join(mnt, 'link-b'))).nlink, 1);
    assert.equal(await fsp.readFile(join(mnt, 'link-b'), 'utf8'), 'linked');

    await run('ln', ['-s', 'link-b', join(mnt, 'sym')]);
    assert.equal(await fsp.readlink(join(mnt, 'sym')), 'link-b');
    assert.ok((await fsp.lstat(join(mnt, 'sym'))).isSymbolicLink());
    assert.equal(await fsp.readFile(join(mnt, 'sym'), 'utf8'), 'linked');
    const long = 'x/'.repeat(150) + 'end';
    await fsp.symlink(long, join(mnt, 'sym-long'));
    assert.equal(await fsp.readlink(join(mnt, 'sym-long')), long);
    await assert.rejects(fsp.readFile(join(mnt, 'sym-long')), errCode('ENOENT'));
  });

  it('sparse holes read as zeros', async () => {
    const p = join(mnt, 'sparse');
    const h = await fsp.open(p, 'w+');
    try {
      await h.write(Buffer.from('tail'), 0, 4, 10 * MiB + 3);
      await h.write(Buffer.from('head'), 0, 4, 0);
    } finally {
      await h.close();
    }
    const data = await fsp.readFile(p);
    assert.equal(data.length, 10 * MiB + 7);
    assert.equal(data.subarray(0, 4).toString(), 'head');
    assert.equal(data.subarray(10 * MiB + 3).toString(), 'tail');
    assert.ok(data.subarray(4, 10 * MiB + 3).every((b) => b === 0), 'hole is zeros');
    await run('truncate', ['-s', `${20 * MiB}`, p]);
    const grown = await fsp.readFile(p);
    assert.ok(grown.subarray(10 * MiB + 7).every((b) => b === 0), 'grown tail is zeros');
    const st = await fsp.stat(p);
    assert.ok(st.blocks * 512 < 4 * MiB, `holes take no space: ${st.blocks} blocks`);
  });

  it('chmod, chown and ns-precision timestamps are visible', async () => {
    const p = join(mnt, 'attrs');
    await fsp.writeFile(p, 'a');
    await fsp.chmod(p, 0o640);
    assert.equal((await fsp.stat(p)).mode & 0o7777, 0o640);
    await fsp.chown(p, 1234, 5678);
    const owned = await fsp.stat(p);
    assert.equal(owned.uid, 1234);
    assert.equal(owned.gid, 5678);
    await run('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789 UTC', p]);
    assert.equal((await run('stat', ['-c', '%.9Y', p])).stdout.trim(), '981173106.123456789');
    await fsp.utimes(p, new Date('2010-01-01T00:00:00.250Z'), new Date('2011-01-01T00:00:00.500Z'));
    const st = await fsp.stat(p, { bigint: true });
    assert.equal(st.mtimeNs, 1293840000500000000n);
    assert.equal(st.atimeNs, 1262304000250000000n);
  });

  it('directories: listing with . and .., ENOTEMPTY, ENOTDIR, many entries', async () => {
    const d = join(mnt, 'many');
    await mkdir(d);
    for (let i = 0; i < 300; i++) await fsp.writeFile(join(d, `entry-with-a-longish-name-${i}`), '');
    const names = await fsp.readdir(d);
    assert.equal(names.length, 300);
    assert.equal(new Set(names).size, 300);
    const { stdout } = await run('ls', ['-a', d]);
    const listed = stdout.split('\n').filter(Boolean);
    assert.equal(listed.length, 302);
    assert.ok(listed.includes('.') && listed.includes('..'));
    await assert.rejects(fsp.rmdir(d), errCode('ENOTEMPTY'));
    await assert.rejects(fsp.rmdir(join(d, 'entry-with-a-longish-name-0')), errCode('ENOTDIR'));
    await assert.rejects(fsp.mkdir(d), errCode('EEXIST'));
    await assert.rejects(fsp.readFile(join(mnt, 'nope')), errCode('ENOENT'));
    await assert.rejects(fsp.writeFile(join(mnt, 'n'.repeat(256)), ''), errCode('ENAMETOOLONG'));
    await run('rm', ['-r', d]);
    await assert.rejects(fsp.stat(d), errCode('ENOENT'));
  });

  it('files belong to the caller and the server checks permissions (allow_other)', async () => {
    const shared = join(mnt, 'shared');
    await mkdir(shared, { mode: 0o777 });
    await fsp.chmod(shared, 0o777);
    await run('touch', [join(shared, 'by-1000')], { uid: 1000, gid: 1000 });
    const st = await fsp.stat(join(shared, 'by-1000'));
    assert.equal(st.uid, 1000);
    assert.equal(st.gid, 1000);
    const privateDir = join(mnt, 'private');
    await mkdir(privateDir, { mode: 0o700 });
    await assert.rejects(run('touch', [join(privateDir, 'x')], { uid: 1000, gid: 1000 }), (e: unknown) => /Permission denied/.test((e as { stderr: string }).stderr));
    await assert.rejects(run('sh', ['-c', `echo x > '${join(shared, 'by-1000')}'`], { uid: 1001, gid: 1001 }), (e: unknown) => /Permission denied/.test((e as { stderr: string }).stderr));
  });

  it('names under a directory not everyone may search are checked at every walk, also right after a chmod closes it', async () => {
    const denied = (e: unknown): boolean => /Permission denied/.test((e as { stderr: string }).stderr);
    const as1000 = { uid: 1000, gid: 1000 };
    // The kernel is told to forget a closed directory's names just after the chmod's reply (docs/fuse.md):
    // a walk in that instant may still pass, so "denied" is checked for up to a second, not the 60 s
    // the names would otherwise stay cached.
    const deniedSoon = async ([command, ...args]: string[]): Promise<void> => {
      for (const started = Date.now(); ; ) {
        const passed = await run(command!, args, as1000).then(() => true, (e: unknown) => (denied(e) ? false : Promise.reject(e)));
        if (!passed) return;
        assert.ok(Date.now() - started < 1000, `${command} ${args.join(' ')} still allowed a second after the chmod`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    };
    // Open at first: the kernel caches the names root and uid 1000 walk through it.
    const closing = join(mnt, 'closing');
    await mkdir(join(closing, 'inner'), { recursive: true });
    await fsp.chmod(closing, 0o755);
    await fsp.writeFile(join(closing, 'inner', 'f'), 'seen');
    assert.equal((await run('cat', [join(closing, 'inner', 'f')], as1000)).stdout, 'seen');
    await fsp.chmod(closing, 0o700);
    await deniedSoon(['cat', join(closing, 'inner', 'f')]);
    await assert.rejects(run('stat', [join(closing, 'inner')], as1000), denied);
    assert.equal(await fsp.readFile(join(closing, 'inner', 'f'), 'utf8'), 'seen', 'root still may');
    // Closed from the start: a name root just walked is not walked by uid 1000 from the kernel's cache.
    const closed = join(mnt, 'closed-from-start');
    await mkdir(closed, { mode: 0o700 });
    await fsp.writeFile(join(closed, 'f'), 'secret', { mode: 0o644 });
    await fsp.stat(join(closed, 'f'));
    await assert.rejects(run('cat', [join(closed, 'f')], as1000), denied);
    // Moved into a closed directory: the name the kernel cached under the open one is not walked either.
    await fsp.writeFile(join(mnt, 'moving'), 'moved', { mode: 0o644 });
    assert.equal((await run('cat', [join(mnt, 'moving')], as1000)).stdout, 'moved');
    await fsp.rename(join(mnt, 'moving'), join(closed, 'moved'));
    await assert.rejects(run('cat', [join(closed, 'moved')], as1000), denied);
    // Moved into a directory all may search, which is closed afterwards: the moved name is forgotten too.
    const later = join(mnt, 'closed-later');
    await mkdir(later, { mode: 0o755 });
    await fsp.chmod(later, 0o755);
    await fsp.writeFile(join(mnt, 'moving2'), 'moved2', { mode: 0o644 });
    assert.equal((await run('cat', [join(mnt, 'moving2')], as1000)).stdout, 'moved2');
    await fsp.rename(join(mnt, 'moving2'), join(later, 'moved2'));
    await fsp.chmod(later, 0o700);
    await deniedSoon(['cat', join(later, 'moved2')]);
    // Capabilities count only where they apply: not those of a user namespace an unprivileged user
    // made, not those a root process dropped, not those of a setuid-like process whose access(2) runs
    // as its real uid.
    const usersFile = join(mnt, 'users-file');
    await fsp.writeFile(usersFile, 'private', { mode: 0o600 });
    await fsp.chown(usersFile, 1000, 1000);
    await assert.rejects(run('setpriv', ['--reuid=1001', '--regid=1001', '--clear-groups', 'unshare', '-Ur', 'cat', usersFile]), denied);
    await assert.rejects(run('setpriv', ['--bounding-set=-all', '--inh-caps=-all', 'cat', usersFile]), denied);
    assert.equal((await run('cat', [usersFile])).stdout, 'private', 'root with its capabilities may');
    const realUid = `import os, sys; os.setresuid(1001, 0, 0); print(os.access(sys.argv[1], os.R_OK), os.access(sys.argv[1], os.R_OK, effective_ids=True))`;
    assert.equal((await run('python3', ['-c', realUid, usersFile])).stdout.trim(), 'False True');
    // Times: a writer who is not the owner may set both to now (touch), not one alone (touch -a).
    const shared = join(mnt, 'shared-times');
    await fsp.writeFile(shared, '', { mode: 0o666 });
    await fsp.chmod(shared, 0o666);
    await run('touch', [shared], as1000);
    await assert.rejects(run('touch', ['-a', shared], as1000), (e: unknown) => /not permitted/.test((e as { stderr: string }).stderr));
    // Supplementary groups come from the caller's process: a group member reads a 0640 file, others do not.
    const groupFile = join(mnt, 'group-file');
    await fsp.writeFile(groupFile, 'for 4242', { mode: 0o640 });
    await fsp.chown(groupFile, 0, 4242);
    const asMember = ['--reuid=1000', '--regid=1000', '--groups=4242'];
    assert.equal((await run('setpriv', [...asMember, 'cat', groupFile])).stdout, 'for 4242');
    await assert.rejects(run('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'cat', groupFile]), denied);
    // access(2) and chdir ask the server (ACCESS).
    assert.equal((await run('setpriv', [...asMember, 'sh', '-c', `test -r '${groupFile}' && ! test -w '${groupFile}' && echo ok`])).stdout.trim(), 'ok');
    await assert.rejects(run('sh', ['-c', `cd '${closed}'`], as1000), (e: unknown) => /denied|can't cd/.test((e as { stderr: string }).stderr));
    // chgrp to a group one belongs to is allowed to the owner; to another, refused.
    await fsp.chown(groupFile, 1000, 1000);
    await run('setpriv', [...asMember, 'chgrp', '4242', groupFile]);
    assert.equal((await fsp.stat(groupFile)).gid, 4242);
    await assert.rejects(run('setpriv', [...asMember, 'chgrp', '4343', groupFile]), (e: unknown) => /not permitted/.test((e as { stderr: string }).stderr));
  });

  it('an unlinked open file stays readable until closed; flock is advisory and local', async () => {
    const p = join(mnt, 'open-unlinked');
    await fsp.writeFile(p, 'still here');
    const h = await fsp.open(p, 'r');
    try {
      await fsp.unlink(p);
      await assert.rejects(fsp.stat(p), errCode('ENOENT'));
      const buf = Buffer.alloc(10);
      await h.read(buf, 0, 10, 0);
      assert.equal(buf.toString(), 'still here');
      assert.equal((await h.stat()).nlink, 0, 'as on ext4: no links, listed nowhere');
      assert.ok(!(await fsp.readdir(mnt)).some((n) => n.includes('open-unlinked') || n.startsWith('.cairn')));
    } finally {
      await h.close();
    }

    const lockFile = join(mnt, 'lockfile');
    await fsp.writeFile(lockFile, '');
    const holder = spawn('flock', ['-x', lockFile, 'sleep', '1'], { stdio: 'ignore' });
    const holderExit = new Promise((r) => holder.once('exit', r));
    try {
      await new Promise((r) => setTimeout(r, 300));
      await assert.rejects(run('flock', ['-n', '-x', lockFile, 'true']), 'a second exclusive flock is refused');
    } finally {
      await holderExit; // killing flock would leave its sleep child holding the lock
    }
    await run('flock', ['-n', '-x', lockFile, 'true']);
  });

  it('extended attributes go to the file system when it has them', async (t) => {
    if (typeof (pool!.fs as unknown as { getxattr?: unknown }).getxattr !== 'function') {
      t.skip('FileSystemApi has no xattr calls in this tree');
      return;
    }
    const p = join(mnt, 'xattrs');
    await fsp.writeFile(p, '');
    const script = `import os,sys\np=sys.argv[1]\nos.setxattr(p,'user.colour',b'blue')\nprint(os.getxattr(p,'user.colour').decode(), sorted(os.listxattr(p)))\nos.removexattr(p,'user.colour')\ntry:\n  os.getxattr(p,'user.colour')\nexcept OSError as e:\n  print(e.errno)`;
    const { stdout } = await run('python3', ['-c', script, p]);
    assert.equal(stdout.trim(), "blue ['user.colour']\n61");
  });

  it('SELinux labels and file capabilities are not carried: EOPNOTSUPP (ls stops asking), user.* still works', async () => {
    const p = join(mnt, 'labels');
    await fsp.writeFile(p, '');
    const script = [
      'import os,sys',
      'p=sys.argv[1]',
      'import struct',
      '# a well-formed value each (the kernel checks a capability set before the file system sees it)',
      'for name, value in (("security.selinux", b"x"), ("security.capability", struct.pack("<5I", 0x02000000, 1, 0, 0, 0))):',
      ' for call in (lambda: os.getxattr(p, name), lambda: os.setxattr(p, name, value)):',
      '  try:',
      '   call(); print("no error")',
      '  except OSError as e:',
      '   print(e.errno)',
      'os.setxattr(p, "user.k", b"v"); print(os.getxattr(p, "user.k").decode())',
    ].join('\n');
    const { stdout } = await run('python3', ['-c', script, p]);
    const refused = `${osConstants.errno.EOPNOTSUPP}\n`;
    assert.equal(stdout.trim(), `${refused.repeat(4)}v`);
  });

  it('ls -l lists names with their attributes (READDIRPLUS), the same as stat of each', async () => {
    const d = join(mnt, 'plus');
    await mkdir(d);
    const sizes = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const name = `f${String(i).padStart(3, '0')}`;
      const size = (i * 7919) % 5000;
      await fsp.writeFile(join(d, name), Buffer.alloc(size, i));
      await fsp.chmod(join(d, name), 0o600 + (i % 64));
      sizes.set(name, size);
    }
    await fsp.mkdir(join(d, 'sub'));
    await fsp.symlink('f000', join(d, 'link'));
    // A listing script that reads what READDIRPLUS returned (no second stat per name through the kernel).
    const script = 'import os,sys\nfor e in sorted(os.scandir(sys.argv[1]), key=lambda e: e.name):\n  s = e.stat(follow_symlinks=False)\n  print(e.name, s.st_size, oct(s.st_mode), s.st_ino)';
    await run('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']).catch(() => undefined); // cold: the names come from READDIRPLUS
    const listed = (await run('python3', ['-c', script, d])).stdout.trim().split('\n');
    assert.equal(listed.length, 302);
    for (const line of listed) {
      const [name, size, mode, ino] = line.split(' ');
      const st = await pool!.fs.lookup((await pool!.fs.resolvePath('/plus')).ino, name!);
      assert.equal(Number(size), st.sizeBytes, `${name} size`);
      assert.equal(Number(mode), st.mode, `${name} mode`);
      assert.equal(Number(ino), st.ino, `${name} ino`);
      if (sizes.has(name!)) assert.equal(st.sizeBytes, sizes.get(name!));
    }
    const { stdout } = await run('ls', ['-l', d]);
    assert.match(stdout, /^-rw-------\s+1 \S+ \S+\s+0 .* f000$/m);
    assert.match(stdout, /^lrwxrwxrwx .* link -> f000$/m);
  });

  it('a client that sends request after request does not starve the serving process (polling for the next request is capped)', async () => {
    // A second mount that polls 200 ms for the next request, so the poll always catches the client's next
    // one: only the cap on requests taken in a row gives the event loop a turn.
    const pollMnt = join(dir, 'mnt-poll');
    await mkdir(pollMnt);
    const polling = await mountFilesystem(pool!.fs, pollMnt, { name: 'fusetest-poll', pollMicroseconds: 200_000 });
    try {
      await fsp.writeFile(join(pollMnt, 'busy'), 'x');
      const started = join(dir, 'busy-client-started');
      const stop = join(dir, 'stop-busy-client');
      // Each getxattr is a round trip to this process (the kernel caches no xattrs). The client says
      // when its first request was answered, then loops until told to stop, or by itself after 20 s.
      const script = [
        'import os, sys, time',
        'n = 0; end = time.time() + 20',
        'while not os.path.exists(sys.argv[3]) and time.time() < end:',
        '  try: os.getxattr(sys.argv[1], "user.none")',
        '  except OSError: pass',
        '  n += 1',
        '  if n == 1: open(sys.argv[2], "w").close()',
        'print(n, "stopped" if os.path.exists(sys.argv[3]) else "timed out")',
      ].join('\n');
      const client = run('python3', ['-c', script, join(pollMnt, 'busy'), started, stop]);
      // Both waits need this process's event loop to get turns while the client keeps it busy.
      while (!nodeFs.existsSync(started)) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 300));
      await fsp.writeFile(stop, '');
      const [count, how] = (await client).stdout.trim().split(' ');
      assert.equal(how, 'stopped', 'the timers fired only once the client had given up');
      // More than two runs of requests taken by polling (16 each), so the cap was what let the timers in.
      assert.ok(Number(count) > 32, `the client made ${count} requests meanwhile`);
      await rm(started);
      await rm(stop);
      await fsp.unlink(join(pollMnt, 'busy'));
    } finally {
      await safeUnmount(polling, pollMnt);
    }
  });

  it('answers are the same whichever thread writes them: the reader thread for lone small requests, the JavaScript thread for the rest', async () => {
    // replyWaitMicroseconds 0: the JavaScript thread writes every reply; 1 s: the reader thread writes
    // every lone small request's reply (also a slow one's). Threads in the client mix lone and
    // concurrent, small and large requests (64 KiB is the line) on both mounts; the data is checked.
    const script = [
      'import os, random, sys, threading, hashlib',
      'root, seed = sys.argv[1], int(sys.argv[2])',
      'errors = []; kept_all = []',
      'def work(t):',
      '  rng = random.Random(seed * 10 + t); d = os.path.join(root, f"t{t}"); os.mkdir(d); kept = {}',
      '  for i in range(60):',
      '    name = os.path.join(d, f"f{i}"); data = rng.randbytes(rng.choice([0, 1, 700, 4096, 70000, 300000]))',
      '    with open(name, "wb") as f: f.write(data)',
      '    if i % 5 == 0: os.rename(name, name + ".r"); name += ".r"',
      '    if i % 7 == 0: os.unlink(name); continue',
      '    if os.stat(name).st_size != len(data): errors.append(f"size of {name}")',
      '    with open(name, "rb") as f:',
      '      if f.read() != data: errors.append(f"data of {name}")',
      '    kept[os.path.basename(name)] = hashlib.sha256(data).hexdigest()',
      '  if sorted(os.listdir(d)) != sorted(kept): errors.append(f"listing of {d}")',
      '  try: os.stat(os.path.join(d, "missing")); errors.append("missing name found")',
      '  except FileNotFoundError: pass',
      '  kept_all.extend(f"{t} {name} {digest}" for name, digest in sorted(kept.items()))',
      'threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]',
      '[t.start() for t in threads]; [t.join() for t in threads]',
      'work(3)',
      'print("\\n".join(kept_all)); print("errors", len(errors), errors[:5])',
    ].join('\n');
    for (const replyWaitMicroseconds of [0, 1_000_000]) {
      const m = join(dir, `mnt-reply-${replyWaitMicroseconds}`);
      await mkdir(m);
      const mounted = await mountFilesystem(pool!.fs, m, { name: 'fusetest-reply', replyWaitMicroseconds });
      try {
        await mkdir(join(m, 'w'));
        const lines = (await run('python3', ['-c', script, join(m, 'w'), String(replyWaitMicroseconds)])).stdout.trim().split('\n');
        assert.equal(lines.pop(), 'errors 0 []');
        assert.ok(lines.length > 150, `${lines.length} files kept`);
        // what the file system holds, read behind the mount
        for (const line of lines) {
          const [t, name, digest] = line.split(' ');
          const st = await pool!.fs.resolvePath(`/w/t${t}/${name}`);
          const bytes = await pool!.fs.read(st.ino, 0, st.sizeBytes);
          assert.equal(sha256(bytes), digest, `t${t}/${name}`);
        }
        await run('rm', ['-rf', join(m, 'w')]);
        if (replyWaitMicroseconds === 0) assert.equal(mounted.replyStats.byReader, 0, 'the JavaScript thread wrote every reply');
        else assert.ok(mounted.replyStats.byReader > 1000, `the reader thread wrote ${mounted.replyStats.byReader} replies`);
      } finally {
        await safeUnmount(mounted, m);
      }
    }
  });

  it('the reader thread stops waiting for the replies of a request kind that keeps missing its wait, and still writes fast ones', async () => {
    // The reader waits up to 20 ms here, so a fast reply comes in time even on a loaded machine;
    // getxattr answers after 60 ms, always too late; access at once.
    const fs = pool!.fs;
    const slow = new Proxy(fs, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (typeof value !== 'function') return value;
        const bound = (value as (...a: unknown[]) => unknown).bind(target);
        if (prop === 'getxattr') return async (...args: unknown[]) => (await new Promise((resolve) => setTimeout(resolve, 60)), bound(...args));
        return bound;
      },
    });
    const m = join(dir, 'mnt-slow');
    await mkdir(m);
    const mounted = await mountFilesystem(slow, m, { name: 'fusetest-slow', replyWaitMicroseconds: 20_000 });
    try {
      await fsp.writeFile(join(m, 'file'), 'x');
      // The kernel caches no xattrs, and asks ACCESS for every access(2).
      const slowScript = 'import os, sys\nfor _ in range(40):\n  try: os.getxattr(sys.argv[1], "user.none")\n  except OSError: pass';
      const fastScript = 'import os, sys\nfor _ in range(400): os.access(sys.argv[1], os.R_OK)';
      const before = mounted.replyStats;
      await run('python3', ['-c', slowScript, join(m, 'file')]);
      const afterSlow = mounted.replyStats;
      const ranOut = afterSlow.waitsRunOut - before.waitsRunOut;
      // without learning all 40 would run out; learning: 6 misses bring it below half, then every 16th
      assert.ok(ranOut >= 5 && ranOut < 20, `${ranOut} of 40 waits for a slow reply ran out (the reader learned to skip most)`);
      await run('python3', ['-c', fastScript, join(m, 'file')]);
      const fast = mounted.replyStats.byReader - afterSlow.byReader;
      assert.ok(fast > 200, `the reader still wrote ${fast} of 400 fast replies`);
      await fsp.unlink(join(m, 'file'));
    } finally {
      await safeUnmount(mounted, m);
    }
  });

  it('a file read once is read from the page cache after it is opened again (keep cache); a change behind the mount still shows', async () => {
    // A mount of the same file system whose reads are counted: the kernel asks only for pages it lacks.
    let reads = 0;
    const fs = pool!.fs;
    const counting = new Proxy(fs, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (typeof value !== 'function') return value;
        if (prop === 'readInto') return (...args: unknown[]) => (reads++, (value as (...a: unknown[]) => unknown).apply(target, args));
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
    const m = join(dir, 'mnt-keep');
    await mkdir(m);
    const mounted = await mountFilesystem(counting, m, { name: 'fusetest-keep' });
    try {
      const data = new Random(21).bytes(3 * 1024 * 1024 + 777);
      await fsp.writeFile(join(m, 'kept'), data);
      await run('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
      const before = reads;
      assert.equal((await run('sha256sum', [join(m, 'kept')])).stdout.split(' ')[0], sha256(data));
      const afterFirst = reads;
      assert.ok(afterFirst > before, 'the first read after dropping caches reached the file system');
      assert.equal((await run('sha256sum', [join(m, 'kept')])).stdout.split(' ')[0], sha256(data));
      assert.equal(reads, afterFirst, 'opened again, the file was read from the page cache');
      // a change behind the mount, reported: the kernel drops the pages, the next open reads it anew
      const behind = new ChangeReportingFs(fs, (change) => mounted.invalidate(change));
      const ino = (await fs.resolvePath('/kept')).ino;
      await behind.write(ino, 4096, Buffer.from('CHANGED BEHIND'));
      data.write('CHANGED BEHIND', 4096);
      assert.equal((await run('sha256sum', [join(m, 'kept')])).stdout.split(' ')[0], sha256(data));
      assert.ok(reads > afterFirst, 'read again after the change');
      await fsp.unlink(join(m, 'kept'));
    } finally {
      await safeUnmount(mounted, m);
    }
  });

  it('changes made behind the mount show through it at once when reported (names, attributes and data are cached 60 s)', async () => {
    const p = pool!;
    const behind = new ChangeReportingFs(p.fs, (change) => mount!.invalidate(change));
    const d = join(mnt, 'behind');
    await mkdir(d);
    const dirIno = (await p.fs.resolvePath('/behind')).ino;
    const statOf = (path: string) => run('stat', ['-c', '%s %a %h', path]).then((r) => r.stdout.trim(), () => 'ENOENT');
    // the mount has seen the name missing (a negative entry) and the directory's attributes
    assert.equal(await statOf(join(d, 'f')), 'ENOENT');
    const before = await statOf(d);
    assert.equal((await run('ls', ['-A', d])).stdout, '', 'the (empty) listing is cached in the kernel now');
    const f = await behind.create(dirIno, 'f', { mode: 0o640 });
    assert.equal((await run('ls', ['-A', d])).stdout, 'f\n', 'the cached listing was dropped');
    await behind.write(f.ino, 0, Buffer.from('first'));
    assert.equal(await statOf(join(d, 'f')), '5 640 1');
    assert.equal((await run('cat', [join(d, 'f')])).stdout, 'first');
    // data the kernel has in its page cache, replaced behind it
    await behind.write(f.ino, 0, Buffer.from('SECOND'));
    assert.equal((await run('cat', [join(d, 'f')])).stdout, 'SECOND');
    await behind.setattr(f.ino, { mode: 0o604 });
    assert.equal(await statOf(join(d, 'f')), '6 604 1');
    await behind.link(f.ino, dirIno, 'g');
    assert.equal(await statOf(join(d, 'f')), '6 604 2');
    await behind.rename(dirIno, 'g', dirIno, 'h');
    assert.equal(await statOf(join(d, 'g')), 'ENOENT');
    assert.equal(await statOf(join(d, 'h')), '6 604 2');
    await behind.unlink(dirIno, 'h');
    assert.equal(await statOf(join(d, 'f')), '6 604 1');
    await behind.mkdir(dirIno, 'sub', { mode: 0o755 });
    assert.notEqual(await statOf(d), before, 'the nlink of the directory changed');
    await behind.rmdir(dirIno, 'sub');
    await behind.unlink(dirIno, 'f');
    assert.equal(await statOf(join(d, 'f')), 'ENOENT');
    assert.equal((await run('ls', ['-A', d])).stdout, '');
  });

  it('a read-only mount refuses every write with EROFS and reads the same data', async () => {
    const roMnt = join(dir, 'ro');
    await mkdir(roMnt);
    let ro: FuseMount | null = null;
    try {
      ro = await mountFilesystem(pool!.fs, roMnt, { readonly: true, name: 'fusetest-ro' });
      assert.equal(sha256(await fsp.readFile(join(roMnt, 'big.bin'))), bigHash);
      await assert.rejects(fsp.writeFile(join(roMnt, 'new'), 'x'), errCode('EROFS'));
      await assert.rejects(fsp.appendFile(join(roMnt, 'big.bin'), 'x'), errCode('EROFS'));
      await assert.rejects(fsp.mkdir(join(roMnt, 'd')), errCode('EROFS'));
      await assert.rejects(fsp.unlink(join(roMnt, 'big.bin')), errCode('EROFS'));
      await assert.rejects(fsp.rename(join(roMnt, 'big.bin'), join(roMnt, 'x')), errCode('EROFS'));
      await assert.rejects(fsp.chmod(join(roMnt, 'big.bin'), 0o600), errCode('EROFS'));
      await assert.rejects(fsp.symlink('a', join(roMnt, 's')), errCode('EROFS'));
    } finally {
      await safeUnmount(ro, roMnt);
    }
    assert.ok(!(await isMounted(roMnt)));
  });

  it('after unmount, export and import the data is still there (and mounts again)', async () => {
    // Spawning while this process holds a file of its own mount open: exec closes the fd, the close
    // sends FLUSH while the JavaScript thread waits for the exec; the reader thread must answer it.
    const own = await fsp.open(join(mnt, 'big.bin'), 'r');
    try {
      await run('true', []);
    } finally {
      await own.close();
    }
    const holder = spawn('sh', ['-c', `exec 3< '${join(mnt, 'big.bin')}'; sleep 1`], { stdio: 'ignore' });
    const holderExit = new Promise((r) => holder.once('exit', r));
    try {
      await new Promise((r) => setTimeout(r, 300));
      await assert.rejects(mount!.unmount(), (e: unknown) => e instanceof CairnError && e.code === 'EBUSY');
      assert.ok(await isMounted(mnt), 'a busy mount stays mounted and served');
      assert.equal((await fsp.stat(join(mnt, 'big.bin'))).size, big.length);
    } finally {
      await holderExit;
    }
    await mount!.unmount();
    mount = null;
    assert.ok(!(await isMounted(mnt)));
    await pool!.export();
    pool = await importPool({ searchPaths: [devicePath], cacheSizeBytes: 16 * MiB });
    mount = await mountFilesystem(pool.fs, mnt, { name: 'fusetest' });
    assert.equal(sha256(await fsp.readFile(join(mnt, 'big.bin'))), bigHash);
    assert.equal(sha256(await fsp.readFile(join(mnt, 'cp.bin'))), bigHash);
    assert.equal(await fsp.readFile(join(mnt, 'r1', 'moved'), 'utf8'), 'v40');
    assert.equal(await fsp.readlink(join(mnt, 'sym')), 'link-b');
    assert.equal((await fsp.stat(join(mnt, 'attrs'))).mode & 0o7777, 0o640);
  });
});

describe('cleanupStaleMount', { skip }, () => {
  it('lazily unmounts a mount whose daemon is gone and leaves other paths alone', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cairn-fuse-stale-'));
    const mnt = join(dir, 'mnt');
    await mkdir(mnt);
    try {
      assert.equal(await cleanupStaleMount(mnt), false, 'a plain directory is left alone');
      // A daemon that dies: mount with a /dev/fuse fd, then close it without ever serving.
      const fd = nodeFs.openSync('/dev/fuse', 'r+');
      try {
        await new Promise<void>((resolve, reject) => {
          const child = spawn('mount', ['-i', '-t', 'fuse.cairn', '-o', 'fd=3,rootmode=40000,user_id=0,group_id=0', 'stale', mnt], { stdio: ['ignore', 'ignore', 'inherit', fd] });
          child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mount exit ${code}`))));
        });
      } finally {
        nodeFs.closeSync(fd);
      }
      await assert.rejects(fsp.stat(mnt), errCode('ENOTCONN'));
      assert.equal(await cleanupStaleMount(mnt), true);
      assert.ok(!(await isMounted(mnt)));
      assert.ok((await fsp.stat(mnt)).isDirectory());
    } finally {
      await run('umount', ['-l', mnt]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});
