import { strict as assert } from 'node:assert';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { DatasetRow } from '../api/index.js';
import { formatDatasetList, formatDestroy, formatGet, formatHolds, sortRows } from './dataset-format.js';
import { parseAssignments, parsePropertyList, resolveRenameTarget } from './datasets.js';
import { findCommand, parseRemotePath, runCli } from './main.js';

const K = 1024;
const rows: DatasetRow[] = [
  {
    name: 'tank',
    type: 'filesystem',
    properties: [
      { name: 'used', value: 300 * K, source: '-' },
      { name: 'available', value: 9.5 * K * K * K, source: '-' },
      { name: 'referenced', value: 88 * K, source: '-' },
      { name: 'mountpoint', value: '/tank', source: 'default' },
      { name: 'compression', value: 'on', source: 'default' },
    ],
  },
  {
    name: 'tank/home',
    type: 'filesystem',
    properties: [
      { name: 'used', value: 200 * K, source: '-' },
      { name: 'available', value: 9.5 * K * K * K, source: '-' },
      { name: 'referenced', value: 1536, source: '-' },
      { name: 'mountpoint', value: '/tank/home', source: 'default' },
      { name: 'compression', value: 'off', source: 'local' },
      { name: 'cairn:owner', value: 'alice', source: 'local' },
    ],
  },
  {
    name: 'tank/home@s1',
    type: 'snapshot',
    properties: [
      { name: 'used', value: 20 * K, source: '-' },
      { name: 'referenced', value: 92 * K, source: '-' },
    ],
  },
];

describe('zfs list layout', () => {
  const columns = ['name', 'used', 'available', 'referenced', 'mountpoint'];

  it('headers, sizes right-aligned, the last column unpadded, missing values as -', () => {
    assert.equal(
      formatDatasetList(rows, columns, { scripted: false, parsable: false }),
      'NAME          USED  AVAIL  REFER  MOUNTPOINT\n' +
        'tank          300K  9.50G    88K  /tank\n' +
        'tank/home     200K  9.50G  1.50K  /tank/home\n' +
        'tank/home@s1   20K      -    92K  -\n',
    );
  });

  it('-H -p: tabs and exact numbers, no header', () => {
    assert.equal(
      formatDatasetList(rows.slice(1), columns, { scripted: true, parsable: true }),
      `tank/home\t${200 * K}\t${9.5 * K * K * K}\t1536\t/tank/home\ntank/home@s1\t${20 * K}\t-\t${92 * K}\t-\n`,
    );
  });

  it('-s/-S sort by value (numbers as numbers), stable, missing last', () => {
    assert.deepEqual(sortRows(rows, [{ property: 'used', descending: false }]).map((r) => r.name), ['tank/home@s1', 'tank/home', 'tank']);
    assert.deepEqual(sortRows(rows, [{ property: 'referenced', descending: true }]).map((r) => r.name), ['tank/home@s1', 'tank', 'tank/home']);
    assert.deepEqual(sortRows(rows, [{ property: 'available', descending: false }]).map((r) => r.name), ['tank', 'tank/home', 'tank/home@s1']);
    assert.deepEqual(sortRows(rows, [{ property: 'name', descending: true }]).map((r) => r.name), ['tank/home@s1', 'tank/home', 'tank']);
  });
});

describe('zfs get layout', () => {
  it('NAME PROPERTY VALUE SOURCE with sources, unset user property as - -', () => {
    const text = formatGet(rows.slice(0, 2), ['compression', 'cairn:owner'], ['name', 'property', 'value', 'source'], {
      scripted: false,
      parsable: false,
    });
    assert.equal(
      text,
      'NAME       PROPERTY     VALUE  SOURCE\n' +
        'tank       compression  on     default\n' +
        'tank       cairn:owner  -      -\n' +
        'tank/home  compression  off    local\n' +
        'tank/home  cairn:owner  alice  local\n',
    );
  });

  it('-H -p -o value,source; all lists what the dataset has', () => {
    assert.equal(formatGet([rows[1]!], ['used'], ['value', 'source'], { scripted: true, parsable: true }), `${200 * K}\t-\n`);
    const all = formatGet([rows[2]!], 'all', ['property', 'value'], { scripted: true, parsable: false });
    assert.equal(all, 'used\t20K\nreferenced\t92K\n');
  });
});

describe('destroy and holds reports', () => {
  it('destroy -nv: would destroy / would reclaim (snapshots); -p tab form; -v after the fact says will', () => {
    const result = { destroyed: ['tank/home@s1'], reclaimBytes: 1.5 * K * K };
    assert.equal(formatDestroy('tank/home@s1', result, { dryRun: true, parsable: false }), 'would destroy tank/home@s1\nwould reclaim 1.50M\n');
    assert.equal(formatDestroy('tank/home@s1', result, { dryRun: true, parsable: true }), `destroy\ttank/home@s1\nreclaim\t${1.5 * K * K}\n`);
    const fs = { destroyed: ['tank/home/a', 'tank/home'], reclaimBytes: 0 };
    assert.equal(formatDestroy('tank/home', fs, { dryRun: false, parsable: false }), 'will destroy tank/home/a\nwill destroy tank/home\n');
  });

  it('holds: NAME TAG TIMESTAMP', () => {
    const createdMs = new Date(2026, 0, 15, 10, 0, 0).getTime();
    assert.equal(
      formatHolds([{ name: 'tank/home@s1', tag: 'keep', createdMs }], false),
      'NAME          TAG   TIMESTAMP\ntank/home@s1  keep  Thu Jan 15 10:00 2026\n',
    );
    assert.equal(formatHolds([{ name: 'tank@a', tag: 'k', createdMs }], true), 'tank@a\tk\tThu Jan 15 10:00 2026\n');
  });
});

describe('dataset arguments', () => {
  it('dataset paths: root, child, snapshot; local paths stay local', () => {
    assert.deepEqual(parseRemotePath('tank/home:/a.txt'), { dataset: 'tank/home', path: '/a.txt' });
    assert.deepEqual(parseRemotePath('tank/home@monday:/a/../b.txt'), { dataset: 'tank/home@monday', path: '/b.txt' });
    assert.deepEqual(parseRemotePath('tank/a/b-c.d_e:'), { dataset: 'tank/a/b-c.d_e', path: '/' });
    assert.equal(parseRemotePath('./tank/home:/x'), null);
    assert.equal(parseRemotePath('tank//home:/x'), null);
    assert.equal(parseRemotePath('tank/home@:/x'), null);
  });

  it('rename shorthand for snapshots, and refusals', () => {
    assert.equal(resolveRenameTarget('tank/fs@a', 'b', 'u'), 'tank/fs@b');
    assert.equal(resolveRenameTarget('tank/fs@a', '@b', 'u'), 'tank/fs@b');
    assert.equal(resolveRenameTarget('tank/fs@a', 'tank/fs@b', 'u'), 'tank/fs@b');
    assert.equal(resolveRenameTarget('tank/fs', 'tank/other/fs', 'u'), 'tank/other/fs');
    assert.throws(() => resolveRenameTarget('tank/fs@a', 'tank/x@b', 'u'), /same dataset/);
    assert.throws(() => resolveRenameTarget('tank/fs', 'tank/fs@b', 'u'), /snapshot name/);
  });

  it('property lists take aliases and refuse unknown names; assignments need =', () => {
    assert.deepEqual(parsePropertyList('name,avail,refer,compress,cairn:x', 'u'), ['name', 'available', 'referenced', 'compression', 'cairn:x']);
    assert.throws(() => parsePropertyList('used,bogus', 'u'), /invalid property 'bogus'/);
    assert.deepEqual(parseAssignments(['a:b=c=d', 'compression=off'], 'u'), { 'a:b': 'c=d', compression: 'off' });
    assert.throws(() => parseAssignments(['=x'], 'u'), /expected PROPERTY=VALUE/);
  });

  it('the zfs verbs and vol are commands', () => {
    for (const word of ['create', 'list', 'get', 'set', 'inherit', 'snapshot', 'rollback', 'clone', 'promote', 'rename', 'hold', 'release', 'holds', 'destroy', 'mv', 'ln', 'chmod']) {
      assert.deepEqual(findCommand([word]).command.words, [word]);
    }
    assert.deepEqual(findCommand(['vol', 'read', 'tank/v', '0']).rest, ['tank/v', '0']);
  });
});

describe('dataset usage errors through runCli (exit 2, nothing sent)', () => {
  let home = '';
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'cairn-cli-ds-'));
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  const cases: [string[], RegExp][] = [
    [['create'], /^cairn: missing dataset name\nusage: cairn create /],
    [['create', '-q', 'tank/x'], /^cairn: invalid option '-q'\nusage: cairn create/],
    [['create', '-b', '8K', 'tank/x'], /can only be used when creating a volume/],
    [['create', '-V', 'lots', 'tank/x'], /bad volume size 'lots'/],
    [['create', 'tank/a b@'], /^cairn: invalid name/],
    [['snapshot', 'tank/home'], /^cairn: invalid name 'tank\/home'/],
    [['list', '-o', 'nosuchprop'], /invalid property 'nosuchprop'/],
    [['list', '-d', 'x'], /bad depth 'x'/],
    [['get', '-o', 'bogus', 'all', 'tank'], /invalid field 'bogus'/],
    [['get'], /missing property list/],
    [['set', 'tank/home'], /missing property=value/],
    [['set', 'a=b'], /missing dataset name/],
    [['rename', 'tank/home@a', 'tank/other@b'], /same dataset/],
    [['destroy', 'tank'], /root dataset 'tank'.*pool destroy/],
    [['vol', 'read', 'tank/v'], /missing offset/],
    [['vol', 'write', 'tank/v', '1Q'], /bad offset '1Q'/],
    [['chmod', 'u+x', 'tank:/a'], /invalid mode 'u\+x'/],
    [['mv', 'tank:/a', './b'], /not a dataset path/],
  ];
  for (const [argv, pattern] of cases) {
    it(`cairn ${argv.join(' ')} → exit 2`, async () => {
      let out = '';
      let err = '';
      const code = await runCli(argv, { out: (t) => (out += t), err: (t) => (err += t), env: { CAIRN_HOME: home }, cwd: home });
      assert.equal(code, 2, err);
      assert.match(err, pattern);
      assert.equal(err.trimEnd().split('\n').length, 2, err);
      assert.equal(out, '');
      assert.deepEqual(await readdir(home), [], 'nothing was sent: no daemon was started');
    });
  }
});
