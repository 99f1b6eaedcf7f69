import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryObjectStore } from './memory-object-store.js';
import { ObjectType } from '../objects/types.js';
import { InvariantError } from '../util/assert.js';
import { isCairnError } from '../util/errors.js';

test('reads of never-written bytes are zeros; writes across blocks read back', async () => {
  const store = new MemoryObjectStore();
  const id = await store.hold(() => store.allocateObject(ObjectType.plainFile, { blockSizeBytes: 512 }));
  assert.equal(id, 1);
  assert.deepEqual(await store.read(id, 1000, 10), Buffer.alloc(10));
  const data = Buffer.from(Array.from({ length: 1500 }, (_, i) => (i * 7 + 1) & 0xff));
  await store.hold(() => store.write(id, 300, data));
  assert.deepEqual(await store.read(id, 300, 1500), data);
  assert.deepEqual(await store.read(id, 0, 300), Buffer.alloc(300));
  const info = await store.objectInfo(id);
  assert.equal(info.blockSizeBytes, 512);
  assert.equal(info.maxOffsetBytes, 2048);
  assert.equal(info.usedBytes, 4 * 512);
  assert.equal(info.type, ObjectType.plainFile);
});

test('freeRange frees whole blocks and zeroes partial ones', async () => {
  const store = new MemoryObjectStore();
  const id = await store.hold(() => store.allocateObject(ObjectType.plainFile, { blockSizeBytes: 512 }));
  await store.hold(() => store.write(id, 0, Buffer.alloc(2048, 0xaa)));
  await store.hold(() => store.freeRange(id, 100, 1000));
  const back = await store.read(id, 0, 2048);
  for (let i = 0; i < 2048; i++) assert.equal(back[i], i >= 100 && i < 1100 ? 0 : 0xaa, `byte ${i}`);
  assert.equal((await store.objectInfo(id)).usedBytes, 3 * 512);
  await store.hold(() => store.freeRange(id, 0, Number.MAX_SAFE_INTEGER - 1));
  assert.equal((await store.objectInfo(id)).usedBytes, 0);
  assert.equal((await store.objectInfo(id)).maxOffsetBytes, 2048);
});

test('bonus, ids, freeObject, validation', async () => {
  const store = new MemoryObjectStore();
  const [a, b] = await store.hold(async () => [
    await store.allocateObject(ObjectType.kv, { bonusType: 7 }),
    await store.allocateObject(ObjectType.kv),
  ]);
  assert.deepEqual([a, b], [1, 2]);
  assert.equal((await store.getBonus(a!)).length, 0);
  await store.hold(() => store.setBonus(a!, Buffer.from('hello')));
  const bonus = await store.getBonus(a!);
  bonus[0] = 0;
  assert.equal((await store.getBonus(a!)).toString(), 'hello');
  const info = await store.objectInfo(a!);
  assert.equal(info.bonusType, 7);
  assert.equal(info.bonusLengthBytes, 5);
  await assert.rejects(store.hold(() => store.setBonus(a!, Buffer.alloc(321))), (e) => isCairnError(e, 'EINVAL'));
  await assert.rejects(
    store.hold(() => store.allocateObject(ObjectType.kv, { blockSizeBytes: 1000 })),
    (e) => isCairnError(e, 'EINVAL'),
  );
  await store.hold(() => store.freeObject(a!));
  await assert.rejects(store.read(a!, 0, 1), (e) => isCairnError(e, 'ENOENT'));
  assert.equal(await store.hold(() => store.allocateObject(ObjectType.kv)), 3);
});

test('mutations outside hold fail; holds do not interleave; nested holds run inline', async () => {
  const store = new MemoryObjectStore();
  await assert.rejects(store.allocateObject(ObjectType.kv), InvariantError);
  const id = await store.hold(() => store.allocateObject(ObjectType.kv, { blockSizeBytes: 512 }));
  const log: string[] = [];
  const run = (name: string) =>
    store.hold(async () => {
      log.push(`${name}-start`);
      await new Promise((r) => setTimeout(r, 5));
      await store.hold(() => store.write(id, 0, Buffer.from(name)));
      log.push(`${name}-end`);
    });
  await Promise.all([run('a'), run('b'), run('c')]);
  assert.deepEqual(log, ['a-start', 'a-end', 'b-start', 'b-end', 'c-start', 'c-end']);
  // A hold whose fn throws releases the mutex.
  await assert.rejects(store.hold(async () => { throw new Error('boom'); }), /boom/);
  await store.hold(() => store.write(id, 0, Buffer.from('z')));
  assert.equal((await store.read(id, 0, 1)).toString(), 'z');
});
