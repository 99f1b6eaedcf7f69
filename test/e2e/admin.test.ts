import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { CairnSandbox, alive, seededBytes } from './harness.js';

const SEED = Number(process.env['CAIRN_SEED'] ?? Date.now() % 2 ** 31);

/** The leaf rows of a zpool-status config tree: [indent, name, state]. */
function treeRows(status: string): [number, string, string][] {
  const rows: [number, string, string][] = [];
  for (const line of status.split('\n')) {
    const match = /^\t( *)(\S+) +(ONLINE|DEGRADED|FAULTED|OFFLINE|UNAVAIL|REMOVED) +\S+ +\S+ +\S+/.exec(line);
    if (match !== null) rows.push([(match[1] ?? '').length, match[2] ?? '', match[3] ?? '']);
  }
  return rows;
}

describe(`device management and the daemon under concurrent starts (seed ${SEED})`, () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('admin');
  });

  after(async () => {
    await box.stop();
  });

  it('three CLIs racing to auto-start end up with one daemon', async () => {
    const results = await Promise.all([box.run(['pool', 'list']), box.run(['pool', 'list']), box.run(['daemon', 'start'])]);
    for (const result of results) assert.equal(result.code, 0, result.stderr);
    const pid = box.daemonPid();
    assert.ok(pid !== null && alive(pid));
    assert.match(results[2]?.stdout ?? '', new RegExp(`^pid: ${pid}\\n`));
    const log = readFileSync(box.path('home', 'cairnd.log'), 'utf8');
    assert.equal(log.match(/listening on/g)?.length, 1, log);
  });

  it('raidz2 of six devices and two top-level mirrors show their trees', async () => {
    await box.ok(['pool', 'create', '-s', '64M', 'big', 'raidz2', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6']);
    const rows = treeRows((await box.ok(['pool', 'status', 'big'])).stdout);
    assert.deepEqual(rows.map(([indent, name]) => [indent, name.replace(box.dir, '')]), [
      [0, 'big'],
      [2, 'raidz2-0'],
      ...['r1', 'r2', 'r3', 'r4', 'r5', 'r6'].map((name): [number, string] => [4, `/${name}`]),
    ]);
    await box.ok(['pool', 'create', '-s', '64M', 'two', 'mirror', 'm1', 'm2', 'mirror', 'm3', 'm4']);
    const names = treeRows((await box.ok(['pool', 'status', 'two'])).stdout).map(([, name]) => name);
    assert.deepEqual(names.slice(0, 2), ['two', 'mirror-0']);
    assert.ok(names.includes('mirror-1'), names.join(' '));
    await box.ok(['pool', 'destroy', 'big']);
    const gone = await box.run(['pool', 'status', 'big']);
    assert.equal(gone.code, 1);
    assert.equal(gone.stderr, "cairn: no such pool 'big'\n");
  });

  it('offline/online, attach/detach, replace and add change the tree and keep the data', async () => {
    const data = seededBytes(SEED, MIB_2);
    await box.ok(['pool', 'create', '-s', '64M', 'tank', 'mirror', 'a.img', 'b.img']);
    await box.ok(['cp', '-', 'tank:/data.bin'], { input: data });

    await box.ok(['pool', 'offline', 'tank', 'b.img']);
    let status = (await box.ok(['pool', 'status', 'tank'])).stdout;
    assert.match(status, / state: DEGRADED\n/);
    assert.match(status, /status: One or more devices has been taken offline/);
    assert.deepEqual(treeRows(status).find(([, name]) => name === box.path('b.img'))?.[2], 'OFFLINE');
    await box.ok(['pool', 'online', 'tank', 'b.img']);
    assert.match((await box.ok(['pool', 'status', 'tank'])).stdout, / state: ONLINE\n/);

    await box.ok(['pool', 'attach', '-s', '64M', 'tank', 'a.img', 'c.img']);
    status = (await box.ok(['pool', 'status', 'tank'])).stdout;
    assert.ok(treeRows(status).some(([indent, name]) => indent === 4 && name === box.path('c.img')), status);
    await box.ok(['pool', 'detach', 'tank', 'a.img']);
    await box.ok(['pool', 'replace', '-s', '64M', 'tank', 'b.img', 'd.img']);
    await box.ok(['pool', 'add', '-s', '64M', 'tank', 'mirror', 'e.img', 'f.img']);
    status = (await box.ok(['pool', 'status', 'tank'])).stdout;
    const leaves = treeRows(status)
      .filter(([indent]) => indent === 4)
      .map(([, name]) => name.replace(`${box.dir}/`, ''))
      .sort();
    assert.deepEqual(leaves, ['c.img', 'd.img', 'e.img', 'f.img'], status);
    assert.ok((await box.ok(['cat', 'tank:/data.bin'])).stdoutBytes.equals(data), `seed ${SEED}`);

    // pools.json follows the devices, so a restart finds the pool where it now lives.
    const remembered = JSON.parse(readFileSync(box.path('home', 'pools.json'), 'utf8')) as { pools: { name: string; devices: string[] }[] };
    const tank = remembered.pools.find((pool) => pool.name === 'tank');
    assert.deepEqual(tank?.devices.map((path) => path.replace(`${box.dir}/`, '')).sort(), ['c.img', 'd.img', 'e.img', 'f.img']);

    const history = (await box.ok(['pool', 'history', 'tank'])).stdout;
    for (const command of [
      'cairn pool offline tank b.img',
      'cairn pool online tank b.img',
      'cairn pool attach -s 64M tank a.img c.img',
      'cairn pool detach tank a.img',
      'cairn pool replace -s 64M tank b.img d.img',
      'cairn pool add -s 64M tank mirror e.img f.img',
    ]) {
      assert.ok(history.includes(`${command}\n`), `history lacks '${command}':\n${history}`);
    }
  });

  it('iostat prints the zpool iostat table; with INTERVAL COUNT it repeats', async () => {
    const once = (await box.ok(['pool', 'iostat', 'tank'])).stdout.split('\n');
    assert.match(once[0] ?? '', /^ +capacity +operations +bandwidth$/);
    assert.match(once[1] ?? '', /^pool +alloc +free +read +write +read +write$/);
    assert.match(once[2] ?? '', /^-+(  -----){6}$/);
    assert.match(once[3] ?? '', /^tank +\S+ +\S+ +\S+ +\S+ +\S+ +\S+$/);
    const repeated = (await box.ok(['pool', 'iostat', 'tank', '0.2', '2'])).stdout;
    assert.equal(repeated.match(/^tank /gm)?.length, 2, repeated);
  });
});

const MIB_2 = 2 * 1024 * 1024 + 5;
