import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isCairnError } from '../util/errors.js';
import {
  formatDatasetName,
  isAncestor,
  joinName,
  nestingDepth,
  parentOf,
  parseDatasetName,
  snapshotName,
  validateComponent,
  validateDatasetName,
  validateSnapshotName,
} from './names.js';

function refused(fn: () => unknown, code: string, fragment: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isCairnError(e), `not a CairnError: ${String(e)}`);
    assert.equal(e.code, code);
    assert.ok(e.message.includes(fragment), `message "${e.message}" lacks "${fragment}"`);
    return true;
  });
}

const VALID_DATASETS = [
  'tank',
  'tank/a',
  'tank/a/b/c',
  'Tank2/Home_dir-1.0:x',
  'tank/with space',
  'tank/...',
  'tank/.hidden',
  'tank/a..b',
  `tank/${'x'.repeat(250)}`, // 255 bytes: the longest name
  `tank${'/a'.repeat(49)}`, // 49 levels deep
];

const INVALID_DATASETS: [name: string, code: string, fragment: string][] = [
  ['', 'EINVAL', 'empty component'],
  ['/tank', 'EINVAL', 'leading slash'],
  ['tank/', 'EINVAL', 'trailing slash'],
  ['tank//a', 'EINVAL', 'empty component'],
  ['tank/a%b', 'EINVAL', "invalid character '%' in name"],
  ['tank/a#b', 'EINVAL', "invalid character '#' in name"],
  ['tank/a*', 'EINVAL', "invalid character '*' in name"],
  ['tank/é', 'EINVAL', "invalid character 'é' in name"],
  ['tank/a\tb', 'EINVAL', 'invalid character'],
  ['tank/.', 'EINVAL', "self reference, '.'"],
  ['tank/../x', 'EINVAL', "parent reference, '..'"],
  ['..', 'EINVAL', "parent reference, '..'"],
  ['tank/a@s', 'EINVAL', "snapshot delimiter '@' is not expected here"],
  [`tank/${'x'.repeat(251)}`, 'ENAMETOOLONG', 'name is too long'],
  [`tank${'/a'.repeat(50)}`, 'EINVAL', 'nesting depth'],
];

const VALID_SNAPSHOTS = ['tank@s', 'tank/a@monday', 'tank/a@2024-01-01 10:00', 'tank@...'];

const INVALID_SNAPSHOTS: [name: string, code: string, fragment: string][] = [
  ['tank/a', 'EINVAL', "missing '@' delimiter"],
  ['tank@', 'EINVAL', 'empty component'],
  ['@s', 'EINVAL', "misplaced '@'"],
  ['tank@a@b', 'EINVAL', "multiple '@' delimiters"],
  ['tank@@b', 'EINVAL', "multiple '@' delimiters"],
  ['tank@a/b', 'EINVAL', "'/' is not allowed after the '@'"],
  ['tank/a/@s', 'EINVAL', 'empty component'],
  ['tank@.', 'EINVAL', "self reference, '.'"],
  ['tank@..', 'EINVAL', "parent reference, '..'"],
  ['tank/..@s', 'EINVAL', "parent reference, '..'"],
  ['tank@a%', 'EINVAL', "invalid character '%'"],
  [`tank@${'s'.repeat(251)}`, 'ENAMETOOLONG', 'name is too long'],
];

test('valid dataset names pass and split into pool and path', () => {
  for (const name of VALID_DATASETS) {
    validateDatasetName(name);
    const parsed = parseDatasetName(name);
    assert.equal(parsed.snapshot, undefined, name);
    assert.equal([parsed.pool, ...parsed.path].join('/'), name);
    assert.equal(formatDatasetName(parsed), name);
  }
  assert.deepEqual(parseDatasetName('tank'), { pool: 'tank', path: [] });
  assert.deepEqual(parseDatasetName('tank/a/b'), { pool: 'tank', path: ['a', 'b'] });
});

test('invalid dataset names are refused with the reason', () => {
  for (const [name, code, fragment] of INVALID_DATASETS) refused(() => validateDatasetName(name), code, fragment);
});

test('snapshot names: valid ones parse, invalid ones name their fault', () => {
  for (const name of VALID_SNAPSHOTS) {
    validateDatasetName(name, { allowSnapshot: 'only' });
    validateDatasetName(name, { allowSnapshot: true });
  }
  assert.deepEqual(parseDatasetName('tank/a@snap'), { pool: 'tank', path: ['a'], snapshot: 'snap' });
  assert.deepEqual(parseDatasetName('tank@s'), { pool: 'tank', path: [], snapshot: 's' });
  for (const [name, code, fragment] of INVALID_SNAPSHOTS) {
    refused(() => validateDatasetName(name, { allowSnapshot: 'only' }), code, fragment);
  }
  // A plain dataset name is fine where snapshots are merely allowed.
  validateDatasetName('tank/a', { allowSnapshot: true });
  refused(() => parseDatasetName('tank@a@b'), 'EINVAL', "multiple '@'");
});

test('the length limit counts bytes and stops at 255', () => {
  validateDatasetName(`p/${'a'.repeat(253)}`);
  refused(() => validateDatasetName(`p/${'a'.repeat(254)}`), 'ENAMETOOLONG', 'too long');
});

test('components and snapshot short names', () => {
  for (const ok of ['a', 'monday', 'a b', 'x:y', '...', 'v1.0-rc_2']) {
    validateComponent(ok);
    validateSnapshotName(ok);
  }
  refused(() => validateComponent(''), 'EINVAL', 'empty component');
  refused(() => validateComponent('a/b'), 'EINVAL', "invalid character '/'");
  refused(() => validateComponent('a@b'), 'EINVAL', "invalid character '@'");
  refused(() => validateComponent('.'), 'EINVAL', 'self reference');
  refused(() => validateComponent('..'), 'EINVAL', 'parent reference');
  refused(() => validateComponent('x'.repeat(256)), 'ENAMETOOLONG', 'too long');
  refused(() => validateSnapshotName('a@b'), 'EINVAL', "multiple '@'");
  refused(() => validateSnapshotName('a/b'), 'EINVAL', "'/' is not allowed");
  refused(() => validateSnapshotName('a%'), 'EINVAL', "invalid character '%'");
});

test('parentOf, isAncestor, joinName, snapshotName, nestingDepth', () => {
  assert.equal(parentOf('tank'), undefined);
  assert.equal(parentOf('tank/a'), 'tank');
  assert.equal(parentOf('tank/a/b'), 'tank/a');
  assert.equal(parentOf('tank/a@s'), 'tank/a');
  assert.equal(isAncestor('tank', 'tank/a'), true);
  assert.equal(isAncestor('tank', 'tank/a/b'), true);
  assert.equal(isAncestor('tank/a', 'tank/a@s'), true);
  assert.equal(isAncestor('tank', 'tank@s'), true);
  assert.equal(isAncestor('tank/a', 'tank/ab'), false);
  assert.equal(isAncestor('tank/a', 'tank/a'), false);
  assert.equal(isAncestor('tank/a/b', 'tank/a'), false);
  assert.equal(isAncestor('tank/a@s', 'tank/a@s2'), false);
  assert.equal(joinName('tank', 'a', 'b'), 'tank/a/b');
  refused(() => joinName('tank', 'a/b'), 'EINVAL', "invalid character '/'");
  refused(() => joinName('tank', '..'), 'EINVAL', 'parent reference');
  refused(() => joinName('tank@s', 'a'), 'EINVAL', 'cannot have children');
  refused(() => joinName(`tank${'/a'.repeat(49)}`, 'b'), 'EINVAL', 'nesting depth');
  assert.equal(snapshotName('tank/a', 'monday'), 'tank/a@monday');
  refused(() => snapshotName('tank/a', 'x@y'), 'EINVAL', "multiple '@'");
  refused(() => snapshotName('tank/a', ''), 'EINVAL', 'empty component');
  assert.equal(nestingDepth('tank'), 0);
  assert.equal(nestingDepth('tank/a/b@s'), 2);
});
