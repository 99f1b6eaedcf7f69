import { strict as assert } from 'node:assert';
import { after, before, describe, it } from 'node:test';
import { CairnSandbox } from './harness.js';

/** `npm start` runs `cairn demo`: it must work on a fresh CAIRN_HOME and again on the pool it left. */
describe('cairn demo (the quick start)', () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('demo');
  });

  after(async () => {
    await box.stop();
  });

  it('creates the default pool, round-trips a file, forks the dataset; a second run reuses it all', async () => {
    const first = await box.ok(['demo']);
    assert.match(first.stdout, /creating pool 'cairn'/);
    assert.match(first.stdout, /sha256 [0-9a-f]{16}… matches/);
    assert.match(first.stdout, /forked cairn into cairn\/fork/);
    assert.match(first.stdout, /^cairn\/fork +\S+ +\S+ +cairn@demo$/m);
    const second = await box.ok(['demo']);
    assert.match(second.stdout, /pool 'cairn' is already imported/);
    assert.match(second.stdout, /forked cairn into cairn\/fork/);
    const snapshots = (await box.ok(['list', '-H', '-t', 'snapshot', '-o', 'name'])).stdout;
    assert.equal(snapshots, 'cairn@demo\n', 'the previous fork and its snapshot were replaced, not piled up');
    assert.equal((await box.ok(['cat', 'cairn/fork:/demo/fork-note.txt'])).stdout, 'written in the fork only\n');
  });
});
