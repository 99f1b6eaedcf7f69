import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { CairnSandbox, isOneLineError, seededBytes } from './harness.js';

const SEED = Number(process.env['CAIRN_SEED'] ?? Date.now() % 2 ** 31);

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The zfs verbs through the real cairn and cairnd, one pool, each test building on the last. */
describe(`dataset commands through cairn and cairnd (seed ${SEED})`, () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('datasets');
    await box.ok(['pool', 'create', '-s', '128M', 'tank', 'a.img']);
  });

  after(async () => {
    await box.stop();
  });

  it('create -p makes the parents; list -r -t all -H -p prints tab rows in zfs order with exact numbers', async () => {
    const missing = await box.run(['create', 'tank/home/alice']);
    assert.equal(missing.code, 1);
    assert.ok(isOneLineError(missing.stderr), missing.stderr);
    assert.match(missing.stderr, /tank\/home/);
    await box.ok(['create', '-p', 'tank/home/alice']);
    await box.ok(['cp', '-', 'tank/home:/a.txt'], { input: Buffer.from('first\n') });
    await box.ok(['snapshot', 'tank/home@s1']);
    const plain = (await box.ok(['list', '-H', '-o', 'name'])).stdout;
    assert.equal(plain, 'tank\ntank/home\ntank/home/alice\n', 'snapshots are not listed without -t');
    const rows = (await box.ok(['list', '-r', '-t', 'all', '-H', '-p', 'tank'])).stdout.trimEnd().split('\n').map((line) => line.split('\t'));
    assert.deepEqual(rows.map((row) => row[0]), ['tank', 'tank/home', 'tank/home@s1', 'tank/home/alice']);
    for (const row of rows) {
      assert.equal(row.length, 5, `five default columns: ${row.join('|')}`);
      assert.match(row[1] ?? '', /^\d+$/, 'used is exact bytes');
      assert.match(row[3] ?? '', /^\d+$/, 'refer is exact bytes');
    }
    const home = rows[1] ?? [];
    assert.ok(Number(home[3]) > 0, 'tank/home references the file');
    assert.match(home[2] ?? '', /^\d+$/);
    assert.equal(home[4], '/tank/home');
    assert.deepEqual((rows[2] ?? []).slice(2), ['-', (rows[2] ?? [])[3], '-'], 'a snapshot has no avail and no mountpoint');
    const table = (await box.ok(['list', '-d', '1', 'tank'])).stdout.split('\n');
    assert.match(table[0] ?? '', /^NAME +USED +AVAIL +REFER +MOUNTPOINT$/);
    assert.match(table[2] ?? '', /^tank\/home +\d+(\.\d+)?[BKM] +\d+(\.\d+)?[KMG] +\d+(\.\d+)?[BKM] +\/tank\/home$/);
    assert.equal(table.length, 4, 'depth 1: tank and tank/home only');
    const history = (await box.ok(['pool', 'history', 'tank'])).stdout;
    assert.match(history, /\d cairn create -p tank\/home\/alice\n/);
    assert.match(history, /\d cairn snapshot tank\/home@s1\n/);
  });

  it('a snapshot keeps the old file after the live one changed, and refuses writes with EROFS', async () => {
    await box.ok(['cp', '-', 'tank/home:/a.txt'], { input: Buffer.from('second version\n') });
    assert.equal((await box.ok(['cat', 'tank/home@s1:/a.txt'])).stdout, 'first\n');
    assert.equal((await box.ok(['cat', 'tank/home:/a.txt'])).stdout, 'second version\n');
    for (const args of [
      ['cp', '-', 'tank/home@s1:/a.txt'],
      ['rm', 'tank/home@s1:/a.txt'],
    ]) {
      const result = await box.run(args, { input: Buffer.from('nope') });
      assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
      assert.ok(isOneLineError(result.stderr), result.stderr);
      assert.match(result.stderr, /^cairn: tank\/home@s1:\/\w+(\.txt)?: read-only file system\n$/);
    }
    assert.equal((await box.ok(['cat', 'tank/home@s1:/a.txt'])).stdout, 'first\n');
    assert.equal((await box.ok(['ls', 'tank/home@s1:/'])).stdout, 'a.txt\n');
  });

  it('the root dataset is still tank:/ and files of other datasets are not in it', async () => {
    await box.ok(['cp', '-', 'tank:/root.txt'], { input: Buffer.from('root\n') });
    assert.equal((await box.ok(['ls', 'tank:/'])).stdout, 'root.txt\n');
    assert.equal((await box.ok(['cat', 'tank:/root.txt'])).stdout, 'root\n');
    const missing = await box.run(['cat', 'tank/nosuch:/x']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /dataset does not exist: 'tank\/nosuch'/);
  });

  it('mv, ln, ln -s and chmod work within a dataset; mv across datasets is EXDEV', async () => {
    await box.ok(['cp', '-', 'tank/home/alice:/f.txt'], { input: Buffer.from('alice\n') });
    await box.ok(['mv', 'tank/home/alice:/f.txt', 'tank/home/alice:/g.txt']);
    await box.ok(['ln', 'tank/home/alice:/g.txt', 'tank/home/alice:/hard.txt']);
    await box.ok(['ln', '-s', 'g.txt', 'tank/home/alice:/soft']);
    await box.ok(['chmod', '600', 'tank/home/alice:/g.txt']);
    const listing = (await box.ok(['ls', '-l', 'tank/home/alice:/'])).stdout;
    assert.match(listing, /\n-rw------- +2 .* g\.txt\n/);
    assert.match(listing, /\n-rw------- +2 .* hard\.txt\n/);
    assert.match(listing, /\nl[rwx-]{9} +1 .* soft -> g\.txt\n/);
    assert.equal((await box.ok(['cat', 'tank/home/alice:/hard.txt'])).stdout, 'alice\n');
    const across = await box.run(['mv', 'tank/home/alice:/g.txt', 'tank/home:/g.txt']);
    assert.equal(across.code, 1);
    assert.ok(isOneLineError(across.stderr), across.stderr);
    assert.match(across.stderr, /not the same dataset/);
    const badMode = await box.run(['chmod', 'u+x', 'tank/home/alice:/g.txt']);
    assert.equal(badMode.code, 2);
  });

  it('destroy refuses a snapshot with a clone and names the clone; rollback -r destroys newer snapshots', async () => {
    await box.ok(['clone', 'tank/home@s1', 'tank/clone']);
    assert.equal((await box.ok(['cat', 'tank/clone:/a.txt'])).stdout, 'first\n');
    const refused = await box.run(['destroy', 'tank/home@s1']);
    assert.equal(refused.code, 1);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    assert.match(refused.stderr, /tank\/clone/);
    await box.ok(['snapshot', 'tank/home@s2']);
    await box.ok(['cp', '-', 'tank/home:/a.txt'], { input: Buffer.from('third\n') });
    const plain = await box.run(['rollback', 'tank/home@s1']);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /more recent snapshots.*-r.*tank\/home@s2/);
    await box.ok(['rollback', '-r', 'tank/home@s1']);
    assert.equal((await box.ok(['cat', 'tank/home:/a.txt'])).stdout, 'first\n');
    const snapshots = (await box.ok(['list', '-H', '-o', 'name', '-t', 'snapshot'])).stdout;
    assert.equal(snapshots, 'tank/home@s1\n');
    await box.ok(['destroy', 'tank/clone']);
    await box.ok(['destroy', 'tank/home@s1']);
    const none = await box.ok(['list', '-t', 'snapshot']);
    assert.deepEqual([none.stdout, none.stderr], ['', 'no datasets available\n']);
  });

  it('diff lists what changed since a snapshot; hold blocks destroy until release; rename a snapshot', async () => {
    await box.ok(['snapshot', 'tank/home@d0']);
    await box.ok(['cp', '-', 'tank/home:/b c.txt'], { input: Buffer.from('b\n') });
    await box.ok(['rm', 'tank/home:/a.txt']);
    assert.equal(
      (await box.ok(['diff', '-F', 'tank/home@d0'])).stdout,
      'M\t/\t/tank/home\n-\tF\t/tank/home/a.txt\n+\tF\t/tank/home/b\\0040c.txt\n',
    );
    await box.ok(['hold', 'keep', 'tank/home@d0']);
    assert.match((await box.ok(['holds', '-H', 'tank/home@d0'])).stdout, /^tank\/home@d0\tkeep\t\w{3} \w{3} [ \d]\d \d\d:\d\d \d{4}\n$/);
    const held = await box.run(['destroy', 'tank/home@d0']);
    assert.equal(held.code, 1);
    assert.match(held.stderr, /keep/);
    await box.ok(['release', 'keep', 'tank/home@d0']);
    await box.ok(['rename', 'tank/home@d0', 'd1']);
    assert.equal((await box.ok(['list', '-H', '-o', 'name', '-t', 'snapshot', 'tank/home'])).stdout, 'tank/home@d1\n');
  });

  it('destroy -n -v reports what it would destroy and reclaim, and changes nothing', async () => {
    await box.ok(['cp', '-', 'tank/home:/a.txt'], { input: seededBytes(SEED, 256 * 1024) });
    const dry = (await box.ok(['destroy', '-n', '-v', 'tank/home@d1'])).stdout;
    assert.match(dry, /^would destroy tank\/home@d1\nwould reclaim \d+(\.\d+)?[BKM]\n$/);
    const parsable = (await box.ok(['destroy', '-n', '-p', 'tank/home@d1'])).stdout;
    assert.match(parsable, /^destroy\ttank\/home@d1\nreclaim\t\d+\n$/);
    assert.equal((await box.ok(['list', '-H', '-o', 'name', 'tank/home@d1'])).stdout, 'tank/home@d1\n');
    const recursive = (await box.ok(['destroy', '-r', '-n', '-v', 'tank/home'])).stdout;
    assert.match(recursive, /would destroy tank\/home@d1\n/);
    assert.match(recursive, /would destroy tank\/home\/alice\n/);
    assert.match(recursive, /would destroy tank\/home\n/);
    await box.ok(['destroy', 'tank/home@d1']);
  });

  it('set, get and inherit show values with their sources', async () => {
    await box.ok(['set', 'compression=off', 'cairn:owner=alice', 'tank/home']);
    const lines = (await box.ok(['get', '-H', '-o', 'name,property,value,source', 'compression,cairn:owner', 'tank/home', 'tank/home/alice'])).stdout;
    assert.equal(
      lines,
      'tank/home\tcompression\toff\tlocal\n' +
        'tank/home\tcairn:owner\talice\tlocal\n' +
        'tank/home/alice\tcompression\toff\tinherited from tank/home\n' +
        'tank/home/alice\tcairn:owner\talice\tinherited from tank/home\n',
    );
    const table = (await box.ok(['get', 'compression', 'tank/home'])).stdout;
    assert.equal(table, 'NAME       PROPERTY     VALUE  SOURCE\ntank/home  compression  off    local\n');
    await box.ok(['inherit', '-r', 'compression', 'tank/home']);
    assert.equal((await box.ok(['get', '-H', '-o', 'value,source', 'compression', 'tank/home/alice'])).stdout, 'on\tdefault\n');
    const bad = await box.run(['set', 'compression=bogus', 'tank/home']);
    assert.equal(bad.code, 1);
    assert.ok(isOneLineError(bad.stderr), bad.stderr);
    assert.match((await box.ok(['pool', 'history', 'tank'])).stdout, /cairn set compression=off cairn:owner=alice tank\/home\n/);
  });

  it('vol write then vol read returns the same bytes (checksums equal)', async () => {
    await box.ok(['create', '-V', '8M', 'tank/vm1']);
    const data = seededBytes(SEED + 1, 3 * 1024 * 1024 + 777);
    const offset = 64 * 1024 + 512;
    await box.ok(['vol', 'write', 'tank/vm1', String(offset)], { input: data });
    const back = await box.ok(['vol', 'read', 'tank/vm1', String(offset), String(data.length)]);
    assert.equal(sha256(back.stdoutBytes), sha256(data), `volume read differs (seed ${SEED})`);
    const before = await box.ok(['vol', 'read', 'tank/vm1', '0', String(offset)]);
    assert.ok(before.stdoutBytes.equals(Buffer.alloc(offset)), 'bytes before the write read as zeros');
    const tail = await box.ok(['vol', 'read', 'tank/vm1', String(8 * 1024 * 1024 - 100), '1000']);
    assert.equal(tail.stdoutBytes.length, 100, 'a read is cut at the end of the volume');
    const past = await box.run(['vol', 'write', 'tank/vm1', String(8 * 1024 * 1024 - 10)], { input: Buffer.alloc(100) });
    assert.equal(past.code, 1);
    assert.ok(isOneLineError(past.stderr), past.stderr);
  });

  it('snapshot -r snapshots the subtree in one go; promote moves the origin to the clone', async () => {
    await box.ok(['snapshot', '-r', 'tank/home@r1']);
    const snapshots = (await box.ok(['list', '-H', '-o', 'name', '-t', 'snapshot', '-r', 'tank/home'])).stdout;
    assert.equal(snapshots, 'tank/home@r1\ntank/home/alice@r1\n');
    await box.ok(['clone', '-o', 'cairn:note=scratch', 'tank/home@r1', 'tank/p']);
    assert.equal((await box.ok(['get', '-H', '-o', 'value,source', 'origin,cairn:note', 'tank/p'])).stdout, 'tank/home@r1\t-\nscratch\tlocal\n');
    await box.ok(['promote', 'tank/p']);
    assert.equal((await box.ok(['get', '-H', '-o', 'value', 'origin', 'tank/home'])).stdout, 'tank/p@r1\n');
    assert.match((await box.ok(['pool', 'history', 'tank'])).stdout, /cairn snapshot -r tank\/home@r1\n.*cairn clone -o cairn:note=scratch tank\/home@r1 tank\/p\n.*cairn promote tank\/p\n/s);
  });
});
