/**
 * Permission checks through the mount against the kernel's own: the same seeded tree (modes, owners,
 * groups, sticky and setgid directories) is built on ext4 and on a Cairn mount, and callers with
 * different uids, groups and capabilities probe both (permission_oracle.py). The mount's server makes
 * these decisions itself (src/fuse/permissions.ts); ext4's are the reference, answer for answer.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeRig, parseRecords, PYTHON, run, skipUnlessFuse, type Records, type Rig } from './harness.js';

const SEED = Number(process.env['CAIRN_POSIX_SEED'] ?? 4242);
const ORACLE = join(dirname(fileURLToPath(import.meta.url)), 'permission_oracle.py');
/** `stat -f` names of file systems whose permission checks are the kernel's generic ones, with user xattrs. */
const REFERENCE_FS_TYPES: ReadonlySet<string> = new Set(['ext2/ext3', 'ext4', 'xfs', 'btrfs', 'tmpfs']);

/** setpriv arguments of each caller; root's capabilities come from its bounding set. */
const CALLERS: Array<{ name: string; setpriv: string[] }> = [
  { name: 'uid 1000, no groups', setpriv: ['--reuid=1000', '--regid=1000', '--clear-groups'] },
  { name: 'uid 1000 in group 4242', setpriv: ['--reuid=1000', '--regid=1000', '--groups=4242'] },
  { name: 'uid 1001 in group 1000', setpriv: ['--reuid=1001', '--regid=1001', '--groups=1000'] },
  { name: 'uid 1002 with gid 4242', setpriv: ['--reuid=1002', '--regid=4242', '--clear-groups'] },
  { name: 'root', setpriv: [] },
  { name: 'root without capabilities', setpriv: ['--bounding-set=-all', '--inh-caps=-all'] },
];

async function oracle(args: string[], setpriv: string[] = []): Promise<Records> {
  const result = await run('setpriv', [...setpriv, PYTHON, ORACLE, ...args]);
  if (result.code !== 0) throw new Error(`permission_oracle.py ${args[0]} exited ${result.code ?? result.signal}:\n${result.stderr}`);
  return parseRecords(result.stdout);
}

describe('permissions through a FUSE mount, against ext4', { skip: skipUnlessFuse }, () => {
  let rig: Rig;
  let mnt = '';
  let reference = '';

  before(async () => {
    rig = await makeRig('perm');
    mnt = await rig.mountDataset('p/fs');
    reference = await mkdtemp(join(tmpdir(), 'cairn-perm-ext4-'));
    await chmod(reference, 0o755);
  });

  after(async () => {
    await rig?.close();
    if (reference) await rm(reference, { recursive: true, force: true });
  });

  CALLERS.forEach((caller, index) => {
    it(`${caller.name}: every answer is ext4's`, async (t) => {
      const fsType = (await run('stat', ['-f', '-c', '%T', reference])).stdout.trim();
      if (!REFERENCE_FS_TYPES.has(fsType)) return t.skip(`${tmpdir()} is ${fsType}, not a local file system with user xattrs`);
      // Each caller gets a tree of its own: a probe may change modes (a truncate clears setuid).
      const [wantRoot, gotRoot] = [join(reference, String(index)), join(mnt, String(index))];
      assert.equal((await oracle(['setup', wantRoot, String(SEED)])).get('setup'), 'OK');
      assert.equal((await oracle(['setup', gotRoot, String(SEED)])).get('setup'), 'OK');
      const want = await oracle(['probe', wantRoot], caller.setpriv);
      const got = await oracle(['probe', gotRoot], caller.setpriv);
      assert.ok(want.size > 300, `the probe reported ${want.size} checks`);
      const wrong: string[] = [];
      for (const [name, value] of want) {
        if (JSON.stringify(got.get(name)) !== JSON.stringify(value)) wrong.push(`${name}: Cairn ${JSON.stringify(got.get(name))}, ext4 ${JSON.stringify(value)}`);
      }
      assert.equal(wrong.length, 0, `seed ${SEED}, ${caller.name}:\n${wrong.join('\n')}`);
      assert.deepEqual(rig.ioErrors, []);
    });
  });
});
