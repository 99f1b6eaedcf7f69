import { strict as assert } from 'node:assert';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { CairnSandbox, isOneLineError, seededBytes } from './harness.js';

const SEED = Number(process.env['CAIRN_SEED'] ?? Date.now() % 2 ** 31);

describe(`pool and file commands through cairn and cairnd (seed ${SEED})`, () => {
  let box: CairnSandbox;
  let data: Buffer;

  before(async () => {
    box = await CairnSandbox.create('files');
    data = seededBytes(SEED, 3 * 1024 * 1024 + 12345);
    await writeFile(box.path('random.bin'), data);
    await box.ok(['pool', 'create', '-s', '128M', 'tank', 'mirror', 'a.img', 'b.img']);
  });

  after(async () => {
    await box.stop();
  });

  it('pool status shows the zpool layout with the mirror and both files', async () => {
    const { stdout } = await box.ok(['pool', 'status', 'tank']);
    assert.match(stdout, /^ {2}pool: tank\n state: ONLINE\n/);
    assert.match(stdout, /\n {2}scan: none requested\n/);
    assert.match(stdout, /\tNAME +STATE +READ WRITE CKSUM\n/);
    assert.match(stdout, /\ttank +ONLINE +0 +0 +0\n/);
    assert.match(stdout, /\t {2}mirror-0 +ONLINE +0 +0 +0\n/);
    assert.match(stdout, new RegExp(`\\t {4}${box.path('a.img')} +ONLINE +0 +0 +0\\n`));
    assert.match(stdout, new RegExp(`\\t {4}${box.path('b.img')} +ONLINE +0 +0 +0\\n`));
    assert.match(stdout, /\nerrors: No known data errors\n$/);
  });

  it('pool list prints zpool columns; -H tabs; -p exact bytes', async () => {
    const table = (await box.ok(['pool', 'list'])).stdout.split('\n');
    assert.match(table[0] ?? '', /^NAME +SIZE +ALLOC +FREE +FRAG +CAP +HEALTH$/);
    assert.match(table[1] ?? '', /^tank +\d+(\.\d+)?M +\d+(\.\d+)?[KM] +\d+(\.\d+)?M +\d+% +\d+% +ONLINE$/);
    const scripted = (await box.ok(['pool', 'list', '-Hp'])).stdout.trim().split('\t');
    assert.equal(scripted.length, 7);
    assert.equal(scripted[0], 'tank');
    const [sizeBytes, allocBytes, freeBytes] = scripted.slice(1, 4).map(Number);
    assert.ok(sizeBytes! > 100 * 1024 * 1024 && sizeBytes! <= 128 * 1024 * 1024, `size ${sizeBytes}`);
    assert.ok(allocBytes! > 0 && freeBytes! > 0 && allocBytes! + freeBytes! <= sizeBytes!);
    assert.equal(scripted[6], 'ONLINE');
  });

  it('cp in, cp out and cat return the same bytes; ls -l shows the size', async () => {
    await box.ok(['mkdir', '-p', 'tank:/photos/2026/jan']);
    await box.ok(['cp', 'random.bin', 'tank:/photos/2026/jan/']);
    await box.ok(['cp', 'tank:/photos/2026/jan/random.bin', 'copy.bin']);
    const copy = await readFile(box.path('copy.bin'));
    assert.ok(copy.equals(data), `cp out differs (seed ${SEED})`);
    const cat = await box.ok(['cat', 'tank:/photos/2026/jan/random.bin']);
    assert.ok(cat.stdoutBytes.equals(data), `cat differs (seed ${SEED})`);
    const listing = (await box.ok(['ls', '-l', 'tank:/photos/2026/jan'])).stdout;
    assert.match(listing, new RegExp(`^total \\d+\\n-rw-r--r-- +1 +\\d+ +\\d+ +${data.length} \\w{3} [ \\d]\\d \\d\\d:\\d\\d random\\.bin\\n$`));
    assert.equal((await box.ok(['ls', 'tank:/photos'])).stdout, '2026\n');
  });

  it('cp - reads stdin; overwriting truncates; pool-to-pool copy works', async () => {
    const small = Buffer.from('hello, cairn\n');
    await box.ok(['cp', '-', 'tank:/note.txt'], { input: Buffer.concat([small, small, small]) });
    await box.ok(['cp', '-', 'tank:/note.txt'], { input: small });
    assert.equal((await box.ok(['cat', 'tank:/note.txt'])).stdout, small.toString());
    await box.ok(['cp', 'tank:/note.txt', 'tank:/note2.txt']);
    assert.equal((await box.ok(['cat', 'tank:/note2.txt'])).stdout, small.toString());
  });

  it('rm removes files, refuses directories without -r, rm -r removes trees', async () => {
    await box.ok(['mkdir', 'tank:/scratch']);
    await box.ok(['cp', 'random.bin', 'tank:/scratch/x.bin']);
    const refused = await box.run(['rm', 'tank:/scratch']);
    assert.equal(refused.code, 1);
    assert.ok(isOneLineError(refused.stderr), refused.stderr);
    assert.match(refused.stderr, /is a directory/);
    await box.ok(['rm', 'tank:/note2.txt']);
    await box.ok(['rm', '-r', 'tank:/scratch']);
    const names = (await box.ok(['ls', 'tank:/'])).stdout.split('\n').filter(Boolean);
    assert.deepEqual(names, ['note.txt', 'photos']);
    const missing = await box.run(['cat', 'tank:/scratch/x.bin']);
    assert.equal(missing.code, 1);
    assert.equal(missing.stderr, 'cairn: tank:/scratch/x.bin: no such file or directory\n');
  });

  it('mkdir without -p needs the parent; mkdir -p is idempotent', async () => {
    const noParent = await box.run(['mkdir', 'tank:/x/y/z']);
    assert.equal(noParent.code, 1);
    assert.ok(isOneLineError(noParent.stderr), noParent.stderr);
    await box.ok(['mkdir', '-p', 'tank:/x/y/z']);
    await box.ok(['mkdir', '-p', 'tank:/x/y/z']);
    assert.equal((await box.ok(['ls', 'tank:/x/y'])).stdout, 'z\n');
  });

  it('history lists the commands as typed', async () => {
    const { stdout } = await box.ok(['pool', 'history', 'tank']);
    assert.match(stdout, /^History for 'tank':\n/);
    assert.match(stdout, /\n\d{4}-\d\d-\d\d\.\d\d:\d\d:\d\d cairn pool create -s 128M tank mirror a\.img b\.img\n/);
  });

  it('export, list importable pools from -d, import by name; data survives', async () => {
    await box.ok(['pool', 'sync', 'tank']);
    await box.ok(['pool', 'export', 'tank']);
    assert.equal((await box.ok(['pool', 'list'])).stdout, 'no pools available\n');
    const listing = (await box.ok(['pool', 'import', '-d', box.dir])).stdout;
    assert.match(listing, /^ {3}pool: tank\n {5}id: [0-9a-f]+\n {2}state: ONLINE\n/);
    assert.ok(listing.includes(box.path('a.img')) && listing.includes(box.path('b.img')), listing);
    await box.ok(['pool', 'import', '-d', box.dir, 'tank']);
    const cat = await box.ok(['cat', 'tank:/photos/2026/jan/random.bin']);
    assert.ok(cat.stdoutBytes.equals(data), `data after import differs (seed ${SEED})`);
    const history = (await box.ok(['pool', 'history', 'tank'])).stdout;
    assert.match(history, /cairn pool export tank\n/);
    assert.match(history, /cairn pool import -d \S+ tank\n/);
  });
});
