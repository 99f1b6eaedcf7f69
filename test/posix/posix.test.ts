/**
 * POSIX behaviour through a FUSE mount of a Cairn file system dataset, as Linux file systems (ext4)
 * show it: every call is made by a child process (posix_checks.py), which reports what the kernel
 * returned; each expectation below is what ext4 returns for the same call. A group's checks are all
 * compared before failing, so one run shows every wrong answer of the group at once.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checks, makeRig, MiB, NOBODY_ID, skipUnlessFuse, spawnChecks, type Records, type Rig } from './harness.js';

const SEED = Number(process.env['CAIRN_POSIX_SEED'] ?? 4242);

/**
 * Compares every reported check with its expectation; reported names without one fail too, unless
 * `partial` (a group whose other checks another test asserts).
 */
function expectAll(records: Records, expected: Record<string, unknown>, partial = false): void {
  const wrong: string[] = [];
  for (const [name, want] of Object.entries(expected)) {
    const got = records.get(name);
    try {
      assert.deepEqual(got, want);
    } catch {
      wrong.push(`${name}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    }
  }
  if (!partial) for (const name of records.keys()) if (!(name in expected)) wrong.push(`${name}: reported ${JSON.stringify(records.get(name))} but not expected`);
  assert.equal(wrong.length, 0, `seed ${SEED}:\n${wrong.join('\n')}`);
}

describe('POSIX through a FUSE mount', { skip: skipUnlessFuse }, () => {
  let rig: Rig;
  let mnt = '';
  /** A group run once whose checks two tests share (one of them a known bug). */
  const shared = new Map<string, Promise<Records>>();
  const checksOnce = (group: string, args: string[], options: Parameters<typeof checks>[2] = {}): Promise<Records> => {
    let result = shared.get(group);
    if (!result) shared.set(group, (result = checks(group, args, options)));
    return result;
  };

  before(async () => {
    rig = await makeRig('posix');
    mnt = await rig.mountDataset('p/fs');
  });

  after(async () => {
    await rig?.close();
  });

  it('open flags: O_EXCL, O_TRUNC, O_APPEND, access modes, ENOENT, ENOTDIR, EISDIR, ENAMETOOLONG, ELOOP', async () => {
    expectAll(await checks('open_flags', [mnt]), {
      excl_new: 'OK',
      excl_existing: 'EEXIST',
      trunc_size_open_fd: 0,
      trunc_size: 0,
      append_offset_after_write: 6,
      append_content: 'abcdefghi',
      write_on_rdonly: 'EBADF',
      read_on_wronly: 'EBADF',
      open_dir_wronly: 'EISDIR',
      open_dir_rdwr: 'EISDIR',
      open_dir_creat: 'EISDIR',
      open_dir_rdonly: 'OK',
      open_file_o_directory: 'ENOTDIR',
      open_missing: 'ENOENT',
      creat_in_missing_dir: 'ENOENT',
      open_under_file: 'ENOTDIR',
      creat_under_file: 'ENOTDIR',
      stat_under_file: 'ENOTDIR',
      mkdir_under_file: 'ENOTDIR',
      creat_name_256: 'ENAMETOOLONG',
      stat_name_256: 'ENAMETOOLONG',
      mkdir_name_256: 'ENAMETOOLONG',
      creat_name_255: 'OK',
      listed_name_255: true,
      creat_utf8_255_bytes: 'OK',
      creat_utf8_258_bytes: 'ENAMETOOLONG',
      open_symlink_loop: 'ELOOP',
      stat_symlink_loop: 'ELOOP',
      open_self_loop: 'ELOOP',
      lstat_symlink_loop: 'OK',
      open_nofollow_symlink: 'ELOOP',
    });
  });

  it(`pread/pwrite at offsets, short reads at EOF, 1 GiB sparse hole, truncate and ftruncate (seed ${SEED})`, async () => {
    expectAll(await checks('rw', [mnt, String(SEED)]), {
      pwrite_size: true,
      pread_mismatches: [],
      short_read_at_eof: '56789',
      read_at_eof: 0,
      read_past_eof: 0,
      sequential_reads: ['89', ''],
      seek_hole_write: [111, true, 'Z'],
      sparse_size: 1024 * MiB + 1,
      sparse_blocks_small: true,
      sparse_hole_zero: [true, true, true],
      sparse_tail: 'X',
      truncate_down_size: 100000,
      truncate_down_prefix: true,
      truncate_up: [300 * 1024 + 3, true, true],
      truncate_zero: [0, 0],
      ftruncate_down: [4097, true],
      ftruncate_up: [200000, true, true],
      ftruncate_mid_record: 'ffffffffff0000000000',
      truncate_dir: 'EISDIR',
      truncate_negative: 'EINVAL',
    });
  });

  it('rename: over a file, across directories, directory cases and their errnos, RENAME_NOREPLACE', async () => {
    expectAll(await checks('rename', [mnt]), {
      over_file: ['source', false, true],
      across_dirs: [[], ['moved'], 'source'],
      dir_over_nonempty_dir: 'ENOTEMPTY',
      file_over_dir: 'EISDIR',
      dir_over_file: 'ENOTDIR',
      dir_into_own_subdir: 'EINVAL',
      missing_source: 'ENOENT',
      dir_over_empty_dir: 'OK',
      dir_over_empty_dir_result: [false, 'x'],
      rename_to_itself: 'OK',
      rename_to_itself_keeps: 'f',
      rename_hardlink_onto_itself: 'OK',
      rename_hardlink_both_stay: [true, true, 2],
      dir_move_nlink: [0, 1],
      dir_move_dotdot: true,
      noreplace_existing: 'EEXIST',
      noreplace_existing_untouched: ['f', 'nr'],
      noreplace_new: 'OK',
      noreplace_new_result: [false, 'nr'],
    });
  });

  it('rename over an existing file is atomic: a reader in another process never sees the target missing', async () => {
    const made = await checks('rename_writer', [mnt, '1', 'setup-done']);
    assert.equal(made.get('writer_done'), 1);
    const [writer, reader] = await Promise.all([checks('rename_writer', [mnt, '200', 'done']), checks('rename_reader', [mnt, 'done'])]);
    assert.equal(writer.get('writer_done'), 200);
    assert.deepEqual(reader.get('reader_misses'), [], 'the target was missing for a reader while it was renamed over');
    assert.deepEqual(reader.get('reader_torn'), []);
    assert.ok((reader.get('reader_reads') as number) > 20, `the reader ran alongside (${String(reader.get('reader_reads'))} reads)`);
  });

  it('hard links and symlinks: nlink, shared data, EPERM on a directory, dangling and looping links', async () => {
    expectAll(await checks('links', [mnt]), {
      hardlink_nlink: [2, 2],
      hardlink_same_ino: true,
      hardlink_data_shared: 'SHARED data',
      hardlink_three: 3,
      hardlink_after_unlink: [false, 2, 'SHARED data'],
      link_to_dir: 'EPERM',
      link_over_existing: 'EEXIST',
      link_missing: 'ENOENT',
      link_changes_ctime: true,
      readlink: 'target',
      lstat_is_link: [true, 6],
      stat_follows: [true, true, 11],
      read_through_symlink: 'target data',
      dangling_readlink: 'nowhere',
      dangling_stat: 'ENOENT',
      dangling_lstat: 'OK',
      dangling_creat_excl: 'EEXIST',
      dangling_creat: 'OK',
      dangling_creat_made_target: true,
      symlink_existing_name: 'EEXIST',
      readlink_regular_file: 'EINVAL',
      absolute_symlink: 'target data',
      symlink_to_dir_component: 'in',
      unlink_symlink_keeps_target: [false, 'target data'],
    });
  });

  it('mkdir, rmdir, unlink of a directory, directory link counts, scandir types', async () => {
    expectAll(await checks('dirs', [mnt]), {
      mkdir_existing: 'EEXIST',
      mkdir_over_file: 'EEXIST',
      nlink_empty: 2,
      nlink_three_subdirs: 5,
      rmdir_nonempty: 'ENOTEMPTY',
      rmdir_file: 'ENOTDIR',
      unlink_dir: 'EISDIR',
      rmdir_missing: 'ENOENT',
      rmdir_dot: 'EINVAL',
      rmdir_empty: 'OK',
      nlink_after_rmdir: 4,
      scandir_types: [
        ['file', false, true],
        ['sub1', true, false],
        ['sub2', true, false],
      ],
      dot_entries: [true, true],
      root_dotdot: true,
      rmdir_root_of_mount_busy: 'EBUSY',
      create_changes_dir_mtime: true,
    });
  });

  it('readdir of a 10,000-entry directory lists each entry exactly once (also after deletes and while growing)', async () => {
    expectAll(await checks('bigdir', [mnt, '10000'], { timeoutMs: 90_000 }), {
      big_count: 10000,
      big_unique: 10000,
      big_missing: [],
      big_extra: [],
      big_after_delete: [6666, 6666, true],
      big_concurrent_listing: [6666, 6666, true],
    });
  });

  it('chmod, chown and utimens with nanoseconds are visible through stat', async () => {
    expectAll(await checks('attrs', [mnt]), {
      chmod: '0o640',
      chmod_changes_ctime: true,
      chmod_setuid: '0o4755',
      chmod_dir_sticky: '0o1777',
      chown: [1234, 5678],
      chown_gid_only: [1234, 4321],
      utime_ns: [1_234_567_890_123_456_789, 1_600_000_000_987_654_321],
      utime_ns_dir: [1, 999_999_999],
      utime_now: [true, true],
      utime_nofollow: [6, true],
      write_changes_mtime: true,
      truncate_changes_mtime_ctime: [true, true],
      rename_changes_both_dir_mtimes: [true, true],
      unlink_changes_dir_mtime: true,
      reading_changes_no_mtime_or_ctime: [true, true],
    });
  });

  it('permission checks for an unprivileged caller (uid 65534); its files are created with its uid/gid', async () => {
    expectAll(await checks('perm_setup', [mnt]), { setup: 'OK' });
    expectAll(await checks('perm_nobody', [mnt], { asNobody: true }), {
      whoami: [NOBODY_ID, NOBODY_ID, []],
      read_0600_root_file: 'EACCES',
      read_0644_root_file: 'public',
      write_0644_root_file: 'EACCES',
      create_in_0755_root_dir: 'EACCES',
      mkdir_in_0755_root_dir: 'EACCES',
      unlink_in_0755_root_dir: 'EACCES',
      rename_in_0755_root_dir: 'EACCES',
      list_0700_root_dir: 'EACCES',
      traverse_0700_root_dir: 'EACCES',
      created_owner: [NOBODY_ID, NOBODY_ID],
      mkdir_owner: [NOBODY_ID, NOBODY_ID],
      symlink_owner: [NOBODY_ID, NOBODY_ID],
      chown_root_file: 'EPERM',
      chown_own_file_to_root: 'EPERM',
      chown_own_file_to_self: 'OK',
      chmod_root_file: 'EPERM',
      chmod_own_file: 'OK',
      utime_explicit_root_file: 'EPERM',
      truncate_root_file: 'EACCES',
      unlink_sticky_others_file: 'EPERM',
      unlink_sticky_own_file: 'OK',
      setxattr_root_file: 'EACCES',
      getxattr_0600_root_file: 'EACCES',
      utime_now_root_file: 'EACCES',
      link_0600_root_file: 'EPERM',
      access_root_file: [true, false],
      chdir_0700_root_dir: 'EACCES',
    });
  });

  it('chown and writes by another user clear setuid/setgid', async () => {
    expectAll(await checksOnce('perm_setup_extra', [mnt]), { setup: 'OK', chown_clears_suid_sgid: '0o755' });
    expectAll(await checksOnce('perm_nobody_extra', [mnt], { asNobody: true }), { write_by_other_clears_suid: '0o777' }, true);
  });

  it('a setgid directory gives new files its group and new directories its group and the setgid bit', async () => {
    await checksOnce('perm_setup_extra', [mnt]);
    const r = await checksOnce('perm_nobody_extra', [mnt], { asNobody: true });
    expectAll(r, { sgid_dir_file_group: [NOBODY_ID, 1234], sgid_dir_subdir_group_and_bit: [1234, true] }, true);
  });

  it('the umask applies to files and directories created through the mount', async () => {
    expectAll(await checks('umask', [mnt]), { modes: ['0o640', '0o750', '0o600'] });
  });

  it('names: spaces, newlines, UTF-8 and 255 bytes come back exactly; . and .. are refused', async () => {
    expectAll(await checksOnce('names', [mnt]), { listed_exactly: true, contents_by_name: true, dot_names: ['EEXIST', 'EEXIST', 'EISDIR'] }, true);
  });

  it('names that are not UTF-8 come back byte for byte and stay distinct', async () => {
    expectAll(
      await checksOnce('names', [mnt]),
      { non_utf8_create: 'OK', non_utf8_listed: true, non_utf8_stat: 'OK', non_utf8_listing: ["b'raw-\\xff\\xfe'"], non_utf8_distinct: ['first', 'second'] },
      true,
    );
  });

  it('an unlinked or renamed-over file stays readable and writable through an open descriptor', async () => {
    expectAll(
      await checksOnce('unlinked_open', [mnt]),
      { gone_from_namespace: 'ENOENT', read_after_unlink: 'before and after', old_fd_after_rename_over: 'old contents', new_name_after_rename_over: 'new contents', listing_after_close: ['g'] },
      true,
    );
  });

  it('an unlinked open file leaves no trace: st_nlink 0, not listed, its directory can be removed', async () => {
    expectAll(
      await checksOnce('unlinked_open', [mnt]),
      { fstat_nlink_after_unlink: 0, listing_while_open: [], rmdir_while_open: 'OK', listing_after_rename_over: ['g'] },
      true,
    );
  });

  it(`posix_fallocate, copy_file_range and a write at 1 PiB (seed ${SEED})`, async () => {
    const r = await checks('io_extras', [mnt, String(SEED)]);
    assert.equal(r.get('posix_fallocate'), 'OK');
    assert.deepEqual(r.get('posix_fallocate_result'), [1024 * 1024, 'abc', true]);
    assert.equal(r.get('copy_file_range'), true);
    assert.deepEqual(r.get('o_direct'), ['OK', 8192, true], 'O_DIRECT write and read of aligned buffers');
    assert.equal(r.get('o_direct_buffered_view'), true);
    // ext4 says EFBIG (16 TiB files); a file system with 64-bit offsets may take it, but then it must read back
    assert.ok(['OK', 'EFBIG'].includes(r.get('write_at_1PiB') as string), `write at 1 PiB: ${String(r.get('write_at_1PiB'))}`);
    if (r.get('write_at_1PiB') === 'OK') assert.deepEqual(r.get('write_at_1PiB_result'), [true, 'Y', true]);
    assert.equal(r.get('unlink_huge'), 'OK');
  });

  it('two processes appending with O_APPEND never overwrite each other', async () => {
    const results = await Promise.all(['0', '1'].map((w) => checks('append_worker', [mnt, w, '1000'])));
    assert.deepEqual(results.map((r) => r.get('appended')), [1000, 1000]);
    expectAll(await checks('append_check', [mnt]), { size: 2000 * 64, well_formed: true, per_worker_in_order: { '0': true, '1': true } });
  });

  it(`two processes writing interleaved 4 KiB blocks of one file in random order: every block is right (seed ${SEED})`, async () => {
    const blocks = '512';
    const results = await Promise.all(['0', '1'].map((w) => checks('block_worker', [mnt, w, blocks, String(SEED)])));
    assert.deepEqual(results.map((r) => r.get('written')), [256, 256]);
    expectAll(await checks('block_check', [mnt, blocks, String(SEED)]), { size: 512 * 4096, bad_blocks: [] });
  });

  it('extended attributes: set, get, list, remove, ENODATA, XATTR_CREATE/REPLACE, ERANGE, 64 KiB values', async () => {
    expectAll(await checks('xattrs', [mnt]), {
      get: 'blue',
      list: ['user.colour', 'user.shape'],
      get_missing: 'ENODATA',
      create_existing: 'EEXIST',
      create_existing_kept: 'blue',
      replace_missing: 'ENODATA',
      replace_existing: 'OK',
      replaced: 'green',
      after_remove: ['ENODATA', ['user.shape']],
      remove_missing: 'ENODATA',
      big_value: true,
      empty_value: ['OK', ''],
      on_dir: 'dir',
      unknown_namespace: 'ENOTSUP', // EOPNOTSUPP: one number on Linux, Python names it ENOTSUP
      setxattr_changes_ctime: true,
      get_small_buffer: 'ERANGE',
      size_query: 5,
      too_big_value: 'E2BIG',
      user_xattr_on_symlink: 'EPERM',
      trusted_as_root: ['OK', 't'],
      after_unlink: 'ENOENT',
    });
  });

  it('statfs reports the pool space, and free space drops after writing 8 MiB and syncing', async () => {
    const r = await checks('statfs', [mnt, String(SEED)]);
    const total = r.get('total_bytes') as number;
    const freeDrop = (r.get('free_before') as number) - (r.get('free_after') as number);
    const availDrop = (r.get('avail_before') as number) - (r.get('avail_after') as number);
    assert.deepEqual(r.get('sane'), [true, true, true]);
    assert.equal(r.get('namemax'), 255);
    assert.ok(total >= rig.deviceSizeBytes * 0.6 && total <= rig.deviceSizeBytes, `f_blocks*f_frsize ${total} near the ${rig.deviceSizeBytes}-byte device`);
    assert.ok(freeDrop >= 7 * MiB && freeDrop <= 12 * MiB, `free space dropped by ${freeDrop} bytes after 8 MiB of random data`);
    assert.ok(availDrop >= 7 * MiB && availDrop <= 12 * MiB, `available space dropped by ${availDrop} bytes`);
  });

  it(`mmap: a mapping reads the file's bytes; a shared writable mapping, flushed, is what read() sees (seed ${SEED})`, async () => {
    expectAll(await checks('mmap', [mnt, String(SEED)]), { mmap_read_equal: true, mmap_slice: true, mmap_write_visible: true });
  });

  it('flock and fcntl locks: a second process cannot take a lock the first holds, and can once it is gone', async () => {
    const holder = spawnChecks('lock_hold', [mnt]);
    const exited = new Promise<number | null>((resolve) => holder.child.once('exit', resolve));
    try {
      const first = await holder.lines[Symbol.asyncIterator]().next();
      assert.ok(!first.done && typeof first.value.get('locked') === 'number', 'the holder took its locks');
      const holderPid = first.value.get('locked');
      const contended = await checks('lock_try', [mnt]);
      expectAll(contended, { flock_ex_nb: 'EAGAIN', flock_sh_nb: 'EAGAIN', fcntl_ex_nb: 'EAGAIN', fcntl_getlk_pid: holderPid });
    } finally {
      holder.child.stdin!.end();
      if ((await Promise.race([exited, new Promise((r) => setTimeout(() => r('timeout'), 5000))])) === 'timeout') holder.child.kill('SIGKILL');
    }
    await exited;
    expectAll(await checks('lock_try', [mnt]), { flock_ex_nb: 'OK', flock_sh_nb: 'OK', fcntl_ex_nb: 'OK', fcntl_getlk_pid: 0 });
  });
});
