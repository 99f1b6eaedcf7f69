import { strict as assert } from 'node:assert';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PoolStatus } from '../pool/index.js';
import { UsageError, parseArgs } from './args.js';
import { formatList, formatStatus } from './format.js';
import { findCommand, parseRemotePath, resolveVdevSpec, runCli } from './main.js';
import { formatDuration, formatSize, parseSize } from './size.js';

describe('sizes as zfs parses and prints them', () => {
  it('parses suffixes, decimals and plain bytes', () => {
    assert.equal(parseSize('10G'), 10 * 1024 ** 3);
    assert.equal(parseSize('1.5T'), 1.5 * 1024 ** 4);
    assert.equal(parseSize('512M'), 512 * 1024 ** 2);
    assert.equal(parseSize('512'), 512);
    assert.equal(parseSize('4k'), 4096);
    assert.equal(parseSize('4KiB'), 4096);
    assert.equal(parseSize('1gb'), 1024 ** 3);
    assert.equal(parseSize('100B'), 100);
  });

  it('rejects garbage, negatives, fractional bytes and overflow', () => {
    for (const bad of ['', 'G', '10X', '-1G', '1.5', '1..5G', '10 G G', '9999999E']) {
      assert.throws(() => parseSize(bad), (error: Error) => /bad numeric value|too large/.test(error.message), bad);
    }
  });

  it('prints at most five characters like zfs_nicenum', () => {
    assert.equal(formatSize(0), '0B');
    assert.equal(formatSize(512), '512B');
    assert.equal(formatSize(1024), '1K');
    assert.equal(formatSize(100 * 1024 ** 2), '100M');
    assert.equal(formatSize(9.5 * 1024 ** 3), '9.50G');
    assert.equal(formatSize(1.5 * 1024 ** 4), '1.50T');
    assert.equal(formatSize(106 * 1024 + 100), '106K');
    assert.equal(formatSize(10.2 * 1024 ** 2), '10.2M');
    for (let bytes = 1; bytes < 2 ** 50; bytes = Math.floor(bytes * 1.37) + 1) {
      assert.ok(formatSize(bytes).length <= 5, `${bytes} → ${formatSize(bytes)}`);
    }
  });

  it('round-trips printed sizes within rounding', () => {
    for (const bytes of [1536, 3 * 1024 ** 3 + 12345, 7 * 1024 ** 4]) {
      const back = parseSize(formatSize(bytes));
      assert.ok(Math.abs(back - bytes) / bytes < 0.01, `${bytes} → ${formatSize(bytes)} → ${back}`);
    }
  });

  it('prints durations as zpool status does', () => {
    assert.equal(formatDuration(0), '00:00:00');
    assert.equal(formatDuration(65_000), '00:01:05');
    assert.equal(formatDuration(3 * 3600_000 + 7000), '03:00:07');
  });
});

describe('argument parsing', () => {
  const spec = { f: 'boolean', s: 'value', o: 'list', H: 'boolean', p: 'boolean' } as const;

  it('combines short flags and takes values attached or separate', () => {
    const parsed = parseArgs(['-Hp', '-s10G', 'tank', '-o', 'a=b', '-o', 'c=d', 'mirror'], spec, 'u');
    assert.deepEqual([...parsed.booleans].sort(), ['H', 'p']);
    assert.deepEqual(parsed.values.get('s'), ['10G']);
    assert.deepEqual(parsed.values.get('o'), ['a=b', 'c=d']);
    assert.deepEqual(parsed.positionals, ['tank', 'mirror']);
  });

  it('stops at -- and keeps - as a positional', () => {
    const parsed = parseArgs(['-f', '--', '-s', '-'], spec, 'u');
    assert.deepEqual(parsed.positionals, ['-s', '-']);
    assert.deepEqual(parseArgs(['-'], spec, 'u').positionals, ['-']);
  });

  it('rejects unknown flags, missing values and repeated single values', () => {
    assert.throws(() => parseArgs(['-x'], spec, 'usage line'), (e: unknown) => e instanceof UsageError && e.message === "invalid option '-x'" && e.usage === 'usage line');
    assert.throws(() => parseArgs(['--long'], spec, 'u'), UsageError);
    assert.throws(() => parseArgs(['-s'], spec, 'u'), /needs a value/);
    assert.throws(() => parseArgs(['-s', '1G', '-s', '2G'], spec, 'u'), /given twice/);
  });

  it('takes long options only where a command declares them (--name VALUE, --name=VALUE, --flag)', () => {
    const long = { listen: 'value', name: 'value', readonly: 'boolean', H: 'boolean' } as const;
    const parsed = parseArgs(['tank/vm1', '--listen', '127.0.0.1:1', '--name=a=b', '--readonly', '-H'], long, 'u');
    assert.deepEqual(parsed.values.get('listen'), ['127.0.0.1:1']);
    assert.deepEqual(parsed.values.get('name'), ['a=b']);
    assert.deepEqual([...parsed.booleans].sort(), ['H', 'readonly']);
    assert.deepEqual(parsed.positionals, ['tank/vm1']);
    assert.throws(() => parseArgs(['--readonly=yes'], long, 'u'), /takes no value/);
    assert.throws(() => parseArgs(['--listen'], long, 'u'), /needs a value/);
    assert.throws(() => parseArgs(['--name', 'a', '--name', 'b'], long, 'u'), /given twice/);
    assert.throws(() => parseArgs(['--H'], long, 'u'), /invalid option '--H'/);
  });

  it('finds commands and names unknown ones', () => {
    assert.deepEqual(findCommand(['pool', 'create', '-f', 'x']).command.words, ['pool', 'create']);
    assert.deepEqual(findCommand(['cp', 'a', 'b']).rest, ['a', 'b']);
    assert.throws(() => findCommand(['pool', 'frobnicate']), /unknown pool subcommand 'frobnicate'/);
    assert.throws(() => findCommand(['frobnicate']), /unknown command 'frobnicate'/);
    assert.throws(() => findCommand(['pool']), /missing pool subcommand/);
  });

  it('parses pool paths and leaves local paths alone', () => {
    assert.deepEqual(parseRemotePath('tank:/photos/a.jpg'), { dataset: 'tank', path: '/photos/a.jpg' });
    assert.deepEqual(parseRemotePath('tank:'), { dataset: 'tank', path: '/' });
    assert.deepEqual(parseRemotePath('tank:/a/../b/'), { dataset: 'tank', path: '/b' });
    assert.equal(parseRemotePath('./tank:/x'), null);
    assert.equal(parseRemotePath('/abs/path'), null);
    assert.equal(parseRemotePath('photo.jpg'), null);
  });

  it('makes device paths absolute and keeps vdev keywords', () => {
    assert.deepEqual(resolveVdevSpec(['mirror', 'a.img', '/d/b.img', 'raidz2', '../c'], '/work/x'), [
      'mirror',
      '/work/x/a.img',
      '/d/b.img',
      'raidz2',
      '/work/c',
    ]);
  });
});

describe('usage errors through runCli (no daemon involved)', () => {
  let home = '';
  before(async () => {
    home = await mkdtemp(join(tmpdir(), 'cairn-cli-unit-'));
  });
  after(async () => {
    await rm(home, { recursive: true, force: true });
  });

  async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = '';
    let err = '';
    const code = await runCli(argv, {
      out: (text) => (out += text),
      err: (text) => (err += text),
      env: { CAIRN_HOME: home },
      cwd: home,
    });
    return { code, out, err };
  }

  const cases: [string[], RegExp][] = [
    [[], /^cairn: missing command\nusage: /],
    [['pool', 'create'], /^cairn: missing pool name\nusage: cairn pool create /],
    [['pool', 'create', 'tank'], /^cairn: missing vdev specification\nusage: /],
    [['pool', 'create', '-q', 'tank', 'a'], /^cairn: invalid option '-q'\nusage: cairn pool create/],
    [['pool', 'create', '-s', '10Q', 'tank', 'a'], /^cairn: bad numeric value '10Q'\nusage: /],
    [['pool', 'create', '-o', 'novalue', 'tank', 'a'], /^cairn: bad property 'novalue'/],
    [['pool', 'wibble'], /^cairn: unknown pool subcommand 'wibble'\nusage: cairn pool create\|status/],
    [['wibble'], /^cairn: unknown command 'wibble'/],
    [['cp', 'a'], /^cairn: missing destination\nusage: cairn cp/],
    [['cp', 'a', 'b'], /^cairn: one of source and destination must be DATASET:\/PATH/],
    [['ls', './local'], /^cairn: '\.\/local' is not a dataset path/],
    [['pool', 'offline', 'tank'], /^cairn: missing device/],
    [['pool', 'scrub', '-s', '-w', 'tank'], /can't be combined/],
    [['pool', 'import', 'a', 'b'], /^cairn: too many arguments \('b'\)/],
    [['daemon', 'restart'], /^cairn: unknown daemon subcommand 'restart'/],
    [['pool', 'iostat', 'tank', '1', '2', '3'], /too many numeric arguments/],
  ];
  for (const [argv, pattern] of cases) {
    it(`cairn ${argv.join(' ')} → exit 2`, async () => {
      const result = await run(argv);
      assert.equal(result.code, 2);
      assert.match(result.err, pattern);
      assert.equal(result.err.trimEnd().split('\n').length, 2, result.err);
      assert.doesNotMatch(result.err, /\n\s+at /);
      assert.equal(result.out, '');
    });
  }

  it('--help prints every command; a command --help prints its usage', async () => {
    const all = await run(['--help']);
    assert.equal(all.code, 0);
    for (const word of ['pool create', 'pool import', 'cp [-r] SOURCE', 'mount [-o ro|rw]', 'unmount [-f]', 'nbd export VOLUME', 'daemon stop', 'demo']) assert.ok(all.out.includes(word), word);
    const one = await run(['pool', 'list', '--help']);
    assert.equal(one.out, 'usage: cairn pool list [-H] [-p] [POOL]...\n');
  });

  it('daemon status without a daemon is one line and exit 1, and starts nothing', async () => {
    const result = await run(['daemon', 'status']);
    assert.equal(result.code, 1);
    assert.match(result.err, /^cairn: cairnd is not running \(no daemon on .*cairnd\.sock\)\n$/);
  });
});

describe('output layouts', () => {
  const status: PoolStatus = {
    name: 'tank',
    guid: '00000000000000ab',
    health: 'ONLINE',
    txg: 12,
    space: { sizeBytes: 9.5 * 1024 ** 3, allocatedBytes: 106 * 1024, freeBytes: 9.5 * 1024 ** 3 - 106 * 1024, fragmentationPercent: 0, capacityPercent: 0 },
    scan: {
      function: 'scrub',
      state: 'finished',
      startMs: Date.UTC(2026, 0, 1, 0, 0, 0),
      endMs: Date.UTC(2026, 0, 1, 0, 0, 5),
      examinedBytes: 1024,
      totalBytes: 1024,
      repairedBytes: 128 * 1024,
      errors: 0,
    },
    config: {
      name: 'tank',
      state: 'ONLINE',
      errors: { read: 0, write: 0, checksum: 0 },
      children: [
        {
          name: 'mirror-0',
          state: 'ONLINE',
          errors: { read: 0, write: 0, checksum: 0 },
          children: [
            { name: '/data/a.img', state: 'ONLINE', errors: { read: 0, write: 0, checksum: 3 }, children: [] },
            { name: '/data/b.img', state: 'ONLINE', errors: { read: 0, write: 0, checksum: 0 }, children: [] },
          ],
        },
      ],
    },
    dataErrors: [],
  };

  it('zpool status: header lines, scan line, tree with counters, errors line', () => {
    const text = formatStatus(status, { verbose: false });
    const lines = text.split('\n');
    assert.equal(lines[0], '  pool: tank');
    assert.equal(lines[1], ' state: ONLINE');
    assert.ok(lines.some((line) => /^ {2}scan: scrub repaired 128K in 00:00:05 with 0 errors on \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d 2026$/.test(line)), text);
    assert.ok(lines.includes('\tNAME             STATE     READ WRITE CKSUM'), text);
    assert.ok(lines.includes('\t    /data/a.img  ONLINE       0     0     3'), text);
    assert.ok(lines.includes('\t  mirror-0       ONLINE       0     0     0'), text);
    assert.ok(text.includes('status: One or more devices has experienced an unrecoverable error.'));
    assert.ok(text.endsWith('errors: No known data errors\n'));
    const withErrors = { ...status, dataErrors: ['/photos/a.jpg'] };
    assert.match(formatStatus(withErrors, { verbose: false }), /errors: 1 data errors, use '-v' for a list\n$/);
    assert.match(formatStatus(withErrors, { verbose: true }), /Permanent errors .*\n\n {8}\/photos\/a\.jpg\n$/);
  });

  it('zpool status: a running scrub shows progress and rate', () => {
    const { endMs: _endMs, ...started } = status.scan!;
    const running: PoolStatus = { ...status, scan: { ...started, state: 'scanning', examinedBytes: 512 * 1024 ** 2, totalBytes: 1024 ** 3 } };
    const text = formatStatus(running, { verbose: false, nowMs: started.startMs + 10_000 });
    assert.match(text, /scan: scrub in progress since /);
    assert.match(text, /\t512M \/ 1G scanned at 51\.2M\/s\n\t128K repaired, 50\.00% done, 00:00:10 to go\n/);
  });

  it('zpool list: header, units, -H tabs, -p exact numbers', () => {
    assert.equal(
      formatList([status], { scripted: false, parsable: false }),
      'NAME   SIZE  ALLOC   FREE  FRAG  CAP  HEALTH\ntank  9.50G   106K  9.50G    0%   0%  ONLINE\n',
    );
    assert.equal(formatList([status], { scripted: true, parsable: false }), 'tank\t9.50G\t106K\t9.50G\t0%\t0%\tONLINE\n');
    assert.equal(
      formatList([status], { scripted: true, parsable: true }),
      `tank\t${9.5 * 1024 ** 3}\t${106 * 1024}\t${9.5 * 1024 ** 3 - 106 * 1024}\t0\t0\tONLINE\n`,
    );
  });
});
