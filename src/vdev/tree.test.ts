import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FaultyDevice } from '../testing/faulty-device.js';
import { isCairnError } from '../util/errors.js';
import { DEVICE_SIZE_MIN_BYTES, leafAllocatableBytes } from './layout.js';
import { LeafVdev } from './leaf.js';
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import { buildVdevConfig, openVdevTree, parseVdevSpec } from './tree.js';
import type { BlockDevice } from './types.js';
import { sha256Verifier } from './vdev-conformance.js';

function expectBadSpec(tokens: string[], pattern: RegExp): void {
  assert.throws(() => parseVdevSpec(tokens), (e: unknown) => {
    assert.ok(isCairnError(e, 'EBADSPEC'), `expected EBADSPEC for ${tokens.join(' ')}, got ${String(e)}`);
    assert.match(e.message, pattern);
    return true;
  });
}

test('spec grammar: stripes, mirrors, raidz levels, several groups', () => {
  assert.deepEqual(parseVdevSpec(['/a', '/b']), [{ type: 'file', paths: ['/a'] }, { type: 'file', paths: ['/b'] }]);
  assert.deepEqual(parseVdevSpec(['mirror', '/a', '/b', 'mirror', '/c', '/d']), [
    { type: 'mirror', paths: ['/a', '/b'] }, { type: 'mirror', paths: ['/c', '/d'] },
  ]);
  assert.deepEqual(parseVdevSpec(['raidz', '/a', '/b', '/c']), [{ type: 'raidz', paths: ['/a', '/b', '/c'], nparity: 1 }]);
  assert.deepEqual(parseVdevSpec(['/x', 'raidz2', '/a', '/b', '/c', 'raidz3', './d', './e', './f', './g', 'raidz1', '/h', '/i']), [
    { type: 'file', paths: ['/x'] },
    { type: 'raidz', paths: ['/a', '/b', '/c'], nparity: 2 },
    { type: 'raidz', paths: ['./d', './e', './f', './g'], nparity: 3 },
    { type: 'raidz', paths: ['/h', '/i'], nparity: 1 },
  ]);
});

test('spec grammar: every error is EBADSPEC with a clear message', () => {
  expectBadSpec([], /no devices/);
  expectBadSpec(['mirror'], /mirror group has no devices/);
  expectBadSpec(['mirror', 'raidz', '/a', '/b'], /mirror group has no devices/);
  expectBadSpec(['/a', 'raidz2'], /raidz2 group has no devices/);
  expectBadSpec(['mirror', '/a'], /mirror needs at least 2 devices/);
  expectBadSpec(['raidz', '/a'], /raidz1 needs at least 2 devices, got 1/);
  expectBadSpec(['raidz2', '/a', '/b'], /raidz2 needs at least 3 devices, got 2/);
  expectBadSpec(['raidz3', '/a', '/b', '/c'], /raidz3 needs at least 4 devices, got 3/);
  expectBadSpec(['/a', 'mirror', '/b', '/a'], /\/a is used more than once/);
  expectBadSpec(['mirror', '/a', '/a'], /used more than once/);
  expectBadSpec(['mirorr', '/a', '/b'], /unknown keyword 'mirorr'/);
  expectBadSpec(['raidz4', '/a', '/b', '/c', '/d', '/e'], /unknown keyword 'raidz4'/);
  expectBadSpec(['disk1'], /device paths must contain a '\/'/);
  expectBadSpec(['/a', 'log', '/b'], /'log' vdevs are not supported/);
});

function devices(sizes: number[]): Map<string, BlockDevice> {
  return new Map(sizes.map((sizeBytes, i) => [`/d${i}`, new FaultyDevice({ sizeBytes, seed: i, path: `/d${i}` })]));
}

test('buildVdevConfig: GUIDs, ids, sizes from the smallest child', () => {
  const mib = 1024 * 1024;
  const devs = devices([DEVICE_SIZE_MIN_BYTES, DEVICE_SIZE_MIN_BYTES + 8 * mib, DEVICE_SIZE_MIN_BYTES + mib, DEVICE_SIZE_MIN_BYTES, DEVICE_SIZE_MIN_BYTES]);
  const configs = buildVdevConfig(parseVdevSpec(['/d0', 'mirror', '/d1', '/d2', 'raidz', '/d3', '/d4']), devs, { firstId: 2 });
  assert.deepEqual(configs.map((c) => [c.type, c.id]), [['file', 2], ['mirror', 3], ['raidz', 4]]);
  const guids = new Set<string>();
  const visit = (c: (typeof configs)[number]): void => {
    assert.match(c.guid, /^[0-9a-f]{16}$/);
    guids.add(c.guid);
    assert.equal(c.ashift, 12);
    c.children?.forEach(visit);
  };
  configs.forEach(visit);
  assert.equal(guids.size, 7);
  const leafAsize = leafAllocatableBytes(DEVICE_SIZE_MIN_BYTES, 12);
  assert.equal(configs[1]?.asize, leafAllocatableBytes(DEVICE_SIZE_MIN_BYTES + mib, 12));
  assert.deepEqual(configs[1]?.children?.map((c) => c.id), [0, 1]);
  assert.equal(configs[2]?.asize, 2 * leafAsize);
  assert.equal(configs[2]?.nparity, 1);
  assert.throws(() => buildVdevConfig(parseVdevSpec(['/nope']), devs), (e: unknown) => isCairnError(e, 'ENOENT'));
  const tiny = devices([DEVICE_SIZE_MIN_BYTES - 4096]);
  assert.throws(() => buildVdevConfig(parseVdevSpec(['/d0']), tiny), (e: unknown) => isCairnError(e, 'EINVAL'));
});

test('openVdevTree: builds live vdevs; a missing or shrunken device is an UNAVAIL leaf', async () => {
  const devs = devices([0, 1, 2, 3, 4].map(() => DEVICE_SIZE_MIN_BYTES));
  const configs = buildVdevConfig(parseVdevSpec(['mirror', '/d0', '/d1', 'raidz', '/d2', '/d3', '/d4']), devs, { ashift: 9 });
  const [mirror, raidz] = await openVdevTree(configs, async (path) => devs.get(path) ?? null);
  assert.ok(mirror instanceof MirrorVdev && raidz instanceof RaidzVdev);
  assert.deepEqual([mirror.config(), raidz.config()], configs);
  const data = Buffer.alloc(512 * 5, 0x3c);
  await mirror.write(0, data);
  await raidz.write(0, data);

  const shrunk = new FaultyDevice({ sizeBytes: DEVICE_SIZE_MIN_BYTES - 1024 * 1024, seed: 1, path: '/d3' });
  const reopened = await openVdevTree(configs, async (path) => (path === '/d0' ? null : path === '/d3' ? shrunk : devs.get(path) ?? null));
  const [m2, r2] = reopened;
  assert.ok(m2 && r2);
  assert.equal(m2.state, 'DEGRADED');
  assert.equal(r2.state, 'DEGRADED');
  const missingLeaf = m2.children[0];
  assert.ok(missingLeaf instanceof LeafVdev);
  assert.equal(missingLeaf.state, 'UNAVAIL');
  assert.equal(missingLeaf.path, '/d0');
  assert.equal((r2.children[1] as LeafVdev).state, 'UNAVAIL');
  assert.ok((await m2.read(0, data.length, sha256Verifier(data))).data.equals(data));
  assert.ok((await r2.read(0, data.length, sha256Verifier(data))).data.equals(data));
  assert.deepEqual(m2.config(), configs[0]);
});
