import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import type { DatasetListEntry } from '../dataset/index.js';
import { isCairnError } from '../util/errors.js';
import { newerSnapshots, parseTypes, poolOfDataset, selectDatasets } from './dataset-ops.js';

const all: DatasetListEntry[] = [
  { name: 'tank', type: 'filesystem', createTxg: 1 },
  { name: 'tank/home', type: 'filesystem', createTxg: 2 },
  { name: 'tank/home@s2', type: 'snapshot', createTxg: 9 },
  { name: 'tank/home@s1', type: 'snapshot', createTxg: 5 },
  { name: 'tank/home/alice', type: 'filesystem', createTxg: 3 },
  { name: 'tank/home/alice@s1', type: 'snapshot', createTxg: 5 },
  { name: 'tank/home-old', type: 'filesystem', createTxg: 4 },
  { name: 'tank/vm1', type: 'volume', createTxg: 6 },
  { name: 'tank@root', type: 'snapshot', createTxg: 7 },
];

const names = (selection: Parameters<typeof selectDatasets>[1]): string[] => selectDatasets(all, selection).map((e) => e.name);

describe('list selection and order, as zfs', () => {
  it('no names: every filesystem and volume, in name order; -t all adds snapshots after their dataset, oldest first', () => {
    assert.deepEqual(names({}), ['tank', 'tank/home', 'tank/home-old', 'tank/home/alice', 'tank/vm1']);
    assert.deepEqual(names({ types: ['all'] }), [
      'tank', 'tank@root', 'tank/home', 'tank/home@s1', 'tank/home@s2', 'tank/home-old', 'tank/home/alice', 'tank/home/alice@s1', 'tank/vm1',
    ]);
  });

  it('a name alone lists itself; -r its descendants (not a sibling sharing the prefix); -d limits depth', () => {
    assert.deepEqual(names({ names: ['tank/home'] }), ['tank/home']);
    assert.deepEqual(names({ names: ['tank/home'], recursive: true }), ['tank/home', 'tank/home/alice']);
    assert.deepEqual(names({ names: ['tank/home'], recursive: true, types: ['snapshot'] }), ['tank/home@s1', 'tank/home@s2', 'tank/home/alice@s1']);
    assert.deepEqual(names({ names: ['tank'], depth: 1 }), ['tank', 'tank/home', 'tank/home-old', 'tank/vm1']);
    assert.deepEqual(names({ names: ['tank'], depth: 1, types: ['all'] }), ['tank', 'tank@root', 'tank/home', 'tank/home-old', 'tank/vm1']);
    assert.deepEqual(names({ names: ['tank'], depth: 0 }), ['tank']);
  });

  it('-t snapshot with a filesystem named lists its snapshots; a named snapshot is always listed', () => {
    assert.deepEqual(names({ names: ['tank/home'], types: ['snapshot'] }), ['tank/home@s1', 'tank/home@s2']);
    assert.deepEqual(names({ names: ['tank/home@s2'] }), ['tank/home@s2']);
    assert.deepEqual(names({ names: ['tank/home'], types: ['all'] }), ['tank/home']);
    assert.deepEqual(names({ names: ['tank/vm1', 'tank'], types: ['volume'] }), ['tank/vm1']);
  });

  it('unknown names, types and depths are refused', () => {
    assert.throws(() => names({ names: ['tank/nope'] }), (e: unknown) => isCairnError(e, 'ENOENT') && /tank\/nope/.test(e.message));
    assert.throws(() => parseTypes(['bookmark']), (e: unknown) => isCairnError(e, 'EINVAL'));
    assert.throws(() => names({ depth: -1 }), (e: unknown) => isCairnError(e, 'EINVAL'));
  });

  it('rollback -r destroys the newer snapshots of the same dataset, newest first', () => {
    assert.deepEqual(newerSnapshots(all, 'tank/home@s1'), ['tank/home@s2']);
    assert.deepEqual(newerSnapshots(all, 'tank/home@s2'), []);
    assert.throws(() => newerSnapshots(all, 'tank/home'), /not a snapshot/);
  });

  it('the pool is the first component', () => {
    assert.equal(poolOfDataset('tank'), 'tank');
    assert.equal(poolOfDataset('tank/a/b'), 'tank');
    assert.equal(poolOfDataset('tank@s'), 'tank');
  });
});
