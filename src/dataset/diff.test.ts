import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPool } from '../pool/index.js';
import type { DeviceOpenFn } from '../pool/api.js';
import type { Pool } from '../pool/pool.js';
import type { FileKind, FileSystemApi } from '../fs/types.js';
import { ObjectSet, type ChangedObjectsCounters, type ObjsetEnvironment } from '../objects/objset.js';
import { FaultyDevice } from '../testing/faulty-device.js';
import { Random, testSeed } from '../testing/random.js';
import { CairnError } from '../util/errors.js';
import { diffFilesystems, escapeDiffPath, formatDiffEntry, type DiffEntry, type DiffFromSide, type DiffSide } from './diff.js';

const MiB = 1024 * 1024;

async function makePool(name: string, seed: number): Promise<Pool> {
  const path = `/diff/${name}/a`;
  const device = new FaultyDevice({ sizeBytes: 256 * MiB, seed, path });
  const openDevice: DeviceOpenFn = async (p) => {
    if (p !== path) throw new Error(`no device ${p}`);
    return device;
  };
  return (await createPool({ name, vdevSpec: [path], openDevice, cacheSizeBytes: 16 * MiB })) as unknown as Pool;
}

/** Reads pass through (counted when asked); a snapshot's blocks are never written or freed. */
function readOnlyEnv(pool: Pool, reads?: { count: number }): ObjsetEnvironment {
  return {
    ...pool.env,
    readBlock: (bp) => {
      if (reads) reads.count++;
      return pool.env.readBlock(bp);
    },
    writeBlock: () => Promise.reject(new CairnError('EROFS', 'snapshot')),
    freeBlock: () => assert.fail('free in a snapshot'),
    dirtyBytesChanged: () => undefined,
  };
}

/**
 * Snapshots the root dataset and returns the snapshot as a diff side. DatasetManager exposes a
 * snapshot's file system but not its object set, so the object set is opened here from the snapshot's
 * root pointer (traversalRoots) read-only; the snapshot keeps every block it reads alive.
 */
async function snapshot(pool: Pool, name: string): Promise<DiffFromSide> {
  await pool.datasets.snapshot(name);
  const entry = pool.datasets.list().find((e) => e.name === name);
  const root = pool.datasets.traversalRoots().find((r) => r.name === name);
  assert.ok(entry && root, `snapshot ${name} listed`);
  const objset = await ObjectSet.open(readOnlyEnv(pool), root.rootBp, pool.datasets.root.objset.policy);
  return { fs: await pool.datasets.open(name), objset, txg: entry.createTxg };
}

function live(pool: Pool): DiffSide {
  return { fs: pool.datasets.root.fs, objset: pool.datasets.root.objset };
}

async function collect(from: DiffFromSide, to: DiffSide, counters?: ChangedObjectsCounters): Promise<string[]> {
  const out: string[] = [];
  for await (const e of diffFilesystems(from, to, counters ? { counters } : {})) out.push(line(e));
  return out;
}

function line(e: DiffEntry): string {
  return `${e.change} ${e.kind} ${e.path}${e.newPath === undefined ? '' : ` -> ${e.newPath}`}`;
}

async function writeText(fs: FileSystemApi, ino: number, text: string): Promise<void> {
  await fs.write(ino, 0, Buffer.from(text));
}

test('diff: create, delete, modify, chmod, renames, new directory, symlink; reads are no change; live, unsynced and snapshot-to-snapshot agree', async () => {
  const pool = await makePool('basic', 1);
  const fs = pool.fs;
  const root = fs.rootIno;
  const a = await fs.mkdir(root, 'a', { mode: 0o755 });
  const b = await fs.mkdir(root, 'b', { mode: 0o755 });
  const keep = await fs.create(a.ino, 'keep', { mode: 0o644 });
  const edit = await fs.create(a.ino, 'edit', { mode: 0o644 });
  const mode = await fs.create(a.ino, 'mode', { mode: 0o644 });
  const gone = await fs.create(a.ino, 'gone', { mode: 0o644 });
  const within = await fs.create(a.ino, 'within', { mode: 0o644 });
  const across = await fs.create(a.ino, 'across', { mode: 0o644 });
  const untouched = await fs.create(b.ino, 'untouched', { mode: 0o644 });
  for (const st of [keep, edit, mode, gone, within, across, untouched]) await writeText(fs, st.ino, `data of ${st.ino}`);
  const s1 = await snapshot(pool, 'basic@s1');

  // Nothing changed: nothing reported (reads update atime only).
  await fs.read(keep.ino, 0, 100);
  await fs.read(untouched.ino, 0, 100);
  assert.deepEqual(await collect(s1, live(pool)), []);

  await writeText(fs, edit.ino, 'new contents');
  await fs.setattr(mode.ino, { mode: 0o600 });
  await fs.unlink(a.ino, 'gone');
  await fs.rename(a.ino, 'within', a.ino, 'within2');
  await fs.rename(a.ino, 'across', b.ino, 'across');
  const c = await fs.mkdir(root, 'c', { mode: 0o755 });
  const c1 = await fs.create(c.ino, 'one', { mode: 0o644 });
  const cd = await fs.mkdir(c.ino, 'sub', { mode: 0o755 });
  const c2 = await fs.create(cd.ino, 'two', { mode: 0o644 });
  const link = await fs.symlink(c.ino, 'link', '../a/keep');
  await fs.read(keep.ino, 0, 100);

  // Ascending object id: a, b (and root) were made first, then the files, then c's tree.
  const expected = [
    `M directory /`,
    `M directory /a`,
    `M directory /b`,
    `M file /a/edit`,
    `M file /a/mode`,
    `- file /a/gone`,
    `R file /a/within -> /a/within2`,
    `R file /a/across -> /b/across`,
    `+ directory /c`,
    `+ file /c/one`,
    `+ directory /c/sub`,
    `+ file /c/sub/two`,
    `+ symlink /c/link`,
  ];
  assert.ok(root < a.ino && a.ino < b.ino && b.ino < keep.ino && c.ino < c1.ino && c1.ino < cd.ino && cd.ino < c2.ino && c2.ino < link.ino);
  // Unsynced (the changes are still in memory), then synced, then as a second snapshot.
  assert.deepEqual(await collect(s1, live(pool)), expected);
  await pool.sync();
  assert.deepEqual(await collect(s1, live(pool)), expected);
  const s2 = await snapshot(pool, 'basic@s2');
  assert.deepEqual(await collect(s1, s2), expected);
  assert.deepEqual(await collect(s2, live(pool)), []);

  // Renaming a directory reports the directory, not what it carries; a changed child is M at its new path.
  await fs.rename(root, 'c', b.ino, 'moved');
  await writeText(fs, c2.ino, 'changed under a moved directory');
  await pool.sync();
  assert.deepEqual(await collect(s2, live(pool)), [
    `M directory /`,
    `M directory /b`,
    `R directory /c -> /b/moved`,
    `M file /b/moved/sub/two`,
  ]);

  // Deleting a tree reports every object in it with its old path.
  const s3 = await snapshot(pool, 'basic@s3');
  await fs.unlink(cd.ino, 'two');
  await fs.rmdir(c.ino, 'sub');
  await fs.unlink(c.ino, 'one');
  await fs.unlink(c.ino, 'link');
  await fs.rmdir(b.ino, 'moved');
  await pool.sync();
  assert.deepEqual(await collect(s3, live(pool)), [
    `M directory /b`,
    `- directory /b/moved`,
    `- file /b/moved/one`,
    `- directory /b/moved/sub`,
    `- file /b/moved/sub/two`,
    `- symlink /b/moved/link`,
  ]);
  await pool.export();
});

test('diff: hard links report one path; a link count change is M', async () => {
  const pool = await makePool('links', 2);
  const fs = pool.fs;
  const root = fs.rootIno;
  const d = await fs.mkdir(root, 'd', { mode: 0o755 });
  const f = await fs.create(root, 'f', { mode: 0o644 });
  const s1 = await snapshot(pool, 'links@s1');
  await fs.link(f.ino, d.ino, 'g');
  assert.deepEqual(await collect(s1, live(pool)), ['M directory /d', 'M file /f']);
  const s2 = await snapshot(pool, 'links@s2');
  await fs.unlink(root, 'f');
  // The file's parent pointer still names the root, which no longer lists it: its other link is not
  // searched for (that would be a walk of the whole tree), so it gets a placeholder name.
  assert.deepEqual(await collect(s2, live(pool)), ['M directory /', `M file /(object ${f.ino})`]);
  await fs.unlink(d.ino, 'g');
  assert.deepEqual(await collect(s2, live(pool)), ['M directory /', 'M directory /d', '- file /f']);
  await pool.export();
});

test('diff: objects whose whole meta-dnode block was freed (a hole now) are reported removed', async () => {
  const pool = await makePool('holes', 4);
  const fs = pool.fs;
  const dir = await fs.mkdir(fs.rootIno, 'many', { mode: 0o755 });
  const inos: number[] = [];
  // 32 dnodes per 16 KiB meta-dnode block: 100 files fill at least two blocks with nothing else.
  for (let i = 0; i < 100; i++) inos.push((await fs.create(dir.ino, `f${i}`, { mode: 0o644 })).ino);
  const s1 = await snapshot(pool, 'holes@s1');
  for (let i = 0; i < 100; i++) await fs.unlink(dir.ino, `f${i}`);
  await pool.sync();
  const counters: ChangedObjectsCounters = { blocksVisited: 0, olderBlocksRead: 0 };
  const got = await collect(s1, live(pool), counters);
  assert.deepEqual(got, ['M directory /many', ...inos.map((ino, i) => `- file /many/f${i}`)]);
  await pool.export();
});

test('diff: a clone against its origin snapshot (its blocks born after the origin are its changes)', async () => {
  const pool = await makePool('clones', 5);
  const fs = pool.fs;
  const f = await fs.create(fs.rootIno, 'shared', { mode: 0o644 });
  await fs.create(fs.rootIno, 'same', { mode: 0o644 });
  await writeText(fs, f.ino, 'origin');
  const origin = await snapshot(pool, 'clones@origin');
  await pool.datasets.clone('clones@origin', 'clones/c');
  const cfs = await pool.datasets.open('clones/c');
  await writeText(cfs, f.ino, 'clone');
  await cfs.create(cfs.rootIno, 'only-in-clone', { mode: 0o644 });
  // The head changes too; the clone's diff must not see it.
  await fs.unlink(fs.rootIno, 'same');
  await pool.sync();
  const root = pool.datasets.traversalRoots().find((r) => r.name === 'clones/c');
  assert.ok(root);
  const cloneSet = await ObjectSet.open(readOnlyEnv(pool), root.rootBp, pool.datasets.root.objset.policy);
  assert.deepEqual(await collect(origin, { fs: cfs, objset: cloneSet }), ['M directory /', 'M file /shared', '+ file /only-in-clone']);
  assert.deepEqual(await collect(origin, live(pool)), ['M directory /', '- file /same']);
  await pool.export();
});

test('formatDiffEntry: zfs diff lines, bytes outside printable ASCII escaped as 4-digit octal', () => {
  assert.equal(formatDiffEntry({ change: 'M', kind: 'file', path: '/a/b' }), 'M\t/a/b');
  assert.equal(formatDiffEntry({ change: '+', kind: 'directory', path: '/new dir' }), '+\t/new\\0040dir');
  assert.equal(formatDiffEntry({ change: 'R', kind: 'file', path: '/x', newPath: '/y/z' }), 'R\t/x -> /y/z');
  assert.equal(formatDiffEntry({ change: 'R', kind: 'symlink', path: '/x', newPath: '/y' }, { classify: true }), 'R\t@\t/x -> /y');
  assert.equal(formatDiffEntry({ change: '-', kind: 'directory', path: '/d' }, { classify: true }), '-\t/\t/d');
  assert.equal(escapeDiffPath('/tab\there'), '/tab\\0011here');
  assert.equal(escapeDiffPath('/back\\slash'), '/back\\0134slash');
  assert.equal(escapeDiffPath('/é~\x7f'), '/\\0303\\0251~\\0177');
  assert.equal(escapeDiffPath('/nl\n'), '/nl\\0012');
  assert.equal(formatDiffEntry({ change: 'M', kind: 'file', path: '/a b/é' }, { escape: false }), 'M\t/a b/é');
});

test('diff: cost follows the change: 5000 untouched files, one changed, a few meta-dnode blocks read', async () => {
  const pool = await makePool('cost', 3);
  const fs = pool.fs;
  const big = await fs.mkdir(fs.rootIno, 'big', { mode: 0o755 });
  const inos: number[] = [];
  for (let i = 0; i < 5000; i++) inos.push((await fs.create(big.ino, `f${i}`, { mode: 0o644 })).ino);
  const s1 = await snapshot(pool, 'cost@s1');
  const target = inos[2345] as number;
  await writeText(fs, target, 'the one change');
  await pool.sync();

  const counters: ChangedObjectsCounters = { blocksVisited: 0, olderBlocksRead: 0 };
  assert.deepEqual(await collect(s1, live(pool), counters), ['M file /big/f2345']);
  // The meta-dnode holds ~157 blocks of 32 dnodes; one changed dnode dirties one of them and the
  // indirect block above it.
  console.log(`one change: ${JSON.stringify(counters)}`);
  assert.ok(counters.blocksVisited <= 3, `visited ${counters.blocksVisited} meta-dnode blocks`);
  assert.ok(counters.olderBlocksRead <= 2, `read ${counters.olderBlocksRead} older blocks`);

  // The same question without the birth-time pruning reads every block, and still finds one object.
  const all: ChangedObjectsCounters = { blocksVisited: 0, olderBlocksRead: 0 };
  const ids: number[] = [];
  for await (const id of pool.datasets.root.objset.changedObjects(0, s1.objset, all)) ids.push(id);
  assert.deepEqual(ids, [target]);
  assert.ok(all.blocksVisited > 150, `a full walk visits ${all.blocksVisited} blocks`);

  // Counted at the block layer too: the pruned walk reads a handful of blocks in all.
  const reads = { count: 0 };
  const counted = await ObjectSet.open(readOnlyEnv(pool, reads), pool.datasets.root.objset.root, pool.datasets.root.objset.policy);
  const found: number[] = [];
  for await (const id of counted.changedObjects(s1.txg, s1.objset)) found.push(id);
  assert.deepEqual(found, [target]);
  assert.ok(reads.count <= 3, `${reads.count} block reads`);
  await pool.export();
});

// ---- seeded random operations against a model ----------------------------------------------------

interface ModelNode {
  parent: number;
  name: string;
  kind: FileKind;
}

class Model {
  nodes = new Map<number, ModelNode>();
  touched = new Set<number>();

  constructor(readonly rootIno: number) {
    this.nodes.set(rootIno, { parent: rootIno, name: '', kind: 'directory' });
  }

  static pathOf(nodes: Map<number, ModelNode>, rootIno: number, ino: number): string {
    const parts: string[] = [];
    for (let cur = ino; cur !== rootIno;) {
      const n = nodes.get(cur);
      assert.ok(n, `model: no node ${cur}`);
      parts.push(n.name);
      cur = n.parent;
    }
    return `/${parts.reverse().join('/')}`;
  }

  children(dir: number): number[] {
    return [...this.nodes].filter(([ino, n]) => n.parent === dir && ino !== this.rootIno).map(([ino]) => ino);
  }

  isAncestorOrSelf(ancestor: number, ino: number): boolean {
    for (let cur = ino; ; cur = (this.nodes.get(cur) as ModelNode).parent) {
      if (cur === ancestor) return true;
      if (cur === this.rootIno) return false;
    }
  }

  expectedSince(old: Map<number, ModelNode>): string[] {
    const inos = [...new Set([...old.keys(), ...this.nodes.keys()])].sort((x, y) => x - y);
    const out: string[] = [];
    for (const ino of inos) {
      const before = old.get(ino);
      const after = this.nodes.get(ino);
      if (before && !after) out.push(`- ${before.kind} ${Model.pathOf(old, this.rootIno, ino)}`);
      else if (!before && after) out.push(`+ ${after.kind} ${Model.pathOf(this.nodes, this.rootIno, ino)}`);
      else if (before && after && this.touched.has(ino)) {
        const newPath = Model.pathOf(this.nodes, this.rootIno, ino);
        if (before.parent !== after.parent || before.name !== after.name) {
          out.push(`R ${after.kind} ${Model.pathOf(old, this.rootIno, ino)} -> ${newPath}`);
        } else {
          out.push(`M ${after.kind} ${newPath}`);
        }
      }
    }
    return out;
  }
}

async function randomOp(fs: FileSystemApi, model: Model, random: Random, counter: { n: number }): Promise<void> {
  const all = [...model.nodes.entries()];
  const dirs = all.filter(([, n]) => n.kind === 'directory').map(([ino]) => ino);
  const files = all.filter(([, n]) => n.kind === 'file').map(([ino]) => ino);
  const nonRoot = all.map(([ino]) => ino).filter((ino) => ino !== model.rootIno);
  const name = `n${counter.n++}${random.chance(0.2) ? ' sp' : ''}`;
  const op = random.int(9);
  if (op === 0 || nonRoot.length < 3) {
    const parent = random.pick(dirs);
    const st = await fs.create(parent, name, { mode: 0o644 });
    model.nodes.set(st.ino, { parent, name, kind: 'file' });
    model.touched.add(parent);
  } else if (op === 1) {
    const parent = random.pick(dirs);
    const st = await fs.mkdir(parent, name, { mode: 0o755 });
    model.nodes.set(st.ino, { parent, name, kind: 'directory' });
    model.touched.add(parent);
  } else if (op === 2) {
    const parent = random.pick(dirs);
    const st = await fs.symlink(parent, name, `target-${counter.n}`);
    model.nodes.set(st.ino, { parent, name, kind: 'symlink' });
    model.touched.add(parent);
  } else if (op === 3 && files.length > 0) {
    const ino = random.pick(files);
    await fs.write(ino, random.int(4096), random.bytes(1 + random.int(2000)));
    model.touched.add(ino);
  } else if (op === 4) {
    const ino = random.pick([...nonRoot, model.rootIno]);
    await fs.setattr(ino, { mode: random.pick([0o600, 0o644, 0o700, 0o755]) });
    model.touched.add(ino);
  } else if (op === 5) {
    const ino = random.pick(nonRoot);
    const node = model.nodes.get(ino) as ModelNode;
    if (node.kind === 'directory') {
      if (model.children(ino).length > 0) return;
      await fs.rmdir(node.parent, node.name);
    } else {
      await fs.unlink(node.parent, node.name);
    }
    model.nodes.delete(ino);
    model.touched.add(node.parent);
  } else if (op === 6) {
    const ino = random.pick(nonRoot);
    const node = model.nodes.get(ino) as ModelNode;
    const target = random.pick(dirs);
    if (node.kind === 'directory' && model.isAncestorOrSelf(ino, target)) return;
    const newName = random.chance(0.3) ? `${node.name}x` : name;
    if (model.children(target).some((c) => model.nodes.get(c)?.name === newName)) return;
    await fs.rename(node.parent, node.name, target, newName);
    model.touched.add(node.parent).add(target).add(ino);
    model.nodes.set(ino, { parent: target, name: newName, kind: node.kind });
  } else if (op === 7 && files.length > 0) {
    await fs.read(random.pick(files), 0, 512); // atime only: no change
  } else if (op === 8 && random.chance(0.3)) {
    await fs.getattr(random.pick(nonRoot));
  }
}

test('diff: seeded random operations match a model of the expected diff', async () => {
  const seed = testSeed();
  const random = new Random(seed);
  const pool = await makePool('rand', seed);
  const fs = pool.fs;
  const model = new Model(fs.rootIno);
  const counter = { n: 0 };
  try {
    for (let i = 0; i < 40; i++) await randomOp(fs, model, random, counter);
    let previous: { side: DiffFromSide; nodes: Map<number, ModelNode> } | null = null;
    for (let round = 0; round < 7; round++) {
      const from = await snapshot(pool, `rand@r${round}`);
      const oldNodes = new Map([...model.nodes].map(([k, v]) => [k, { ...v }]));
      if (previous) {
        // Snapshot to snapshot: everything since the previous round's snapshot.
        assert.deepEqual(await collect(previous.side, from), model.expectedSince(previous.nodes), `seed ${seed} round ${round}: snapshot to snapshot`);
      }
      model.touched.clear();
      const opCount = 10 + random.int(40);
      for (let i = 0; i < opCount; i++) {
        await randomOp(fs, model, random, counter);
        if (random.chance(0.05)) await pool.sync();
      }
      const expected = model.expectedSince(oldNodes);
      assert.deepEqual(await collect(from, live(pool)), expected, `seed ${seed} round ${round}: live`);
      previous = { side: from, nodes: oldNodes };
    }
  } catch (error) {
    console.error(`diff random test failed with seed ${seed} (rerun with CAIRN_SEED=${seed})`);
    throw error;
  } finally {
    await pool.export();
  }
});
