import { strict as assert } from 'node:assert';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { CAIRND_BIN, CairnSandbox, alive, isOneLineError } from './harness.js';

/** A raw HTTP exchange with the daemon, for requests the CLI would never send. */
function rawRequest(socketPath: string, method: string, path: string, body: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const outgoing = request({ socketPath, method, path, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve({ status: response.statusCode ?? 0, json: JSON.parse(text) as unknown });
        } catch {
          reject(new Error(`not JSON: ${text}`));
        }
      });
    });
    outgoing.on('error', reject);
    outgoing.end(body);
  });
}

describe('cairnd lifecycle', () => {
  let box: CairnSandbox;

  before(async () => {
    box = await CairnSandbox.create('daemon');
  });

  after(async () => {
    await box.stop();
  });

  it('daemon status without a daemon fails with one line and starts nothing', async () => {
    const result = await box.run(['daemon', 'status']);
    assert.equal(result.code, 1);
    assert.ok(isOneLineError(result.stderr), result.stderr);
    assert.match(result.stderr, /not running/);
    assert.equal(box.daemonPid(), null);
  });

  it('any pool command starts the daemon (pid file, socket, log)', async () => {
    assert.equal((await box.ok(['pool', 'list'])).stdout, 'no pools available\n');
    const pid = box.daemonPid();
    assert.ok(pid !== null && alive(pid), 'daemon pid file names a live process');
    assert.ok(existsSync(box.path('home', 'cairnd.sock')));
    assert.match(readFileSync(box.path('home', 'cairnd.log'), 'utf8'), /listening on .*cairnd\.sock/);
  });

  it('daemon status prints pid: and socket: lines', async () => {
    const { stdout } = await box.ok(['daemon', 'status']);
    assert.match(stdout, new RegExp(`^pid: ${box.daemonPid()}\\n`, 'm'));
    assert.match(stdout, new RegExp(`^socket: ${box.path('home', 'cairnd.sock')}$`, 'm'));
  });

  it('a second daemon is refused and leaves the first one running', async () => {
    const pid = box.daemonPid();
    const second = await box.run([], { bin: CAIRND_BIN });
    assert.equal(second.code, 1);
    assert.match(second.stderr, new RegExp(`^cairnd: cairnd is already running \\(pid ${pid}\\)\\n$`));
    assert.equal(box.daemonPid(), pid);
    await box.ok(['daemon', 'status']);
  });

  it('malformed requests get EPROTO/EINVAL answers and the daemon stays up', async () => {
    const socket = box.path('home', 'cairnd.sock');
    const cases: [string, string, string, string][] = [
      ['POST', '/v1/pool.status', '{not json', 'EPROTO'],
      ['POST', '/v1/pool.frobnicate', '{}', 'EPROTO'],
      ['POST', '/v1/pool.create', '{"name": 7, "vdevSpec": "a"}', 'EINVAL'],
      ['POST', '/v1/pool.create', '[]', 'EPROTO'],
      ['POST', '/v1/fs.list', '{"pool": "tank"}', 'EINVAL'],
      ['GET', '/v1/file?pool=tank', '', 'EPROTO'],
      ['DELETE', '/v1/pool.status', '', 'EPROTO'],
      ['POST', '/v1/toString', '{}', 'EPROTO'],
      ['POST', '/v1/pool.status', '{"names": "tank"}', 'EINVAL'],
    ];
    for (const [method, path, body, code] of cases) {
      const answer = await rawRequest(socket, method, path, body);
      const json = answer.json as { ok: boolean; error?: { code: string; message: string } };
      assert.equal(json.ok, false, `${method} ${path}`);
      assert.equal(json.error?.code, code, `${method} ${path} ${body}: ${JSON.stringify(json)}`);
      assert.ok(answer.status >= 400);
    }
    const pid = box.daemonPid();
    assert.ok(pid !== null && alive(pid));
    await box.ok(['pool', 'list']);
  });

  it('daemon stop closes pools cleanly; the next start re-imports them from pools.json', async () => {
    await box.ok(['pool', 'create', '-s', '64M', 'keep', 'k1.img']);
    await box.ok(['cp', '-', 'keep:/hello.txt'], { input: Buffer.from('still here\n') });
    const pid = box.daemonPid();
    const stopped = await box.ok(['daemon', 'stop']);
    assert.equal(stopped.stdout, `cairnd stopped (pid ${pid})\n`);
    assert.ok(pid !== null && !alive(pid));
    assert.equal(box.daemonPid(), null);
    assert.ok(!existsSync(box.path('home', 'cairnd.sock')));
    const remembered = JSON.parse(readFileSync(box.path('home', 'pools.json'), 'utf8')) as { pools: { name: string; devices: string[] }[] };
    assert.deepEqual(remembered.pools.map((pool) => pool.name), ['keep']);
    assert.deepEqual(remembered.pools[0]?.devices, [box.path('k1.img')]);

    const started = await box.ok(['daemon', 'start']);
    assert.match(started.stdout, /^pid: \d+\nsocket: /);
    assert.notEqual(box.daemonPid(), pid);
    assert.equal((await box.ok(['cat', 'keep:/hello.txt'])).stdout, 'still here\n');
    assert.match((await box.ok(['daemon', 'status'])).stdout, /^pools: keep$/m);
  });

  it('export forgets the pool: a restarted daemon does not bring it back', async () => {
    await box.ok(['pool', 'export', 'keep']);
    await box.ok(['daemon', 'stop']);
    assert.equal((await box.ok(['pool', 'list'])).stdout, 'no pools available\n');
    // ...but import with no -d still finds it among the devices the daemon has seen.
    assert.match((await box.ok(['pool', 'import'])).stdout, /^ {3}pool: keep\n/);
    await box.ok(['pool', 'import', 'keep']);
    assert.equal((await box.ok(['cat', 'keep:/hello.txt'])).stdout, 'still here\n');
  });

  it('daemon stop when none runs says so and succeeds', async () => {
    await box.ok(['daemon', 'stop']);
    assert.equal((await box.ok(['daemon', 'stop'])).stdout, 'cairnd is not running\n');
  });
});
