import { strict as assert } from 'node:assert';
import { writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { CairnSandbox, isOneLineError, seededBytes } from './harness.js';

describe('bad input: non-zero exit, one clear line, no stack trace', () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('errors');
    await writeFile(box.path('garbage.img'), seededBytes(7, 64 * 1024 * 1024));
    await box.ok(['pool', 'create', '-s', '64M', 'good', 'g.img']);
    await box.ok(['cp', '-', 'good:/file'], { input: Buffer.from('x') });
  });

  after(async () => {
    await box.stop();
  });

  const cases: [string, string[], RegExp][] = [
    ['a missing device without -s', ['pool', 'create', 'p1', 'mirror', 'nope1.img', 'nope2.img'], /nope1\.img/],
    ['a mirror of one device', ['pool', 'create', '-s', '64M', 'p2', 'mirror', 'x1.img'], /mirror/],
    ['raidz2 with too few devices', ['pool', 'create', '-s', '64M', 'p3', 'raidz2', 'y1.img', 'y2.img'], /raidz/],
    ['a vdev keyword with no devices', ['pool', 'create', '-s', '64M', 'p4', 'mirror'], /./],
    ['a garbage file as a device of an import', ['pool', 'import', '-d', 'garbage.img', 'ghost'], /ghost/],
    ['a reserved pool name', ['pool', 'create', '-s', '64M', 'mirror', 'z1.img'], /reserved|invalid/],
    ['an existing pool name', ['pool', 'create', '-s', '64M', 'good', 'w1.img'], /already exists/],
    ['an unknown pool', ['pool', 'status', 'nosuch'], /no such pool 'nosuch'/],
    ['a file in an unknown pool', ['cat', 'nosuch:/x'], /no such pool 'nosuch'/],
    ['reading a directory', ['cat', 'good:/'], /is a directory/],
    ['copying a missing local file', ['cp', 'missing.txt', 'good:/x'], /missing\.txt/],
    ['uploading 64 MiB into a missing directory', ['cp', 'garbage.img', 'good:/nodir/x'], /^cairn: good:\/nodir\/x: no such file or directory\n$/],
    ['uploading onto a path under a file', ['cp', 'garbage.img', 'good:/file/x'], /not a directory/],
    ['a device of another pool without -f', ['pool', 'create', 'p5', 'g.img'], /g\.img|in use|another pool|belongs/],
  ];
  for (const [what, args, pattern] of cases) {
    it(what, async () => {
      const result = await box.run(args);
      assert.equal(result.code, 1, `exit code for cairn ${args.join(' ')}: ${result.stderr}`);
      assert.ok(isOneLineError(result.stderr), `not one line: ${JSON.stringify(result.stderr)}`);
      assert.match(result.stderr, pattern);
      assert.equal(result.stdout, '');
    });
  }

  it('--debug adds the stack trace', async () => {
    const result = await box.run(['--debug', 'pool', 'status', 'nosuch']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /\n\s+at /);
    assert.match(result.stderr, /cairn: no such pool 'nosuch'\n$/);
  });

  it('the good pool is untouched by all of that', async () => {
    assert.match((await box.ok(['pool', 'list', '-H', 'good'])).stdout, /^good\t.*\tONLINE\n$/);
    await box.ok(['pool', 'status', 'good']);
  });
});
