import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CairnError, isCairnError } from './errors.js';

test('CairnError.answer is a CairnError without stack frames, and leaves stack traces on for the rest', () => {
  const limit = Error.stackTraceLimit;
  const answer = CairnError.answer('ENOENT', 'no entry "x"', { ino: 5 });
  assert.ok(isCairnError(answer, 'ENOENT'));
  assert.equal(answer.errno, 'ENOENT');
  assert.deepEqual(answer.data, { ino: 5 });
  assert.doesNotMatch(answer.stack ?? '', /\n\s+at /);
  assert.equal(Error.stackTraceLimit, limit);
  assert.match(new CairnError('ENOENT', 'no such pool').stack ?? '', /\n\s+at /);
});
