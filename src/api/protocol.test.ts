import { strict as assert } from 'node:assert';
import { describe, it } from 'node:test';
import { isCairnError } from '../util/errors.js';
import { isVerb, validateArgs } from './protocol.js';

describe('request validation', () => {
  it('accepts well-typed arguments and drops unknown fields and nulls', () => {
    const args = validateArgs('pool.create', { name: 'tank', vdevSpec: ['a'], force: null, extra: 1 });
    assert.deepEqual(args, { name: 'tank', vdevSpec: ['a'] });
  });

  it('answers EINVAL for wrong types and missing fields, EPROTO for a non-object body', () => {
    const expect = (body: unknown, code: 'EINVAL' | 'EPROTO', pattern: RegExp): void =>
      assert.throws(() => validateArgs('pool.create', body), (e: unknown) => isCairnError(e, code) && pattern.test(e.message));
    expect({ vdevSpec: ['a'] }, 'EINVAL', /missing argument 'name'/);
    expect({ name: 3, vdevSpec: ['a'] }, 'EINVAL', /'name' must be string/);
    expect({ name: 'x', vdevSpec: [1] }, 'EINVAL', /'vdevSpec' must be string\[\]/);
    expect({ name: 'x', vdevSpec: ['a'], createSizeBytes: 'big' }, 'EINVAL', /must be number/);
    expect({ name: 'x', vdevSpec: ['a'], properties: { a: 1 } }, 'EINVAL', /must be record/);
    expect([1, 2], 'EPROTO', /JSON object/);
    expect('text', 'EPROTO', /JSON object/);
  });

  it('knows its verbs and nothing inherited', () => {
    assert.ok(isVerb('pool.status'));
    assert.ok(!isVerb('toString'));
    assert.ok(!isVerb('pool.frobnicate'));
  });
});
