import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../util/errors.js';
import {
  checkInheritable,
  columnHeader,
  formatCreation,
  formatPropertyValue,
  formatSize,
  parsePropertyValue,
  parseSize,
  PROPERTY_TABLE,
  propertyDefinition,
  resolveProperties,
  resolveProperty,
  validateVolsize,
  type DatasetType,
  type PropertyLayer,
  type PropertyValue,
} from './properties.js';

function refused(fn: () => unknown, fragment: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isCairnError(e, 'EINVAL'), `not an EINVAL CairnError: ${String(e)}`);
    assert.ok(e.message.includes(fragment), `message "${e.message}" lacks "${fragment}"`);
    return true;
  });
}

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;

function set(name: string, text: string, type: DatasetType = 'filesystem', creating = false): PropertyValue {
  return parsePropertyValue(name, text, { type, creating }).value;
}

test('sizes parse and print as zfs does', () => {
  const parsed: [string, number][] = [
    ['0', 0],
    ['512', 512],
    ['10G', 10 * G],
    ['10g', 10 * G],
    ['1.5T', 1.5 * 1024 * G],
    ['4KiB', 4 * K],
    ['1kb', K],
    ['128K', 128 * K],
    ['.5M', 512 * K],
    ['1B', 1],
  ];
  for (const [text, bytes] of parsed) assert.equal(parseSize(text), bytes, text);
  for (const bad of ['', 'x', '-5', '10Q', '1.5', 'G', '10 G B', '1e3']) refused(() => parseSize(bad), 'bad numeric value');
  refused(() => parseSize('99999999E'), 'too large');
  const printed: [number, string][] = [
    [0, '0B'],
    [512, '512B'],
    [128 * K, '128K'],
    [10 * G, '10G'],
    [9.5 * G, '9.50G'],
    [1536, '1.50K'],
    [100.25 * M, '100M'],
    [1023 * M + 512 * K, '1024M'], // zfs prints this too: no room for a decimal,
  ];
  for (const [bytes, text] of printed) assert.equal(formatSize(bytes), text, String(bytes));
});

/** [property, type, valid inputs with canonical values, invalid inputs with message fragments] */
const SETTABLE: [string, DatasetType, [string, PropertyValue][], [string, string][]][] = [
  [
    'compression',
    'filesystem',
    [['off', 'off'], ['on', 'on'], ['lz4', 'lz4'], ['zstd', 'zstd'], ['zstd-1', 'zstd-1'], ['zstd-19', 'zstd-19']],
    [['zstd-20', "'compression' must be one of"], ['gzip', "'compression' must be one of"], ['LZ4', 'must be one of'], ['zstd-0', 'must be one of']],
  ],
  ['checksum', 'volume', [['on', 'on'], ['fletcher4', 'fletcher4'], ['sha256', 'sha256'], ['xxh128', 'xxh128']], [['md5', "'checksum' must be one of"]]],
  ['copies', 'filesystem', [['1', 1], ['2', 2], ['3', 3]], [['0', "'copies' must be 1, 2 or 3"], ['4', 'must be 1, 2 or 3'], ['two', 'must be 1, 2 or 3']]],
  [
    'recordsize',
    'filesystem',
    [['512', 512], ['4K', 4 * K], ['128K', 128 * K], ['1M', M]],
    [
      ['256', "'recordsize' must be a power of 2 from 512B to 1M"],
      ['2M', 'power of 2 from 512B to 1M'],
      ['96K', 'power of 2'],
      ['x', "bad numeric value 'x'"],
    ],
  ],
  ['volsize', 'volume', [['20G', 20 * G], ['1T', 1024 * G], ['16K', 16 * K]], [['0', "'volsize' cannot be zero"], ['abc', 'bad numeric value']]],
  ['quota', 'filesystem', [['none', 0], ['10G', 10 * G], ['0', 0]], [['-1', 'bad numeric value'], ['lots', "bad numeric value 'lots'"]]],
  ['refquota', 'filesystem', [['none', 0], ['1M', M]], [['1.5', 'fractional']]],
  ['reservation', 'volume', [['none', 0], ['5G', 5 * G]], [['NONE', 'bad numeric value']]],
  ['refreservation', 'filesystem', [['none', 0], ['1G', G]], [['auto', 'bad numeric value']]],
  ['atime', 'filesystem', [['on', 'on'], ['off', 'off']], [['yes', "'atime' must be one of 'on | off'"]]],
  ['readonly', 'volume', [['on', 'on'], ['off', 'off']], [['true', "'readonly' must be one of 'on | off'"]]],
  ['sync', 'filesystem', [['standard', 'standard'], ['always', 'always'], ['disabled', 'disabled']], [['never', "'sync' must be one of 'standard | always | disabled'"]]],
  ['canmount', 'filesystem', [['on', 'on'], ['off', 'off'], ['noauto', 'noauto']], [['auto', "'canmount' must be one of"]]],
  [
    'mountpoint',
    'filesystem',
    [['/export/home', '/export/home'], ['/', '/'], ['//a//b/', '/a/b'], ['none', 'none'], ['legacy', 'legacy']],
    [['relative/path', "'mountpoint' must be an absolute path, 'none', or 'legacy'"], ['', 'absolute path'], [`/${'x'.repeat(300)}`, 'too long']],
  ],
  ['snapdir', 'filesystem', [['hidden', 'hidden'], ['visible', 'visible']], [['shown', "'snapdir' must be one of 'hidden | visible'"]]],
  ['com.example:owner', 'filesystem', [['alice', 'alice'], ['', ''], ['with spaces and = signs', 'with spaces and = signs']], [['x'.repeat(8193), 'too long']]],
];

test('every settable property: valid inputs become canonical values that round-trip, bad inputs say why', () => {
  for (const [name, type, valid, invalid] of SETTABLE) {
    for (const [text, canonical] of valid) {
      const value = set(name, text, type);
      assert.equal(value, canonical, `${name}=${text}`);
      // Exact (-p) text parses back to the same value; human text too for everything but fractions.
      assert.equal(set(name, formatPropertyValue(name, value, true), type), value, `${name} -p round trip`);
      assert.equal(set(name, formatPropertyValue(name, value, false), type), value, `${name} human round trip`);
    }
    for (const [text, fragment] of invalid) refused(() => set(name, text, type), fragment);
  }
});

test('volblocksize is a power of two up to 128K and settable only at creation', () => {
  assert.equal(set('volblocksize', '8K', 'volume', true), 8 * K);
  assert.equal(set('volblock', '128K', 'volume', true), 128 * K);
  refused(() => set('volblocksize', '256K', 'volume', true), "'volblocksize' must be a power of 2 from 512B to 128K");
  refused(() => set('volblocksize', '8K', 'volume', false), "property 'volblocksize' can only be set at creation time");
  validateVolsize(20 * G, 16 * K);
  refused(() => validateVolsize(20 * G + 512, 16 * K), 'multiple of volume block size (16K)');
  refused(() => validateVolsize(0, 16 * K), 'cannot be zero');
});

test('read-only, unknown and not-applicable properties are refused with zfs-like messages', () => {
  const readOnly = [
    'used', 'available', 'avail', 'referenced', 'refer', 'written', 'usedbysnapshots', 'usedbydataset',
    'usedbychildren', 'usedbyrefreservation', 'logicalused', 'logicalreferenced', 'compressratio',
    'refcompressratio', 'type', 'creation', 'createtxg', 'origin', 'guid', 'name',
  ];
  for (const name of readOnly) {
    const canonical = propertyDefinition(name).name;
    refused(() => set(name, '1'), `property '${canonical}' is read-only`);
  }
  refused(() => set('clones', 'x', 'snapshot'), "property 'clones' is read-only");
  refused(() => set('volsize', '1G', 'filesystem'), "property 'volsize' does not apply to filesystems");
  refused(() => set('recordsize', '8K', 'volume'), "property 'recordsize' does not apply to volumes");
  refused(() => set('quota', '1G', 'volume'), "property 'quota' does not apply to volumes");
  refused(() => set('compression', 'on', 'snapshot'), "property 'compression' does not apply to snapshots");
  refused(() => set('nosuchprop', 'x'), "invalid property 'nosuchprop'");
  refused(() => set('Com.Example:x', 'x'), 'invalid user property name');
  // User properties may be set on snapshots, as in zfs.
  assert.equal(set('com.example:note', 'kept', 'snapshot'), 'kept');
  // Aliases resolve to the canonical name.
  assert.equal(parsePropertyValue('compress', 'lz4', { type: 'filesystem' }).name, 'compression');
  assert.equal(parsePropertyValue('reserv', '1G', { type: 'filesystem' }).name, 'reservation');
});

test('inherit refuses what zfs refuses', () => {
  assert.equal(checkInheritable('compress', 'filesystem'), 'compression');
  assert.equal(checkInheritable('org:x', 'filesystem'), 'org:x');
  refused(() => checkInheritable('quota', 'filesystem'), "'quota' property cannot be inherited");
  refused(() => checkInheritable('canmount', 'filesystem'), "'canmount' property cannot be inherited");
  refused(() => checkInheritable('volsize', 'volume'), "'volsize' property cannot be inherited");
  refused(() => checkInheritable('used', 'filesystem'), 'read-only');
  refused(() => checkInheritable('atime', 'volume'), 'does not apply to volumes');
});

test('formatting: human and parsable', () => {
  assert.equal(formatPropertyValue('used', 10 * G + 512 * M), '10.5G');
  assert.equal(formatPropertyValue('used', 10 * G + 512 * M, true), String(10 * G + 512 * M));
  assert.equal(formatPropertyValue('quota', 0), 'none');
  assert.equal(formatPropertyValue('quota', 0, true), '0');
  assert.equal(formatPropertyValue('refreservation', 2 * G), '2G');
  assert.equal(formatPropertyValue('compressratio', 1.5), '1.50x');
  assert.equal(formatPropertyValue('compressratio', 1.5, true), '1.50');
  assert.equal(formatPropertyValue('refcompressratio', 2.345), '2.35x');
  assert.equal(formatPropertyValue('origin', ''), '-');
  assert.equal(formatPropertyValue('origin', 'tank/a@s'), 'tank/a@s');
  assert.equal(formatPropertyValue('guid', '18446744073709551615'), '18446744073709551615');
  assert.equal(formatPropertyValue('creation', 1700000000, true), '1700000000');
  const when = new Date(2024, 0, 5, 9, 7); // local time, as zfs prints
  assert.equal(formatCreation(when.getTime() / 1000), 'Fri Jan  5 09:07 2024');
  assert.equal(formatPropertyValue('creation', when.getTime() / 1000), 'Fri Jan  5 09:07 2024');
});

test('list -o column headers are zfs\'s', () => {
  const expected: Record<string, string> = {
    used: 'USED', avail: 'AVAIL', available: 'AVAIL', refer: 'REFER', mountpoint: 'MOUNTPOINT', compression: 'COMPRESS',
    compressratio: 'RATIO', refcompressratio: 'REFRATIO', recordsize: 'RECSIZE', volblocksize: 'VOLBLOCK',
    reservation: 'RESERV', refreservation: 'REFRESERV', readonly: 'RDONLY', usedbysnapshots: 'USEDSNAP',
    usedbydataset: 'USEDDS', usedbychildren: 'USEDCHILD', logicalused: 'LUSED', logicalreferenced: 'LREFER',
    name: 'NAME', 'com.example:owner': 'COM.EXAMPLE:OWNER',
  };
  for (const [name, header] of Object.entries(expected)) assert.equal(columnHeader(name), header, name);
  // Every row is complete and every name unique.
  const names = new Set<string>();
  for (const row of PROPERTY_TABLE) {
    assert.ok(!names.has(row.name), row.name);
    names.add(row.name);
    assert.ok(row.appliesTo.length > 0 && row.column.length > 0, row.name);
    assert.ok(!(row.readonly && row.inheritable), row.name);
    if (row.defaultValue !== undefined) assert.equal(row.parse(row.format(row.defaultValue, true)), row.defaultValue, row.name);
  }
});

// ---- inheritance --------------------------------------------------------------------------------------

const pool: PropertyLayer = { name: 'tank', local: { compression: 'zstd', 'com.example:owner': 'ops' } };
const home: PropertyLayer = { name: 'tank/home', local: { mountpoint: '/export/home', atime: 'off', quota: 10 * G } };
const alice: PropertyLayer = { name: 'tank/home/alice', local: { compression: 'lz4' } };
const project: PropertyLayer = { name: 'tank/home/alice/project', local: {} };

test('resolveProperties: local, default, inherited from X, and mountpoint suffixing', () => {
  const props = resolveProperties([project, alice, home, pool], { type: 'filesystem' });
  const get = (name: string): [PropertyValue, string] => {
    const p = props.get(name);
    assert.ok(p !== undefined, name);
    return [p.value, p.source];
  };
  assert.deepEqual(get('compression'), ['lz4', 'inherited from tank/home/alice']);
  assert.deepEqual(get('atime'), ['off', 'inherited from tank/home']);
  assert.deepEqual(get('mountpoint'), ['/export/home/alice/project', 'inherited from tank/home']);
  assert.deepEqual(get('quota'), [0, 'default']); // quota is not inherited
  assert.deepEqual(get('recordsize'), [128 * K, 'default']);
  assert.deepEqual(get('copies'), [1, 'default']);
  assert.deepEqual(get('canmount'), ['on', 'default']);
  assert.deepEqual(get('com.example:owner'), ['ops', 'inherited from tank']);
  assert.deepEqual(get('name'), ['tank/home/alice/project', '-']);
  assert.deepEqual(get('type'), ['filesystem', '-']);
  assert.equal(props.has('volsize'), false);
  assert.equal(props.has('used'), false); // no stats given

  const own = resolveProperties([alice, home, pool], { type: 'filesystem' });
  assert.deepEqual(own.get('compression'), { name: 'compression', value: 'lz4', source: 'local' });
  assert.deepEqual(own.get('mountpoint'), { name: 'mountpoint', value: '/export/home/alice', source: 'inherited from tank/home' });
  assert.deepEqual(own.get('quota'), { name: 'quota', value: 0, source: 'default' });
  const homeProps = resolveProperties([home, pool], { type: 'filesystem' });
  assert.deepEqual(homeProps.get('mountpoint'), { name: 'mountpoint', value: '/export/home', source: 'local' });
  assert.deepEqual(homeProps.get('quota'), { name: 'quota', value: 10 * G, source: 'local' });
  assert.deepEqual(homeProps.get('compression'), { name: 'compression', value: 'zstd', source: 'inherited from tank' });
  const root = resolveProperties([pool], { type: 'filesystem' });
  assert.deepEqual(root.get('mountpoint'), { name: 'mountpoint', value: '/tank', source: 'default' });
  assert.deepEqual(root.get('compression'), { name: 'compression', value: 'zstd', source: 'local' });
});

test('mountpoint: default follows the name; /, none and legacy inherit as zfs does', () => {
  const mp = (chain: PropertyLayer[]): PropertyValue | undefined =>
    resolveProperties(chain, { type: 'filesystem' }).get('mountpoint')?.value;
  const a: PropertyLayer = { name: 'tank/a', local: {} };
  const b: PropertyLayer = { name: 'tank/a/b', local: {} };
  assert.equal(mp([b, a, { name: 'tank', local: {} }]), '/tank/a/b');
  assert.equal(mp([b, a, { name: 'tank', local: { mountpoint: '/' } }]), '/a/b');
  assert.equal(mp([b, a, { name: 'tank', local: { mountpoint: 'none' } }]), 'none');
  assert.equal(mp([b, a, { name: 'tank', local: { mountpoint: 'legacy' } }]), 'legacy');
  assert.equal(mp([b, { name: 'tank/a', local: { mountpoint: '/mnt' } }, { name: 'tank', local: {} }]), '/mnt/b');
  // Snapshots have no mountpoint.
  const snap: PropertyLayer = { name: 'tank/a@s', local: {} };
  assert.equal(resolveProperties([snap, a, { name: 'tank', local: {} }], { type: 'snapshot' }).has('mountpoint'), false);
});

test('received values: local beats received beats inherited; ancestors\' received values inherit', () => {
  const root: PropertyLayer = { name: 'tank', local: { compression: 'zstd' } };
  const backup: PropertyLayer = { name: 'tank/backup', local: {}, received: { compression: 'lz4', 'org:src': 'host1', atime: 'off' } };
  const child: PropertyLayer = { name: 'tank/backup/x', local: { atime: 'on' } };
  const b = resolveProperties([backup, root], { type: 'filesystem' });
  assert.deepEqual(b.get('compression'), { name: 'compression', value: 'lz4', source: 'received' });
  assert.deepEqual(b.get('org:src'), { name: 'org:src', value: 'host1', source: 'received' });
  const c = resolveProperties([child, backup, root], { type: 'filesystem' });
  assert.deepEqual(c.get('compression'), { name: 'compression', value: 'lz4', source: 'inherited from tank/backup' });
  assert.deepEqual(c.get('atime'), { name: 'atime', value: 'on', source: 'local' });
  const overridden: PropertyLayer = { name: 'tank/backup', local: { compression: 'off' }, received: { compression: 'lz4' } };
  assert.deepEqual(resolveProperties([overridden, root], { type: 'filesystem' }).get('compression'), {
    name: 'compression',
    value: 'off',
    source: 'local',
  });
});

test('stats, applies-to filtering, user properties on snapshots and volumes', () => {
  const ds: PropertyLayer = { name: 'tank/vm1', local: { volsize: 20 * G, 'com.example:vm': 'web' } };
  const root: PropertyLayer = { name: 'tank', local: { recordsize: 8 * K, atime: 'off', 'com.example:owner': 'ops' } };
  const vol = resolveProperties([ds, root], { type: 'volume', stats: { used: 20 * G, available: 80 * G, clones: 'x', written: 0 } });
  assert.deepEqual(vol.get('volsize'), { name: 'volsize', value: 20 * G, source: 'local' });
  assert.deepEqual(vol.get('volblocksize'), { name: 'volblocksize', value: 16 * K, source: 'default' });
  assert.deepEqual(vol.get('used'), { name: 'used', value: 20 * G, source: '-' });
  assert.deepEqual(vol.get('written'), { name: 'written', value: 0, source: '-' });
  assert.equal(vol.has('clones'), false, 'clones applies to snapshots only');
  assert.equal(vol.has('recordsize'), false, 'recordsize does not apply to volumes');
  assert.equal(vol.has('atime'), false);
  assert.deepEqual(vol.get('com.example:vm'), { name: 'com.example:vm', value: 'web', source: 'local' });
  assert.deepEqual(vol.get('com.example:owner'), { name: 'com.example:owner', value: 'ops', source: 'inherited from tank' });
  // User properties come after the native ones, sorted.
  const keys = [...vol.keys()];
  assert.deepEqual(keys.slice(-2), ['com.example:owner', 'com.example:vm']);

  const snap: PropertyLayer = { name: 'tank/home@monday', local: { 'org:keep': 'yes' } };
  const home: PropertyLayer = { name: 'tank/home', local: { 'org:tier': 'gold', compression: 'lz4' } };
  const s = resolveProperties([snap, home, root], { type: 'snapshot', stats: { clones: 'tank/fork', available: 5 } });
  assert.deepEqual(s.get('org:keep'), { name: 'org:keep', value: 'yes', source: 'local' });
  assert.deepEqual(s.get('org:tier'), { name: 'org:tier', value: 'gold', source: 'inherited from tank/home' });
  assert.deepEqual(s.get('clones'), { name: 'clones', value: 'tank/fork', source: '-' });
  assert.equal(s.has('compression'), false);
  assert.equal(s.has('available'), false);
  assert.deepEqual(s.get('type'), { name: 'type', value: 'snapshot', source: '-' });

  assert.deepEqual(resolveProperty('org:unset', [home, root], { type: 'filesystem' }), { name: 'org:unset', value: '-', source: '-' });
  assert.deepEqual(resolveProperty('avail', [home, root], { type: 'filesystem', stats: { available: 7 } }), {
    name: 'available',
    value: 7,
    source: '-',
  });
  assert.equal(resolveProperty('volsize', [home, root], { type: 'filesystem' }), undefined);
  refused(() => resolveProperty('bogus', [home, root], { type: 'filesystem' }), "invalid property 'bogus'");
});
