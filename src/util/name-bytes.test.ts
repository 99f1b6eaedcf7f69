import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeNameBytes, encodeNameBytes, nameByteLength } from './name-bytes.js';
import { Random } from '../testing/random.js';

test('names: valid UTF-8 decodes as toString does; any bytes round-trip; different bytes stay different', () => {
  for (const text of ['plain', 'é-ü-日本-😀', '']) {
    const bytes = Buffer.from(text, 'utf8');
    assert.equal(decodeNameBytes(bytes), text);
    assert.ok(encodeNameBytes(text).equals(bytes));
  }
  const two = [Buffer.from('two-\xff', 'latin1'), Buffer.from('two-\xfe', 'latin1')];
  const names = two.map((b) => decodeNameBytes(b));
  assert.notEqual(names[0], names[1]);
  for (const [i, b] of two.entries()) assert.ok(encodeNameBytes(names[i] as string).equals(b));
  const rnd = new Random(7);
  const seen = new Map<string, string>();
  for (let n = 0; n < 5000; n++) {
    const bytes = rnd.bytes(1 + rnd.int(12));
    const name = decodeNameBytes(bytes);
    assert.ok(encodeNameBytes(name).equals(bytes), `round trip of ${bytes.toString('hex')}`);
    assert.equal(nameByteLength(name), bytes.length);
    const before = seen.get(name);
    assert.ok(before === undefined || before === bytes.toString('hex'), 'no two byte strings share a name');
    seen.set(name, bytes.toString('hex'));
  }
  // Overlong forms and encoded surrogates are not UTF-8: they stay bytes.
  for (const hex of ['c0af', 'eda080', 'f4908080']) {
    const bytes = Buffer.from(hex, 'hex');
    assert.ok(encodeNameBytes(decodeNameBytes(bytes)).equals(bytes), hex);
  }
});
