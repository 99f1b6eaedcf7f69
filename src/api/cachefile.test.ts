import { strict as assert } from 'node:assert';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KNOWN_DEVICES_MAX, PoolCacheFile } from './cachefile.js';

describe('pools.json (the daemon cachefile)', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cairn-cachefile-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('remembers pools across loads; forget keeps their devices known', async () => {
    const path = join(dir, 'a.json');
    const first = new PoolCacheFile(path, () => undefined);
    await first.load();
    await first.remember({ name: 'tank', guid: '01', devices: ['/d/a', '/d/b'] });
    await first.remember({ name: 'big', guid: '02', devices: ['/d/c'] });
    await first.remember({ name: 'tank', guid: '01', devices: ['/d/a', '/d/e'] });
    await first.forget('big');
    const second = new PoolCacheFile(path, () => undefined);
    await second.load();
    assert.deepEqual(second.pools(), [{ name: 'tank', guid: '01', devices: ['/d/a', '/d/e'] }]);
    assert.deepEqual([...second.knownDevices()].sort(), ['/d/a', '/d/b', '/d/c', '/d/e']);
    assert.ok(!existsSync(`${path}.tmp`));
  });

  it('a damaged file is kept aside and the daemon starts empty', async () => {
    const path = join(dir, 'b.json');
    writeFileSync(path, '{"pools": [tru');
    const lines: string[] = [];
    const cache = new PoolCacheFile(path, (line) => lines.push(line));
    await cache.load();
    assert.deepEqual(cache.pools(), []);
    assert.equal(readFileSync(`${path}.bad`, 'utf8'), '{"pools": [tru');
    assert.match(lines.join('\n'), /unreadable/);
  });

  it('ignores malformed entries and bounds the known devices', async () => {
    const path = join(dir, 'c.json');
    writeFileSync(path, JSON.stringify({ pools: [{ name: 'x' }, { name: 'ok', guid: '1', devices: ['/a'] }, 7], knownDevices: [1, '/a'] }));
    const cache = new PoolCacheFile(path, () => undefined);
    await cache.load();
    assert.deepEqual(cache.pools(), [{ name: 'ok', guid: '1', devices: ['/a'] }]);
    assert.deepEqual(cache.knownDevices(), ['/a']);
    const many = Array.from({ length: KNOWN_DEVICES_MAX + 10 }, (_, i) => `/dev/${i}`);
    await cache.remember({ name: 'wide', guid: '9', devices: many });
    assert.equal(cache.knownDevices().length, KNOWN_DEVICES_MAX);
    assert.ok(cache.knownDevices().includes(`/dev/${KNOWN_DEVICES_MAX + 9}`));
  });
});
