import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { fuseAvailable } from '../../src/fuse/index.js';
import { CairnSandbox, alive, isOneLineError, seededBytes } from './harness.js';

const SEED = Number(process.env['CAIRN_SEED'] ?? Date.now() % 2 ** 31);
const MIB = 1024 * 1024;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function haveTool(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

/** Runs a real tool in a child process (never from the daemon, never synchronously against a mount). */
function tool(command: string, args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(command, args, { encoding: 'buffer', maxBuffer: 256 * MIB, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
      resolve({ code, stdout, stderr: stderr.toString('utf8') });
    });
  });
}

async function okTool(command: string, args: string[]): Promise<Buffer> {
  const result = await tool(command, args);
  assert.equal(result.code, 0, `${command} ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

function sh(script: string): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return tool('sh', ['-c', script]);
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address !== null && typeof address === 'object');
  return address.port;
}

/** Mount points from /proc/mounts (octal escapes undone). */
function mountedPaths(): string[] {
  return readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[1] ?? '').replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))))
    .filter((path) => path !== '');
}

const nbdToolsMissing = ['nbdinfo', 'nbdcopy', 'qemu-img'].filter((name) => !haveTool(name));
const fuse = fuseAvailable();
const fuseSkip = !fuse.ok ? `FUSE mounts unavailable: ${fuse.reason}` : process.getuid?.() !== 0 ? 'FUSE mounts need root' : false;

describe(`NBD exports and FUSE mounts served by cairnd (seed ${SEED})`, () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('serve');
    await box.ok(['pool', 'create', '-s', '256M', 'tank', 'a.img']);
  });

  after(async () => {
    // Never leave a mount behind, whatever failed: ask the daemon, then detach anything left under our dir.
    if (box.daemonPid() !== null) await box.run(['unmount', '-a', '-f']);
    for (const path of mountedPaths().filter((p) => p.startsWith(box.dir)).reverse()) await tool('umount', ['-l', path]);
    await box.stop();
  });

  describe('NBD', { skip: nbdToolsMissing.length > 0 ? `missing ${nbdToolsMissing.join(', ')}` : false }, () => {
    let port = 0;
    let url = '';

    it('exports a volume that nbdinfo sizes and nbdcopy / qemu-img round-trip byte for byte', async () => {
      port = await freePort();
      url = `nbd://127.0.0.1:${port}`;
      await box.ok(['create', '-V', '64M', 'tank/vm1']);
      await box.ok(['nbd', 'export', 'tank/vm1', '--listen', `127.0.0.1:${port}`, '--name', 'vm1']);
      const listing = (await box.ok(['nbd', 'list'])).stdout.split('\n');
      assert.match(listing[0] ?? '', /^NAME +DATASET +LISTEN +SIZE +RO$/);
      assert.match(listing[1] ?? '', new RegExp(`^vm1 +tank/vm1 +127\\.0\\.0\\.1:${port} +64M +off$`));

      const info = JSON.parse((await okTool('nbdinfo', ['--json', `${url}/vm1`])).toString('utf8')) as {
        exports: { 'export-size': number; is_read_only: boolean }[];
      };
      assert.equal(info.exports[0]?.['export-size'], 64 * MIB);
      assert.equal(info.exports[0]?.is_read_only, false);

      const data = seededBytes(SEED, 32 * MIB);
      const inPath = box.path('in.raw');
      await writeFile(inPath, data);
      await okTool('nbdcopy', [inPath, `${url}/vm1`]);
      const outPath = box.path('out.raw');
      await okTool('nbdcopy', [`${url}/vm1`, outPath]);
      const out = await readFile(outPath);
      assert.equal(out.length, 64 * MIB);
      assert.equal(sha256(out.subarray(0, 32 * MIB)), sha256(data), `nbdcopy round trip differs (seed ${SEED})`);
      assert.ok(out.subarray(32 * MIB).every((byte) => byte === 0), 'the unwritten half reads as zeroes');

      const qemuPath = box.path('qemu.raw');
      await okTool('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', `${url}/vm1`, qemuPath]);
      assert.equal(sha256(await readFile(qemuPath)), sha256(out), 'qemu-img reads what nbdcopy read');
      // The daemon's own view agrees: the data went into the volume, not somewhere else.
      const viaApi = (await box.ok(['vol', 'read', 'tank/vm1', '0', String(MIB)])).stdoutBytes;
      assert.ok(viaApi.equals(data.subarray(0, MIB)));
    });

    it('a --readonly export and a snapshot export refuse writes; a filesystem is refused with a clear error', async () => {
      await box.ok(['nbd', 'export', 'tank/vm1', '--listen', `127.0.0.1:${port}`, '--name', 'vm1ro', '--readonly']);
      await box.ok(['snapshot', 'tank/vm1@s1']);
      await box.ok(['nbd', 'export', 'tank/vm1@s1', `--listen=127.0.0.1:${port}`]);
      for (const name of ['vm1ro', 'tank/vm1@s1']) {
        const info = JSON.parse((await okTool('nbdinfo', ['--json', `${url}/${name}`])).toString('utf8')) as {
          exports: { is_read_only: boolean }[];
        };
        assert.equal(info.exports[0]?.is_read_only, true, `${name} is read-only`);
        const write = await tool('nbdcopy', [box.path('in.raw'), `${url}/${name}`]);
        assert.notEqual(write.code, 0, `writing to ${name} must fail`);
      }
      const before = (await box.ok(['vol', 'read', 'tank/vm1', '0', String(MIB)])).stdoutBytes;
      assert.ok(before.equals(seededBytes(SEED, MIB)), 'the refused writes changed nothing');

      // A Unix socket (given relative to the CLI's directory) is a second listener beside the TCP one.
      await box.ok(['nbd', 'export', 'tank/vm1@s1', '--listen', './nbd.sock', '--name', 'snap']);
      const size = await okTool('nbdinfo', ['--size', `nbd+unix:///snap?socket=${box.path('nbd.sock')}`]);
      assert.equal(size.toString().trim(), String(64 * MIB));
      await box.ok(['nbd', 'unexport', 'snap']);

      const refused = await box.run(['nbd', 'export', 'tank', '--listen', `127.0.0.1:${port}`]);
      assert.equal(refused.code, 1);
      assert.ok(isOneLineError(refused.stderr), refused.stderr);
      assert.match(refused.stderr, /not a volume/);
      const duplicate = await box.run(['nbd', 'export', 'tank/vm1', '--listen', `127.0.0.1:${port}`, '--name', 'vm1']);
      assert.equal(duplicate.code, 1);
      assert.match(duplicate.stderr, /already exists/);
      const scripted = (await box.ok(['nbd', 'list', '-H', '-p'])).stdout;
      assert.equal(
        scripted,
        [
          `tank/vm1@s1\ttank/vm1@s1\t127.0.0.1:${port}\t${64 * MIB}\ton`,
          `vm1\ttank/vm1\t127.0.0.1:${port}\t${64 * MIB}\toff`,
          `vm1ro\ttank/vm1\t127.0.0.1:${port}\t${64 * MIB}\ton`,
          '',
        ].join('\n'),
      );
    });

    it('unexport ends one export; destroying the volume ends the rest and frees the port; history has the verbs', async () => {
      await box.ok(['nbd', 'unexport', 'vm1']);
      assert.notEqual((await tool('nbdinfo', [`${url}/vm1`])).code, 0, 'vm1 is gone');
      await okTool('nbdinfo', ['--size', `${url}/vm1ro`]);
      await box.ok(['destroy', '-r', 'tank/vm1']);
      assert.equal((await box.ok(['nbd', 'list', '-H'])).stdout, '');
      assert.notEqual((await tool('nbdinfo', [`${url}/vm1ro`])).code, 0, 'the listener closed with its last export');
      const history = (await box.ok(['pool', 'history', 'tank'])).stdout;
      assert.match(history, new RegExp(`cairn nbd export tank/vm1 --listen 127\\.0\\.0\\.1:${port} --name vm1\\n`));
      assert.match(history, /cairn nbd unexport vm1\n/);
    });
  });

  describe('cp -r', () => {
    it('copies a local tree into a dataset and back: files, modes, symlinks and empty directories', async () => {
      const tree = box.path('tree');
      const blob = seededBytes(SEED + 3, 200_000);
      await okTool('sh', ['-c', `mkdir -p ${tree}/sub/deeper ${tree}/empty && printf 'hello\n' > ${tree}/a.txt && chmod 600 ${tree}/a.txt && ln -s a.txt ${tree}/link`]);
      await writeFile(`${tree}/sub/deeper/b.bin`, blob);
      await box.ok(['create', 'tank/tree']);
      await box.ok(['cp', '-r', tree, 'tank/tree:/']);
      assert.equal((await box.ok(['ls', 'tank/tree:/tree'])).stdout, 'a.txt\nempty\nlink\nsub\n');
      assert.ok((await box.ok(['cat', 'tank/tree:/tree/sub/deeper/b.bin'])).stdoutBytes.equals(blob));
      const out = box.path('tree-back');
      await box.ok(['cp', '-r', 'tank/tree:/tree', out]);
      assert.equal(await readFile(`${out}/a.txt`, 'utf8'), 'hello\n');
      assert.equal((await stat(`${out}/a.txt`)).mode & 0o777, 0o600, 'the mode came through both ways');
      assert.ok((await readFile(`${out}/sub/deeper/b.bin`)).equals(blob));
      assert.equal((await okTool('readlink', [`${out}/link`])).toString(), 'a.txt\n');
      assert.ok((await stat(`${out}/empty`)).isDirectory());
      await box.ok(['cp', '-R', 'tank/tree:/tree', out]);
      assert.ok((await readFile(`${out}/tree/sub/deeper/b.bin`)).equals(blob), 'into an existing directory: DIR/basename');
      await box.ok(['destroy', 'tank/tree']);
    });
  });

  describe('FUSE', { skip: fuseSkip }, () => {
    const data = seededBytes(SEED + 1, 3 * MIB + 123);

    it('mounts a filesystem; real tools write and read through it; a snapshot taken meanwhile keeps the old bytes', async () => {
      const mnt = box.path('mnt');
      await box.ok(['create', 'tank/fs']);
      await box.ok(['mount', 'tank/fs', mnt]);
      assert.ok(mountedPaths().includes(mnt), 'the mount is in /proc/mounts');
      assert.equal((await box.ok(['mount'])).stdout, `tank/fs  ${mnt}\n`);

      await writeFile(box.path('local.bin'), data);
      await okTool('cp', [box.path('local.bin'), `${mnt}/copy.bin`]);
      await okTool('dd', [`if=${box.path('local.bin')}`, `of=${mnt}/dd.bin`, 'bs=64k', 'conv=fsync', 'status=none']);
      await okTool('sh', ['-c', `mkdir -p ${mnt}/a/b && echo first > ${mnt}/a/b/note`]);
      const sums = (await okTool('sha256sum', [`${mnt}/copy.bin`, `${mnt}/dd.bin`])).toString('utf8');
      for (const line of sums.trimEnd().split('\n')) assert.equal(line.split(' ')[0], sha256(data), line);
      assert.ok((await box.ok(['cat', 'tank/fs:/dd.bin'])).stdoutBytes.equals(data), 'the API sees what went through the mount');

      await box.ok(['snapshot', 'tank/fs@s1']);
      await okTool('sh', ['-c', `echo second > ${mnt}/a/b/note`]);
      assert.equal((await okTool('cat', [`${mnt}/a/b/note`])).toString(), 'second\n');
      assert.equal((await box.ok(['cat', 'tank/fs@s1:/a/b/note'])).stdout, 'first\n');
      assert.equal((await box.ok(['cat', 'tank/fs:/a/b/note'])).stdout, 'second\n');
      // Snapshots are browsable under the hidden .cairn/snapshot directory, as .zfs/snapshot.
      assert.equal((await okTool('cat', [`${mnt}/.cairn/snapshot/s1/a/b/note`])).toString(), 'first\n');
      assert.equal((await okTool('ls', [`${mnt}/.cairn/snapshot`])).toString(), 's1\n');
      assert.ok(!(await okTool('ls', ['-a', mnt])).toString().split('\n').includes('.cairn'), 'snapdir=hidden');
    });

    it('what cairn verbs change behind a mount shows through it at once, though the kernel caches for 60 s', async () => {
      const mnt = box.path('mnt');
      const cached = async (path: string): Promise<string> => (await sh(`stat -c '%s %a' ${path}`)).stdout.toString().trim() || 'ENOENT';
      // The kernel now holds the missing name (a negative entry) and the root's listing.
      assert.equal(await cached(`${mnt}/api`), 'ENOENT');
      assert.ok(!(await okTool('ls', [mnt])).toString().split('\n').includes('api'));
      await box.ok(['mkdir', 'tank/fs:/api']);
      await box.ok(['cp', '-', 'tank/fs:/api/f.bin'], { input: data });
      assert.ok((await okTool('ls', [mnt])).toString().split('\n').includes('api'), 'the cached listing was dropped');
      assert.equal((await okTool('sha256sum', [`${mnt}/api/f.bin`])).toString().split(' ')[0], sha256(data));
      const other = seededBytes(SEED + 2, 1000);
      await box.ok(['cp', '-', 'tank/fs:/api/f.bin'], { input: other }); // the kernel has the old pages cached
      assert.equal((await okTool('sha256sum', [`${mnt}/api/f.bin`])).toString().split(' ')[0], sha256(other));
      await box.ok(['chmod', '600', 'tank/fs:/api/f.bin']);
      assert.equal(await cached(`${mnt}/api/f.bin`), '1000 600');
      await box.ok(['mv', 'tank/fs:/api/f.bin', 'tank/fs:/api/g.bin']);
      assert.equal(await cached(`${mnt}/api/f.bin`), 'ENOENT');
      assert.equal(await cached(`${mnt}/api/g.bin`), '1000 600');
      await box.ok(['rm', '-r', 'tank/fs:/api']);
      assert.equal(await cached(`${mnt}/api/g.bin`), 'ENOENT');
      assert.equal(await cached(`${mnt}/api`), 'ENOENT');
    });

    it('a snapshot mounts read-only (EROFS); mounting a mounted dataset or a volume is refused', async () => {
      const snap = box.path('snap');
      await box.ok(['mount', 'tank/fs@s1', snap]);
      assert.equal((await okTool('cat', [`${snap}/a/b/note`])).toString(), 'first\n');
      const write = await sh(`echo x > ${snap}/new`);
      assert.notEqual(write.code, 0);
      assert.match(write.stderr, /Read-only file system/);
      await box.ok(['umount', snap]);
      assert.ok(!mountedPaths().includes(snap));

      const again = await box.run(['mount', 'tank/fs', box.path('elsewhere')]);
      assert.equal(again.code, 1);
      assert.ok(isOneLineError(again.stderr), again.stderr);
      assert.match(again.stderr, /already mounted/);
      await box.ok(['create', '-V', '8M', 'tank/vol']);
      const volume = await box.run(['mount', 'tank/vol', box.path('vol')]);
      assert.equal(volume.code, 1);
      assert.match(volume.stderr, /volume/);
      const legacy = await box.run(['mount', 'tank/fs@s1']);
      assert.equal(legacy.code, 1);
      assert.match(legacy.stderr, /give a path/);
    });

    it('unmount and mount again shows the same data; mount -a mounts parents first and set mountpoint= moves a mount', async () => {
      const mnt = box.path('mnt');
      await box.ok(['unmount', 'tank/fs']);
      assert.ok(!mountedPaths().includes(mnt));
      assert.equal((await box.ok(['mount'])).stdout, '');
      await box.ok(['mount', '-o', 'ro', 'tank/fs', mnt]);
      assert.equal((await okTool('sha256sum', [`${mnt}/dd.bin`])).toString().split(' ')[0], sha256(data));
      assert.notEqual((await sh(`touch ${mnt}/nope`)).code, 0, '-o ro mounts read-only');
      await box.ok(['unmount', mnt]);

      const root = box.path('root');
      await box.ok(['set', `mountpoint=${root}`, 'tank']);
      await box.ok(['mount', '-a']);
      assert.equal((await box.ok(['mount'])).stdout, `tank     ${root}\ntank/fs  ${root}/fs\n`);
      assert.equal((await okTool('cat', [`${root}/fs/a/b/note`])).toString(), 'second\n', 'the child is mounted inside its parent');

      const moved = box.path('moved');
      await box.ok(['set', `mountpoint=${moved}`, 'tank/fs']);
      assert.equal((await box.ok(['mount'])).stdout, `tank/fs  ${moved}\ntank     ${root}\n`, 'listed in mountpoint order');
      assert.ok(!mountedPaths().includes(`${root}/fs`) && mountedPaths().includes(moved));
      assert.equal((await okTool('cat', [`${moved}/a/b/note`])).toString(), 'second\n');
      await box.ok(['unmount', '-a']);
      assert.equal(mountedPaths().filter((path) => path.startsWith(box.dir)).length, 0);
    });

    it('rename keeps the mount; rollback remounts it with the contents of the snapshot', async () => {
      const mnt = box.path('mnt');
      await box.ok(['mount', 'tank/fs', mnt]);
      await box.ok(['rename', 'tank/fs', 'tank/fs2']);
      assert.equal((await box.ok(['mount'])).stdout, `tank/fs2  ${mnt}\n`);
      assert.equal((await okTool('cat', [`${mnt}/a/b/note`])).toString(), 'second\n', 'the mount still serves the renamed dataset');
      await okTool('sh', ['-c', `echo third > ${mnt}/a/b/note && sync ${mnt}/a/b/note`]);
      assert.equal((await box.ok(['cat', 'tank/fs2:/a/b/note'])).stdout, 'third\n');
      await box.ok(['rollback', 'tank/fs2@s1']);
      assert.ok(mountedPaths().includes(mnt), 'still mounted after the rollback');
      assert.equal((await okTool('cat', [`${mnt}/a/b/note`])).toString(), 'first\n', 'the mount shows the rolled-back file system');
      await box.ok(['rename', 'tank/fs2', 'tank/fs']);

      // zfs destroy unmounts first; zpool export unmounts everything of the pool.
      const scratch = box.path('scratch');
      await box.ok(['create', 'tank/scratch']);
      await box.ok(['mount', 'tank/scratch', scratch]);
      await box.ok(['destroy', 'tank/scratch']);
      assert.ok(!mountedPaths().includes(scratch), 'destroy unmounted the dataset');
      await box.ok(['pool', 'export', 'tank']);
      assert.ok(!mountedPaths().includes(mnt), 'pool export unmounted its datasets');
      assert.equal((await box.ok(['mount'])).stdout, '');
      await box.ok(['pool', 'import', '-d', box.dir, 'tank']);
    });

    it('kill -9 with a mount: fsync-ed data survives, and the next daemon start cleans up the dead mount', async () => {
      const mnt = box.path('mnt');
      await box.ok(['mount', 'tank/fs', mnt]);
      const durable = seededBytes(SEED + 2, MIB + 7);
      await writeFile(box.path('durable.bin'), durable);
      await okTool('dd', [`if=${box.path('durable.bin')}`, `of=${mnt}/durable.bin`, 'bs=1M', 'conv=fsync', 'status=none']);
      const pid = box.daemonPid();
      assert.ok(pid !== null);
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && alive(pid); i++) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(!alive(pid));
      await assert.rejects(stat(mnt), (error: NodeJS.ErrnoException) => error.code === 'ENOTCONN', 'the mount is dead');

      await box.ok(['daemon', 'start']);
      assert.ok(!mountedPaths().includes(mnt), 'the dead mount was cleaned up');
      assert.ok((await stat(mnt)).isDirectory(), 'the mountpoint is a plain directory again');
      assert.equal((await box.ok(['mount'])).stdout, '', 'nothing is mounted after a restart');
      assert.ok((await box.ok(['cat', 'tank/fs:/durable.bin'])).stdoutBytes.equals(durable), 'fsync through the mount was durable');
      await box.ok(['mount', 'tank/fs', mnt]);
      assert.equal((await okTool('sha256sum', [`${mnt}/durable.bin`])).toString().split(' ')[0], sha256(durable));
      await box.ok(['daemon', 'stop']);
      assert.ok(!mountedPaths().includes(mnt), 'daemon stop unmounts');
    });
  });
});
