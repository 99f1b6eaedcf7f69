import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { open, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { CAIRN_BIN, CairnSandbox, alive, isOneLineError, seededBytes } from './harness.js';

const SEED = Number(process.env['CAIRN_SEED'] ?? Date.now() % 2 ** 31);
const MIB = 1024 * 1024;
/** Leaf layout (vdev/layout.ts): labels and reserve in the first 4 MiB, two labels in the last 512 KiB. */
const ALLOCATABLE_START_BYTES = 4 * MIB;
const TRAILING_LABELS_BYTES = 512 * 1024;

describe(`faults with the daemon running (seed ${SEED})`, () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('faults');
  });

  after(async () => {
    await box.stop();
  });

  it('corrupting one side of a mirror behind the pool: scrub -w repairs it and counts CKSUM errors', async () => {
    const deviceBytes = 64 * MIB;
    const data = seededBytes(SEED, 4 * MIB + 777);
    await writeFile(box.path('photo.bin'), data);
    await box.ok(['pool', 'create', '-s', '64M', 'tank', 'mirror', 'a.img', 'b.img']);
    await box.ok(['cp', 'photo.bin', 'tank:/photo.bin']);
    await box.ok(['pool', 'sync', 'tank']);

    // Garbage over a.img's whole allocatable region; its labels stay, so the device stays ONLINE.
    const device = await open(box.path('a.img'), 'r+');
    try {
      const garbage = seededBytes(SEED ^ 0x5a5a5a5a, MIB);
      for (let offset = ALLOCATABLE_START_BYTES; offset + MIB <= deviceBytes - TRAILING_LABELS_BYTES; offset += MIB) {
        await device.write(garbage, 0, MIB, offset);
      }
      await device.sync();
    } finally {
      await device.close();
    }

    await box.ok(['pool', 'scrub', '-w', 'tank']);
    const status = (await box.ok(['pool', 'status', 'tank'])).stdout;
    const scan = /\n {2}scan: scrub repaired (\S+) in \d\d:\d\d:\d\d with 0 errors on .+\n/.exec(status);
    assert.ok(scan !== null, status);
    assert.notEqual(scan[1], '0B', `scrub repaired nothing:\n${status}`);
    const row = new RegExp(`\\t {4}${box.path('a.img')} +ONLINE +\\d+ +\\d+ +(\\S+)\\n`).exec(status);
    assert.ok(row !== null, status);
    assert.notEqual(row[1], '0', `no checksum errors counted on a.img:\n${status}`);
    assert.match(status, new RegExp(`\\t {4}${box.path('b.img')} +ONLINE +0 +0 +0\\n`));
    assert.match(status, /errors: No known data errors\n$/);
    const back = await box.ok(['cat', 'tank:/photo.bin']);
    assert.ok(back.stdoutBytes.equals(data), `data differs after repair (seed ${SEED})`);

    // A second scrub finds the repaired side clean.
    await box.ok(['pool', 'scrub', '-w', 'tank']);
    assert.match((await box.ok(['pool', 'status', 'tank'])).stdout, /scan: scrub repaired 0B in /);
  });

  it('kill -9 during writes: the next daemon re-imports the pool and synced data is intact', async () => {
    const synced = seededBytes(SEED + 1, 2 * MIB + 3);
    await box.ok(['cp', '-', 'tank:/synced.bin'], { input: synced });
    await box.ok(['pool', 'sync', 'tank']);
    const pid = box.daemonPid();
    assert.ok(pid !== null);

    // A long upload, fed slowly, with the daemon killed under it.
    const writer = spawn(process.execPath, [CAIRN_BIN, 'cp', '-', 'tank:/inflight.bin'], {
      cwd: box.dir,
      env: box.env(),
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    let writerStderr = '';
    writer.stderr.on('data', (chunk: Buffer) => (writerStderr += chunk.toString()));
    const writerExit = new Promise<number>((resolve) => writer.once('close', (code) => resolve(code ?? -1)));
    writer.stdin.on('error', () => undefined);
    const chunk = seededBytes(SEED + 2, 256 * 1024);
    for (let i = 0; i < 24; i++) {
      if (!writer.stdin.write(chunk)) await new Promise((resolve) => writer.stdin.once('drain', resolve));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((resolve) => setTimeout(resolve, 20));
    writer.stdin.end();
    assert.equal(await writerExit, 1, writerStderr);
    assert.ok(isOneLineError(writerStderr), writerStderr);

    // The next command starts a new daemon over the stale pid file; it re-imports tank from pools.json.
    const list = (await box.ok(['pool', 'list', '-H'])).stdout;
    assert.match(list, /^tank\t.*\tONLINE\n$/);
    assert.notEqual(box.daemonPid(), pid);
    const back = await box.ok(['cat', 'tank:/synced.bin']);
    assert.ok(back.stdoutBytes.equals(synced), `synced data differs after kill -9 (seed ${SEED})`);
    const photo = await box.ok(['cat', 'tank:/photo.bin']);
    assert.equal(photo.stdoutBytes.length, 4 * MIB + 777);
    await box.ok(['pool', 'scrub', '-w', 'tank']);
    assert.match((await box.ok(['pool', 'status', 'tank'])).stdout, /with 0 errors on .*\n[\s\S]*errors: No known data errors\n$/);
  });
});
