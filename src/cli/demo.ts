/**
 * `cairn demo` (what `npm start` runs): on the default pool — `cairn`, a mirror of two sparse 1 GiB files
 * under $CAIRN_HOME/pools/default/, created the first time and imported after that — copy a generated
 * file in, read it back through the daemon and compare digests, snapshot the dataset and fork it into a
 * writable clone (the fork changes, the snapshot does not), then show pool status, pool list and the
 * datasets. Every step goes through cairnd exactly as the CLI commands do, and running it again reuses
 * the same pool (the previous fork and its snapshot are destroyed first).
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import type { CliContext } from './main.js';
import { formatList, formatStatus } from './format.js';
import { formatDatasetList } from './dataset-format.js';
import { formatSize } from './size.js';
import { CairnError } from '../util/errors.js';

const DEMO_POOL = 'cairn';
const DEMO_DEVICE_SIZE_BYTES = 1024 ** 3;
const DEMO_FILE_BYTES = 8 * 1024 * 1024;
const DEMO_CHUNK_BYTES = 1024 * 1024;
const DEMO_REMOTE_DIR = '/demo';
const DEMO_REMOTE_PATH = '/demo/sample.bin';
const DEMO_SNAPSHOT = `${DEMO_POOL}@demo`;
const DEMO_FORK = `${DEMO_POOL}/fork`;

async function generateFile(path: string, sizeBytes: number): Promise<string> {
  const hash = createHash('sha256');
  const stream = createWriteStream(path);
  for (let written = 0; written < sizeBytes; written += DEMO_CHUNK_BYTES) {
    const chunk = randomBytes(Math.min(DEMO_CHUNK_BYTES, sizeBytes - written));
    hash.update(chunk);
    if (!stream.write(chunk)) await once(stream, 'drain');
  }
  stream.end();
  await once(stream, 'finish');
  return hash.digest('hex');
}

export async function runDemo(context: CliContext): Promise<number> {
  const deviceDir = join(context.home.dir, 'pools', 'default');
  const devices = [join(deviceDir, 'disk0.img'), join(deviceDir, 'disk1.img')];
  await mkdir(deviceDir, { recursive: true });
  const client = await context.client();
  const imported = (await client.call('pool.status', {})).some((pool) => pool.name === DEMO_POOL);
  if (imported) {
    context.out(`pool '${DEMO_POOL}' is already imported\n`);
  } else if (devices.some((device) => existsSync(device))) {
    context.out(`importing pool '${DEMO_POOL}' from ${deviceDir}\n`);
    await client.call('pool.import', { nameOrGuid: DEMO_POOL, searchPaths: [deviceDir], command: context.commandLine });
  } else {
    context.out(`creating pool '${DEMO_POOL}': mirror of two sparse ${formatSize(DEMO_DEVICE_SIZE_BYTES)} files in ${deviceDir}\n`);
    await client.call('pool.create', {
      name: DEMO_POOL,
      vdevSpec: ['mirror', ...devices],
      createSizeBytes: DEMO_DEVICE_SIZE_BYTES,
      command: `cairn pool create -s 1G ${DEMO_POOL} mirror ${devices.join(' ')}`,
    });
  }

  const scratchDir = await mkdtemp(join(tmpdir(), 'cairn-demo-'));
  try {
    const localPath = join(scratchDir, 'sample.bin');
    const digest = await generateFile(localPath, DEMO_FILE_BYTES);
    await client.call('fs.mkdir', { dataset: DEMO_POOL, path: DEMO_REMOTE_DIR, parents: true });
    const writeStartMs = Date.now();
    const written = await client.putFile(DEMO_POOL, DEMO_REMOTE_PATH, createReadStream(localPath), 0o644);
    const writeMs = Math.max(1, Date.now() - writeStartMs);
    context.out(
      `copied ${formatSize(written)} to ${DEMO_POOL}:${DEMO_REMOTE_PATH} in ${writeMs} ms ` +
        `(${formatSize((written / writeMs) * 1000)}/s)\n`,
    );
    await client.call('pool.sync', { names: [DEMO_POOL] });

    const readStartMs = Date.now();
    const readHash = createHash('sha256');
    let readBytes = 0;
    for await (const chunk of await client.getFile(DEMO_POOL, DEMO_REMOTE_PATH)) {
      readHash.update(chunk);
      readBytes += chunk.length;
    }
    const readMs = Math.max(1, Date.now() - readStartMs);
    const readDigest = readHash.digest('hex');
    if (readBytes !== written || readDigest !== digest) {
      throw new CairnError('EIO', `read back ${readBytes} bytes with sha256 ${readDigest}, expected ${written} bytes with ${digest}`);
    }
    context.out(
      `read back ${formatSize(readBytes)} in ${readMs} ms (${formatSize((readBytes / readMs) * 1000)}/s): ` +
        `sha256 ${digest.slice(0, 16)}… matches\n\n`,
    );
    await forkDemo(context, client, digest);
  } finally {
    await rm(scratchDir, { recursive: true, force: true });
  }

  const [status] = await client.call('pool.status', { names: [DEMO_POOL] });
  if (status !== undefined) context.out(`$ cairn pool status ${DEMO_POOL}\n${formatStatus(status, { verbose: false })}\n`);
  context.out(`$ cairn pool list\n${formatList(await client.call('pool.status', {}), { scripted: false, parsable: false })}`);
  await client.call('pool.sync', { names: [DEMO_POOL] });
  const columns = ['name', 'used', 'referenced', 'origin'];
  const rows = await client.call('dataset.list', { names: [DEMO_POOL], recursive: true, types: ['filesystem', 'snapshot'], properties: columns });
  context.out(`\n$ cairn list -r -t filesystem,snapshot -o ${columns.join(',')} ${DEMO_POOL}\n${formatDatasetList(rows, columns, { scripted: false, parsable: false })}`);
  return 0;
}

/** An instant writable fork: snapshot, clone, change the clone; the snapshot still reads the original. */
async function forkDemo(context: CliContext, client: Awaited<ReturnType<CliContext['client']>>, digest: string): Promise<void> {
  const existing = await client.call('dataset.list', { names: [DEMO_POOL], recursive: true, types: ['snapshot'], properties: ['name'] });
  if (existing.some((row) => row.name === DEMO_SNAPSHOT)) {
    await client.call('dataset.destroy', { name: DEMO_SNAPSHOT, dependents: true, command: `cairn destroy -R ${DEMO_SNAPSHOT}` });
  }
  await client.call('dataset.snapshot', { names: [DEMO_SNAPSHOT], command: `cairn snapshot ${DEMO_SNAPSHOT}` });
  await client.call('dataset.clone', { snapshot: DEMO_SNAPSHOT, name: DEMO_FORK, command: `cairn clone ${DEMO_SNAPSHOT} ${DEMO_FORK}` });
  await client.call('fs.remove', { dataset: DEMO_FORK, path: DEMO_REMOTE_PATH });
  const note = Buffer.from('written in the fork only\n');
  await client.putFile(DEMO_FORK, '/demo/fork-note.txt', Readable.from([note]), 0o644);
  const snapshotHash = createHash('sha256');
  for await (const chunk of await client.getFile(DEMO_SNAPSHOT, DEMO_REMOTE_PATH)) snapshotHash.update(chunk);
  if (snapshotHash.digest('hex') !== digest) throw new CairnError('EIO', `${DEMO_SNAPSHOT}:${DEMO_REMOTE_PATH} changed after the fork`);
  context.out(
    `forked ${DEMO_POOL} into ${DEMO_FORK} (snapshot ${DEMO_SNAPSHOT} + clone, no data copied); ` +
      `removed the sample in the fork, and ${DEMO_SNAPSHOT}:${DEMO_REMOTE_PATH} still matches\n\n`,
  );
}
