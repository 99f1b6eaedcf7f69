#!/usr/bin/env python3
"""POSIX checks driven through a mounted file system, one group per invocation.

    python3 posix_checks.py GROUP DIR [ARGS...]

Each check prints one JSON line {"name": ..., "value": ...}: what the kernel returned (an errno name
such as "EEXIST", "OK", a size, a digest). The test process (which serves the mount and so must not
touch it itself) compares these to what Linux file systems such as ext4 return. Nothing here asserts:
a crash of this script is reported by its exit status and stderr.

Random data is drawn from random.Random(seed) so a failing run replays from the seed it prints.
"""
import ctypes
import ctypes.util
import errno
import fcntl
import hashlib
import json
import mmap
import os
import random
import stat
import sys
import time

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


def rec(name, value):
    print(json.dumps({"name": name, "value": value}), flush=True)


def ename(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def outcome(fn, *args, **kwargs):
    """"OK" when fn returns, else the errno name it raised (file descriptors it returns are closed)."""
    try:
        result = fn(*args, **kwargs)
    except OSError as e:
        return ename(e)
    if fn is os.open:
        os.close(result)
    return "OK"


def sha(data):
    return hashlib.sha256(data).hexdigest()


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def rand_bytes(rng, n):
    return rng.getrandbits(n * 8).to_bytes(n, "little") if n else b""


def all_zero(data):
    return data.count(0) == len(data)


# ---- groups -------------------------------------------------------------------------------------


def group_open_flags(root):
    d = os.path.join(root, "open")
    os.mkdir(d)
    p = os.path.join(d, "f")
    rec("excl_new", outcome(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    rec("excl_existing", outcome(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    write_file(p, b"hello world")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    rec("trunc_size_open_fd", os.fstat(fd).st_size)
    os.close(fd)
    rec("trunc_size", os.stat(p).st_size)

    write_file(p, b"abc")
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, b"def")
    rec("append_offset_after_write", os.lseek(fd, 0, os.SEEK_CUR))
    os.pwrite(fd, b"ghi", 0)  # Linux: pwrite on an O_APPEND fd appends too
    os.close(fd)
    rec("append_content", read_file(p).decode())

    fd = os.open(p, os.O_RDONLY)
    rec("write_on_rdonly", outcome(os.write, fd, b"x"))
    os.close(fd)
    fd = os.open(p, os.O_WRONLY)
    rec("read_on_wronly", outcome(os.read, fd, 1))
    os.close(fd)
    rec("open_dir_wronly", outcome(os.open, d, os.O_WRONLY))
    rec("open_dir_rdwr", outcome(os.open, d, os.O_RDWR))
    rec("open_dir_creat", outcome(os.open, d, os.O_CREAT | os.O_WRONLY, 0o644))
    rec("open_dir_rdonly", outcome(os.open, d, os.O_RDONLY))
    rec("open_file_o_directory", outcome(os.open, p, os.O_RDONLY | os.O_DIRECTORY))
    rec("open_missing", outcome(os.open, os.path.join(d, "missing"), os.O_RDONLY))
    rec("creat_in_missing_dir", outcome(os.open, os.path.join(d, "nodir", "f"), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("open_under_file", outcome(os.open, os.path.join(p, "x"), os.O_RDONLY))
    rec("creat_under_file", outcome(os.open, os.path.join(p, "x"), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("stat_under_file", outcome(os.stat, os.path.join(p, "x")))
    rec("mkdir_under_file", outcome(os.mkdir, os.path.join(p, "x")))

    long_name = "n" * 256
    rec("creat_name_256", outcome(os.open, os.path.join(d, long_name), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("stat_name_256", outcome(os.stat, os.path.join(d, long_name)))
    rec("mkdir_name_256", outcome(os.mkdir, os.path.join(d, long_name)))
    rec("creat_name_255", outcome(os.open, os.path.join(d, "m" * 255), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("listed_name_255", ("m" * 255) in os.listdir(d))
    # 255 bytes of UTF-8 in 85 three-byte characters is allowed; 258 bytes is not
    rec("creat_utf8_255_bytes", outcome(os.open, os.path.join(d, "\u20ac" * 85), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("creat_utf8_258_bytes", outcome(os.open, os.path.join(d, "\u20ac" * 86), os.O_CREAT | os.O_WRONLY, 0o644))

    os.symlink("loop-b", os.path.join(d, "loop-a"))
    os.symlink("loop-a", os.path.join(d, "loop-b"))
    os.symlink("self", os.path.join(d, "self"))
    rec("open_symlink_loop", outcome(os.open, os.path.join(d, "loop-a"), os.O_RDONLY))
    rec("stat_symlink_loop", outcome(os.stat, os.path.join(d, "loop-a")))
    rec("open_self_loop", outcome(os.open, os.path.join(d, "self"), os.O_RDONLY))
    rec("lstat_symlink_loop", outcome(os.lstat, os.path.join(d, "loop-a")))
    os.symlink("f", os.path.join(d, "to-f"))
    rec("open_nofollow_symlink", outcome(os.open, os.path.join(d, "to-f"), os.O_RDONLY | os.O_NOFOLLOW))


def group_rw(root, seed):
    rng = random.Random(int(seed))
    d = os.path.join(root, "rw")
    os.mkdir(d)
    p = os.path.join(d, "offsets")
    model = bytearray()
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    # pwrites at offsets that straddle 4 KiB pages and 128 KiB records, some past EOF (leaving holes)
    for offset, length in [(0, 5000), (131072 - 7, 300000), (4095, 2), (1000000, 70000), (500, 131072), (2 * MiB + 1, 1)]:
        data = rand_bytes(rng, length)
        written = os.pwrite(fd, data, offset)
        if written != length:
            rec("pwrite_short", [offset, length, written])
        if len(model) < offset:
            model.extend(bytes(offset - len(model)))
        model[offset:offset + length] = data
    rec("pwrite_size", os.fstat(fd).st_size == len(model))
    mismatches = []
    for offset, length in [(0, len(model)), (131072 - 100, 200), (999999, 70002), (4090, 12), (2 * MiB - 3, 100)]:
        got = os.pread(fd, length, offset)
        want = bytes(model[offset:offset + length])
        if got != want:
            mismatches.append([offset, length, len(got), len(want)])
    rec("pread_mismatches", mismatches)

    # short read at EOF
    q = os.path.join(d, "short")
    write_file(q, b"0123456789")
    fd2 = os.open(q, os.O_RDONLY)
    rec("short_read_at_eof", os.pread(fd2, 100, 5).decode())
    rec("read_at_eof", len(os.pread(fd2, 100, 10)))
    rec("read_past_eof", len(os.pread(fd2, 100, 1 << 40)))
    os.lseek(fd2, 8, os.SEEK_SET)
    rec("sequential_reads", [os.read(fd2, 5).decode(), os.read(fd2, 5).decode()])
    os.close(fd2)

    # a write after lseek past EOF leaves a hole of zeros
    fd3 = os.open(q, os.O_RDWR)
    os.lseek(fd3, 100, os.SEEK_END)
    os.write(fd3, b"Z")
    os.close(fd3)
    data = read_file(q)
    rec("seek_hole_write", [len(data), all_zero(data[10:110]), data[110:].decode()])

    # sparse: one byte at 1 GiB
    s = os.path.join(d, "sparse")
    fd4 = os.open(s, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd4, b"X", GiB)
    os.fsync(fd4)
    st = os.fstat(fd4)
    rec("sparse_size", st.st_size)
    rec("sparse_blocks_small", st.st_blocks * 512 < MiB)
    rec("sparse_hole_zero", [all_zero(os.pread(fd4, MiB, 0)), all_zero(os.pread(fd4, MiB, 512 * MiB)), all_zero(os.pread(fd4, MiB, GiB - MiB))])
    rec("sparse_tail", os.pread(fd4, 10, GiB).decode())
    os.close(fd4)

    # truncate down then up: the cut bytes are gone, regrown bytes are zeros
    t = os.path.join(d, "trunc")
    body = rand_bytes(rng, 300 * KiB + 3)
    write_file(t, body)
    os.truncate(t, 100000)
    rec("truncate_down_size", os.stat(t).st_size)
    rec("truncate_down_prefix", read_file(t) == body[:100000])
    os.truncate(t, 300 * KiB + 3)
    after = read_file(t)
    rec("truncate_up", [len(after), after[:100000] == body[:100000], all_zero(after[100000:])])
    os.truncate(t, 0)
    rec("truncate_zero", [os.stat(t).st_size, len(read_file(t))])

    fd5 = os.open(t, os.O_RDWR)
    os.write(fd5, body)
    os.ftruncate(fd5, 4097)
    rec("ftruncate_down", [os.fstat(fd5).st_size, os.pread(fd5, 10000, 0) == body[:4097]])
    os.ftruncate(fd5, 200000)
    got = os.pread(fd5, 300000, 0)
    rec("ftruncate_up", [len(got), got[:4097] == body[:4097], all_zero(got[4097:])])
    # truncate inside a record keeps the rest of that record only up to the cut
    os.pwrite(fd5, b"\xff" * 10, 199990)
    os.ftruncate(fd5, 199995)
    os.ftruncate(fd5, 200000)
    rec("ftruncate_mid_record", os.pread(fd5, 10, 199990).hex())
    os.close(fd5)
    rec("truncate_dir", outcome(os.truncate, d, 0))
    rec("truncate_negative", outcome(os.truncate, t, -1))


def group_rename(root):
    d = os.path.join(root, "ren")
    a = os.path.join(d, "a")
    b = os.path.join(d, "b")
    os.makedirs(a)
    os.mkdir(b)
    write_file(os.path.join(a, "src"), b"source")
    write_file(os.path.join(a, "dst"), b"old target")
    src_ino = os.stat(os.path.join(a, "src")).st_ino
    os.rename(os.path.join(a, "src"), os.path.join(a, "dst"))
    rec("over_file", [read_file(os.path.join(a, "dst")).decode(), os.path.exists(os.path.join(a, "src")), os.stat(os.path.join(a, "dst")).st_ino == src_ino])
    os.rename(os.path.join(a, "dst"), os.path.join(b, "moved"))
    rec("across_dirs", [sorted(os.listdir(a)), sorted(os.listdir(b)), read_file(os.path.join(b, "moved")).decode()])

    os.makedirs(os.path.join(d, "full", "child"))
    os.mkdir(os.path.join(d, "empty"))
    os.makedirs(os.path.join(d, "mover", "inner"))
    write_file(os.path.join(d, "mover", "inner", "x"), b"x")
    os.mkdir(os.path.join(d, "victim"))
    write_file(os.path.join(d, "file"), b"f")
    rec("dir_over_nonempty_dir", outcome(os.rename, os.path.join(d, "mover"), os.path.join(d, "full")))
    rec("file_over_dir", outcome(os.rename, os.path.join(d, "file"), os.path.join(d, "empty")))
    rec("dir_over_file", outcome(os.rename, os.path.join(d, "mover"), os.path.join(d, "file")))
    rec("dir_into_own_subdir", outcome(os.rename, os.path.join(d, "mover"), os.path.join(d, "mover", "inner", "deeper")))
    rec("missing_source", outcome(os.rename, os.path.join(d, "missing"), os.path.join(d, "whatever")))
    rec("dir_over_empty_dir", outcome(os.rename, os.path.join(d, "mover"), os.path.join(d, "victim")))
    rec("dir_over_empty_dir_result", [os.path.exists(os.path.join(d, "mover")), read_file(os.path.join(d, "victim", "inner", "x")).decode()])
    rec("rename_to_itself", outcome(os.rename, os.path.join(d, "file"), os.path.join(d, "file")))
    rec("rename_to_itself_keeps", read_file(os.path.join(d, "file")).decode())
    # both names are links to one inode: rename does nothing, both stay (POSIX)
    os.link(os.path.join(d, "file"), os.path.join(d, "file-link"))
    rec("rename_hardlink_onto_itself", outcome(os.rename, os.path.join(d, "file"), os.path.join(d, "file-link")))
    rec("rename_hardlink_both_stay", [os.path.exists(os.path.join(d, "file")), os.path.exists(os.path.join(d, "file-link")), os.stat(os.path.join(d, "file")).st_nlink])
    # directory link counts follow a directory moved between parents
    n_a, n_b = os.stat(a).st_nlink, os.stat(b).st_nlink
    os.mkdir(os.path.join(a, "sub"))
    os.rename(os.path.join(a, "sub"), os.path.join(b, "sub"))
    rec("dir_move_nlink", [os.stat(a).st_nlink - n_a, os.stat(b).st_nlink - n_b])
    rec("dir_move_dotdot", os.stat(os.path.join(b, "sub", "..")).st_ino == os.stat(b).st_ino)

    # renameat2(RENAME_NOREPLACE) through libc; Python's os.rename cannot ask for it
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        rec("noreplace", "UNAVAILABLE")
        return
    at_fdcwd = -100
    rename_noreplace = 1

    def noreplace(old, new):
        if renameat2(at_fdcwd, old.encode(), at_fdcwd, new.encode(), rename_noreplace) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))

    write_file(os.path.join(d, "nr-src"), b"nr")
    rec("noreplace_existing", outcome(noreplace, os.path.join(d, "nr-src"), os.path.join(d, "file")))
    rec("noreplace_existing_untouched", [read_file(os.path.join(d, "file")).decode(), read_file(os.path.join(d, "nr-src")).decode()])
    rec("noreplace_new", outcome(noreplace, os.path.join(d, "nr-src"), os.path.join(d, "nr-dst")))
    rec("noreplace_new_result", [os.path.exists(os.path.join(d, "nr-src")), read_file(os.path.join(d, "nr-dst")).decode()])


def group_rename_writer(root, count, marker):
    """Replaces ren-atomic/target count times by rename, then creates the marker file."""
    d = os.path.join(root, "ren-atomic")
    os.makedirs(d, exist_ok=True)
    for i in range(int(count)):
        tmp = os.path.join(d, "tmp-%d" % i)
        write_file(tmp, ("version %d" % i).encode())
        os.rename(tmp, os.path.join(d, "target"))
    write_file(os.path.join(d, marker), b"")
    rec("writer_done", int(count))


def group_rename_reader(root, marker):
    """Reads ren-atomic/target until the writer's marker appears; any miss is an atomicity failure."""
    d = os.path.join(root, "ren-atomic")
    target = os.path.join(d, "target")
    reads = 0
    misses = []
    bad = []
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(d, marker)) and time.monotonic() < deadline:
        try:
            content = read_file(target).decode()
        except OSError as e:
            misses.append(ename(e))
            continue
        reads += 1
        if not content.startswith("version "):
            bad.append(content)
    rec("reader_reads", reads)
    rec("reader_misses", misses[:20])
    rec("reader_torn", bad[:20])


def group_links(root):
    d = os.path.join(root, "links")
    os.mkdir(d)
    a = os.path.join(d, "a")
    b = os.path.join(d, "b")
    write_file(a, b"shared data")
    os.link(a, b)
    sa, sb = os.stat(a), os.stat(b)
    rec("hardlink_nlink", [sa.st_nlink, sb.st_nlink])
    rec("hardlink_same_ino", sa.st_ino == sb.st_ino)
    with open(b, "r+b") as f:
        f.seek(0)
        f.write(b"SHARED")
    rec("hardlink_data_shared", read_file(a).decode())
    os.link(a, os.path.join(d, "c"))
    rec("hardlink_three", os.stat(b).st_nlink)
    os.unlink(a)
    rec("hardlink_after_unlink", [os.path.exists(a), os.stat(b).st_nlink, read_file(b).decode()])
    rec("link_to_dir", outcome(os.link, d, os.path.join(root, "dirlink")))
    rec("link_over_existing", outcome(os.link, b, os.path.join(d, "c")))
    rec("link_missing", outcome(os.link, os.path.join(d, "missing"), os.path.join(d, "x")))
    ctime_before = os.stat(b).st_ctime_ns
    time.sleep(0.01)
    os.link(b, os.path.join(d, "e"))
    rec("link_changes_ctime", os.stat(b).st_ctime_ns > ctime_before)

    # symlinks
    write_file(os.path.join(d, "target"), b"target data")
    os.symlink("target", os.path.join(d, "sym"))
    rec("readlink", os.readlink(os.path.join(d, "sym")))
    ls, st, tst = os.lstat(os.path.join(d, "sym")), os.stat(os.path.join(d, "sym")), os.stat(os.path.join(d, "target"))
    rec("lstat_is_link", [stat.S_ISLNK(ls.st_mode), ls.st_size])
    rec("stat_follows", [stat.S_ISREG(st.st_mode), st.st_ino == tst.st_ino, st.st_size])
    rec("read_through_symlink", read_file(os.path.join(d, "sym")).decode())
    os.symlink("nowhere", os.path.join(d, "dangling"))
    rec("dangling_readlink", os.readlink(os.path.join(d, "dangling")))
    rec("dangling_stat", outcome(os.stat, os.path.join(d, "dangling")))
    rec("dangling_lstat", outcome(os.lstat, os.path.join(d, "dangling")))
    rec("dangling_creat_excl", outcome(os.open, os.path.join(d, "dangling"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    rec("dangling_creat", outcome(os.open, os.path.join(d, "dangling"), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("dangling_creat_made_target", os.path.isfile(os.path.join(d, "nowhere")))
    rec("symlink_existing_name", outcome(os.symlink, "x", os.path.join(d, "sym")))
    rec("readlink_regular_file", outcome(os.readlink, os.path.join(d, "target")))
    os.symlink(os.path.join(d, "target"), os.path.join(d, "abs"))
    rec("absolute_symlink", read_file(os.path.join(d, "abs")).decode())
    os.mkdir(os.path.join(d, "realdir"))
    write_file(os.path.join(d, "realdir", "inside"), b"in")
    os.symlink("realdir", os.path.join(d, "dirsym"))
    rec("symlink_to_dir_component", read_file(os.path.join(d, "dirsym", "inside")).decode())
    os.unlink(os.path.join(d, "sym"))
    rec("unlink_symlink_keeps_target", [os.path.lexists(os.path.join(d, "sym")), read_file(os.path.join(d, "target")).decode()])


def group_dirs(root):
    d = os.path.join(root, "dirs")
    os.mkdir(d)
    rec("mkdir_existing", outcome(os.mkdir, d))
    rec("mkdir_over_file", outcome(os.mkdir, os.path.join(d, "..", "dirs")))
    rec("nlink_empty", os.stat(d).st_nlink)
    for i in range(3):
        os.mkdir(os.path.join(d, "sub%d" % i))
    write_file(os.path.join(d, "file"), b"")
    rec("nlink_three_subdirs", os.stat(d).st_nlink)
    rec("rmdir_nonempty", outcome(os.rmdir, d))
    rec("rmdir_file", outcome(os.rmdir, os.path.join(d, "file")))
    rec("unlink_dir", outcome(os.unlink, os.path.join(d, "sub0")))
    rec("rmdir_missing", outcome(os.rmdir, os.path.join(d, "missing")))
    rec("rmdir_dot", outcome(os.rmdir, os.path.join(d, "sub0", ".")))
    rec("rmdir_empty", outcome(os.rmdir, os.path.join(d, "sub0")))
    rec("nlink_after_rmdir", os.stat(d).st_nlink)
    with os.scandir(d) as it:
        kinds = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False)) for e in it)
    rec("scandir_types", kinds)
    rec("dot_entries", [os.stat(os.path.join(d, ".")).st_ino == os.stat(d).st_ino, os.stat(os.path.join(d, "sub1", "..")).st_ino == os.stat(d).st_ino])
    rec("root_dotdot", os.stat(os.path.join(root, "..")).st_ino != 0)
    rec("rmdir_root_of_mount_busy", outcome(os.rmdir, root))
    mtime_before = os.stat(d).st_mtime_ns
    time.sleep(0.01)
    write_file(os.path.join(d, "new"), b"")
    rec("create_changes_dir_mtime", os.stat(d).st_mtime_ns > mtime_before)


def group_bigdir(root, count):
    count = int(count)
    d = os.path.join(root, "big")
    os.mkdir(d)
    names = ["entry-%05d-%s" % (i, "x" * (i % 40)) for i in range(count)]
    for name in names:
        os.mknod(os.path.join(d, name), stat.S_IFREG | 0o644)  # one request each, no open/flush/release
    listed = os.listdir(d)
    rec("big_count", len(listed))
    rec("big_unique", len(set(listed)))
    rec("big_missing", sorted(set(names) - set(listed))[:10])
    rec("big_extra", sorted(set(listed) - set(names))[:10])
    # delete every third entry, list again
    for name in names[::3]:
        os.unlink(os.path.join(d, name))
    kept = set(names) - set(names[::3])
    listed = []
    with os.scandir(d) as it:
        for e in it:
            listed.append(e.name)
    rec("big_after_delete", [len(listed), len(set(listed)), set(listed) == kept])
    # a directory being listed while entries are added: every entry present throughout is seen once
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    seen = []
    with os.scandir(d) as it:
        for i, e in enumerate(it):
            seen.append(e.name)
            if i == 100:
                for j in range(50):
                    os.close(os.open(os.path.join(d, "late-%d" % j), os.O_CREAT | os.O_WRONLY, 0o644))
    os.close(fd)
    stable = [n for n in seen if not n.startswith("late-")]
    rec("big_concurrent_listing", [len(stable), len(set(stable)), set(stable) == kept])


def group_attrs(root):
    d = os.path.join(root, "attrs")
    os.mkdir(d)
    p = os.path.join(d, "f")
    write_file(p, b"x")
    ctime0 = os.stat(p).st_ctime_ns
    time.sleep(0.01)
    os.chmod(p, 0o640)
    st = os.stat(p)
    rec("chmod", oct(stat.S_IMODE(st.st_mode)))
    rec("chmod_changes_ctime", st.st_ctime_ns > ctime0)
    os.chmod(p, 0o4755)
    rec("chmod_setuid", oct(stat.S_IMODE(os.stat(p).st_mode)))
    os.chmod(d, 0o1777)
    rec("chmod_dir_sticky", oct(stat.S_IMODE(os.stat(d).st_mode)))
    os.chmod(p, 0o600)
    os.chown(p, 1234, 5678)
    st = os.stat(p)
    rec("chown", [st.st_uid, st.st_gid])
    os.chown(p, -1, 4321)
    st = os.stat(p)
    rec("chown_gid_only", [st.st_uid, st.st_gid])
    atime_ns = 1_234_567_890_123_456_789
    mtime_ns = 1_600_000_000_987_654_321
    os.utime(p, ns=(atime_ns, mtime_ns))
    st = os.stat(p)
    rec("utime_ns", [st.st_atime_ns, st.st_mtime_ns])
    os.utime(d, ns=(1, 999_999_999))
    st = os.stat(d)
    rec("utime_ns_dir", [st.st_atime_ns, st.st_mtime_ns])
    before = time.time_ns()
    os.utime(p)
    st = os.stat(p)
    rec("utime_now", [st.st_mtime_ns >= before - 1_000_000_000, st.st_mtime_ns <= time.time_ns() + 1_000_000_000])
    os.symlink("f", os.path.join(d, "l"))
    os.utime(os.path.join(d, "l"), ns=(5, 6), follow_symlinks=False)
    rec("utime_nofollow", [os.lstat(os.path.join(d, "l")).st_mtime_ns, os.stat(p).st_mtime_ns != 6])
    mtime = os.stat(p).st_mtime_ns
    time.sleep(0.01)
    with open(p, "ab") as f:
        f.write(b"more")
    rec("write_changes_mtime", os.stat(p).st_mtime_ns > mtime)
    before = os.stat(p)
    time.sleep(0.01)
    os.truncate(p, 2)
    after = os.stat(p)
    rec("truncate_changes_mtime_ctime", [after.st_mtime_ns > before.st_mtime_ns, after.st_ctime_ns > before.st_ctime_ns])
    os.mkdir(os.path.join(d, "other"))
    d1, d2 = os.stat(d), os.stat(os.path.join(d, "other"))
    time.sleep(0.01)
    os.rename(p, os.path.join(d, "other", "f"))
    e1, e2 = os.stat(d), os.stat(os.path.join(d, "other"))
    rec("rename_changes_both_dir_mtimes", [e1.st_mtime_ns > d1.st_mtime_ns, e2.st_mtime_ns > d2.st_mtime_ns])
    time.sleep(0.01)
    os.unlink(os.path.join(d, "other", "f"))
    rec("unlink_changes_dir_mtime", os.stat(os.path.join(d, "other")).st_mtime_ns > e2.st_mtime_ns)
    st = os.stat(d)
    time.sleep(0.01)
    os.listdir(d)
    os.stat(d)
    rec("reading_changes_no_mtime_or_ctime", [os.stat(d).st_mtime_ns == st.st_mtime_ns, os.stat(d).st_ctime_ns == st.st_ctime_ns])


def group_perm_setup(root):
    d = os.path.join(root, "perm")
    os.mkdir(d)
    os.chmod(d, 0o755)
    write_file(os.path.join(d, "secret"), b"secret", 0o600)
    os.chmod(os.path.join(d, "secret"), 0o600)
    write_file(os.path.join(d, "public"), b"public", 0o644)
    os.chmod(os.path.join(d, "public"), 0o644)
    os.mkdir(os.path.join(d, "open"))
    os.chmod(os.path.join(d, "open"), 0o777)
    os.mkdir(os.path.join(d, "sticky"))
    os.chmod(os.path.join(d, "sticky"), 0o1777)
    write_file(os.path.join(d, "sticky", "roots"), b"r", 0o666)
    os.chmod(os.path.join(d, "sticky", "roots"), 0o666)
    os.mkdir(os.path.join(d, "closed"))
    os.chmod(os.path.join(d, "closed"), 0o700)
    rec("setup", "OK")


def group_perm_nobody(root):
    d = os.path.join(root, "perm")
    rec("whoami", [os.getuid(), os.getgid(), os.getgroups()])
    rec("read_0600_root_file", outcome(os.open, os.path.join(d, "secret"), os.O_RDONLY))
    rec("read_0644_root_file", read_file(os.path.join(d, "public")).decode())
    rec("write_0644_root_file", outcome(os.open, os.path.join(d, "public"), os.O_WRONLY))
    rec("create_in_0755_root_dir", outcome(os.open, os.path.join(d, "mine"), os.O_CREAT | os.O_WRONLY, 0o644))
    rec("mkdir_in_0755_root_dir", outcome(os.mkdir, os.path.join(d, "mydir")))
    rec("unlink_in_0755_root_dir", outcome(os.unlink, os.path.join(d, "public")))
    rec("rename_in_0755_root_dir", outcome(os.rename, os.path.join(d, "public"), os.path.join(d, "public2")))
    rec("list_0700_root_dir", outcome(os.listdir, os.path.join(d, "closed")))
    rec("traverse_0700_root_dir", outcome(os.stat, os.path.join(d, "closed", "x")))
    mine = os.path.join(d, "open", "mine")
    write_file(mine, b"mine", 0o644)
    st = os.stat(mine)
    rec("created_owner", [st.st_uid, st.st_gid])
    os.mkdir(os.path.join(d, "open", "mydir"))
    st = os.stat(os.path.join(d, "open", "mydir"))
    rec("mkdir_owner", [st.st_uid, st.st_gid])
    os.symlink("mine", os.path.join(d, "open", "mylink"))
    st = os.lstat(os.path.join(d, "open", "mylink"))
    rec("symlink_owner", [st.st_uid, st.st_gid])
    rec("chown_root_file", outcome(os.chown, os.path.join(d, "public"), 65534, 65534))
    rec("chown_own_file_to_root", outcome(os.chown, mine, 0, 0))
    rec("chown_own_file_to_self", outcome(os.chown, mine, 65534, 65534))
    rec("chmod_root_file", outcome(os.chmod, os.path.join(d, "public"), 0o666))
    rec("chmod_own_file", outcome(os.chmod, mine, 0o600))
    rec("utime_explicit_root_file", outcome(os.utime, os.path.join(d, "public"), ns=(1, 1)))
    rec("truncate_root_file", outcome(os.truncate, os.path.join(d, "public"), 0))
    rec("unlink_sticky_others_file", outcome(os.unlink, os.path.join(d, "sticky", "roots")))
    write_file(os.path.join(d, "sticky", "nobodys"), b"n")
    rec("unlink_sticky_own_file", outcome(os.unlink, os.path.join(d, "sticky", "nobodys")))
    rec("setxattr_root_file", outcome(os.setxattr, os.path.join(d, "public"), "user.x", b"1"))
    rec("getxattr_0600_root_file", outcome(os.getxattr, os.path.join(d, "secret"), "user.x"))
    rec("utime_now_root_file", outcome(os.utime, os.path.join(d, "public")))
    rec("link_0600_root_file", outcome(os.link, os.path.join(d, "secret"), os.path.join(d, "open", "secret-link")))
    rec("access_root_file", [os.access(os.path.join(d, "public"), os.R_OK), os.access(os.path.join(d, "public"), os.W_OK)])
    rec("chdir_0700_root_dir", outcome(os.chdir, os.path.join(d, "closed")))


def group_xattrs(root):
    d = os.path.join(root, "xattr")
    os.mkdir(d)
    p = os.path.join(d, "f")
    write_file(p, b"")
    os.setxattr(p, "user.colour", b"blue")
    rec("get", os.getxattr(p, "user.colour").decode())
    os.setxattr(p, "user.shape", b"round")
    rec("list", sorted(os.listxattr(p)))
    rec("get_missing", outcome(os.getxattr, p, "user.missing"))
    rec("create_existing", outcome(os.setxattr, p, "user.colour", b"red", os.XATTR_CREATE))
    rec("create_existing_kept", os.getxattr(p, "user.colour").decode())
    rec("replace_missing", outcome(os.setxattr, p, "user.missing", b"x", os.XATTR_REPLACE))
    rec("replace_existing", outcome(os.setxattr, p, "user.colour", b"green", os.XATTR_REPLACE))
    rec("replaced", os.getxattr(p, "user.colour").decode())
    os.removexattr(p, "user.colour")
    rec("after_remove", [outcome(os.getxattr, p, "user.colour"), sorted(os.listxattr(p))])
    rec("remove_missing", outcome(os.removexattr, p, "user.colour"))
    big = bytes(range(256)) * 256  # 64 KiB, the Linux maximum for a value
    os.setxattr(p, "user.big", big)
    rec("big_value", os.getxattr(p, "user.big") == big)
    rec("empty_value", [outcome(os.setxattr, p, "user.empty", b""), os.getxattr(p, "user.empty").decode()])
    os.setxattr(d, "user.on-dir", b"dir")
    rec("on_dir", os.getxattr(d, "user.on-dir").decode())
    rec("unknown_namespace", outcome(os.setxattr, p, "bogus.x", b"1"))
    ctime = os.stat(p).st_ctime_ns
    time.sleep(0.01)
    os.setxattr(p, "user.touch", b"1")
    rec("setxattr_changes_ctime", os.stat(p).st_ctime_ns > ctime)
    # a value bigger than the caller's buffer is ERANGE; python's getxattr retries with a bigger one,
    # so ask libc directly with a small buffer
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = ctypes.create_string_buffer(4)
    n = libc.getxattr(p.encode(), b"user.shape", buf, ctypes.c_size_t(4))
    rec("get_small_buffer", "OK" if n >= 0 else errno.errorcode.get(ctypes.get_errno()))
    rec("size_query", libc.getxattr(p.encode(), b"user.shape", None, ctypes.c_size_t(0)))
    rec("too_big_value", outcome(os.setxattr, p, "user.huge", b"x" * (64 * KiB + 1)))
    os.symlink("f", os.path.join(d, "l"))
    rec("user_xattr_on_symlink", outcome(os.setxattr, os.path.join(d, "l"), "user.x", b"1", follow_symlinks=False))
    rec("trusted_as_root", [outcome(os.setxattr, p, "trusted.t", b"t"), os.getxattr(p, "trusted.t").decode()])
    os.unlink(p)
    rec("after_unlink", outcome(os.getxattr, p, "user.shape"))


def settle(root):
    """Frees of earlier work (deletes, truncates) are returned a few txgs late: commit a few first."""
    p = os.path.join(root, "settle")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    for i in range(4):
        os.pwrite(fd, b"s", i)
        os.fsync(fd)
    os.close(fd)


def group_statfs(root, seed):
    rng = random.Random(int(seed))
    settle(root)
    before = os.statvfs(root)
    p = os.path.join(root, "statfs.bin")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    for _ in range(8):
        os.write(fd, rand_bytes(rng, MiB))
    os.fsync(fd)
    os.close(fd)
    after = os.statvfs(root)
    rec("total_bytes", before.f_blocks * before.f_frsize)
    rec("free_before", before.f_bfree * before.f_frsize)
    rec("avail_before", before.f_bavail * before.f_frsize)
    rec("free_after", after.f_bfree * after.f_frsize)
    rec("avail_after", after.f_bavail * after.f_frsize)
    rec("namemax", before.f_namemax)
    rec("sane", [before.f_bavail <= before.f_bfree <= before.f_blocks, before.f_frsize > 0, before.f_files >= before.f_ffree])


def group_durable_write(root, seed):
    rng = random.Random(int(seed))
    out = {}
    a = rand_bytes(rng, 3 * MiB + 1)
    fd = os.open(os.path.join(root, "fsynced.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, a)
    os.fsync(fd)
    os.close(fd)
    out["fsynced.bin"] = sha(a)
    b = rand_bytes(rng, 200 * KiB + 77)
    os.mkdir(os.path.join(root, "newdir"))
    fd = os.open(os.path.join(root, "newdir", "fdatasynced.bin"), os.O_WRONLY | os.O_CREAT, 0o644)
    os.write(fd, b)
    os.fdatasync(fd)
    os.close(fd)
    out["newdir/fdatasynced.bin"] = sha(b)
    # an overwrite in place, then fsync: the new bytes, not the old, survive
    fd = os.open(os.path.join(root, "fsynced.bin"), os.O_WRONLY)
    patch = rand_bytes(rng, 5000)
    os.pwrite(fd, patch, 1 * MiB - 100)
    os.fsync(fd)
    os.close(fd)
    out["fsynced.bin"] = sha(a[:MiB - 100] + patch + a[MiB - 100 + 5000:])
    # a rename and an unlink made durable by fsync of the directory
    c = rand_bytes(rng, 10000)
    write_file(os.path.join(root, "newdir", "tmp"), c)
    os.rename(os.path.join(root, "newdir", "tmp"), os.path.join(root, "renamed.bin"))
    os.unlink(os.path.join(root, "newdir", "fdatasynced.bin"))
    del out["newdir/fdatasynced.bin"]
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    out["renamed.bin"] = sha(c)
    rec("written", out)
    rec("gone", ["newdir/fdatasynced.bin", "newdir/tmp"])


def group_mmap(root, seed):
    rng = random.Random(int(seed))
    p = os.path.join(root, "mmap.bin")
    data = rand_bytes(rng, MiB + 123)
    write_file(p, data)
    with open(p, "rb") as f:
        m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
        rec("mmap_read_equal", m[:] == data)
        rec("mmap_slice", m[MiB:MiB + 123] == data[MiB:])
        m.close()
    # a shared writable mapping, flushed, is what read() sees afterwards
    patch = rand_bytes(rng, 8192)
    with open(p, "r+b") as f:
        m = mmap.mmap(f.fileno(), 0)
        m[4000:4000 + len(patch)] = patch
        m.flush()
        m.close()
    want = data[:4000] + patch + data[4000 + len(patch):]
    got = read_file(p)
    rec("mmap_write_visible", got == want)


def group_lock_hold(root):
    fa = open(os.path.join(root, "flock.lock"), "a+b")
    fb = open(os.path.join(root, "fcntl.lock"), "a+b")
    fcntl.flock(fa.fileno(), fcntl.LOCK_EX)
    fcntl.lockf(fb.fileno(), fcntl.LOCK_EX)
    rec("locked", os.getpid())
    sys.stdin.read()  # hold until the test closes our stdin
    rec("released", True)


def group_lock_try(root):
    fa = open(os.path.join(root, "flock.lock"), "a+b")
    fb = open(os.path.join(root, "fcntl.lock"), "r+b")
    rec("flock_ex_nb", outcome(fcntl.flock, fa.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB))
    rec("flock_sh_nb", outcome(fcntl.flock, fa.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB))
    rec("fcntl_ex_nb", outcome(fcntl.lockf, fb.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB))
    rec("fcntl_getlk_pid", fcntl_owner(fb))


def fcntl_owner(f):
    """F_GETLK: the pid holding a conflicting write lock on the whole file, or 0."""
    import struct
    fmt = "hhqqi"  # struct flock on x86_64/aarch64: l_type, l_whence, l_start, l_len, l_pid
    arg = struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
    res = fcntl.fcntl(f.fileno(), fcntl.F_GETLK, arg)
    l_type, _, _, _, l_pid = struct.unpack(fmt, res)
    return l_pid if l_type != fcntl.F_UNLCK else 0


def group_erofs(root, name, digest):
    p = os.path.join(root, name)
    rec("read_ok", sha(read_file(p)) == digest)
    d = os.path.join(root, "dir")
    checks = {
        "creat": lambda: os.open(os.path.join(root, "new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "open_wronly": lambda: os.open(p, os.O_WRONLY),
        "open_rdwr": lambda: os.open(p, os.O_RDWR),
        "open_trunc": lambda: os.open(p, os.O_RDONLY | os.O_TRUNC),
        "mkdir": lambda: os.mkdir(os.path.join(root, "newdir")),
        "rmdir": lambda: os.rmdir(d),
        "unlink": lambda: os.unlink(p),
        "rename": lambda: os.rename(p, os.path.join(root, "renamed")),
        "link": lambda: os.link(p, os.path.join(root, "hard")),
        "symlink": lambda: os.symlink(name, os.path.join(root, "soft")),
        "chmod": lambda: os.chmod(p, 0o600),
        "chown": lambda: os.chown(p, 1, 1),
        "utime": lambda: os.utime(p, ns=(1, 1)),
        "truncate": lambda: os.truncate(p, 0),
        "setxattr": lambda: os.setxattr(p, "user.x", b"1"),
        "removexattr": lambda: os.removexattr(p, "user.keep"),
        "mkfifo": lambda: os.mkfifo(os.path.join(root, "fifo")),
    }
    results = {}
    for key, fn in checks.items():
        try:
            r = fn()
            if isinstance(r, int):
                os.close(r)
            results[key] = "OK"
        except OSError as e:
            results[key] = ename(e)
    rec("write_ops", results)
    rec("xattr_readable", os.getxattr(p, "user.keep").decode())
    rec("unchanged", [sha(read_file(p)) == digest, sorted(os.listdir(root))])


def group_snapshot_source(root, seed):
    """What a snapshot of this tree will be checked against: a file with an xattr, a directory."""
    rng = random.Random(int(seed))
    data = rand_bytes(rng, 100 * KiB + 5)
    write_file(os.path.join(root, "ro.bin"), data)
    os.setxattr(os.path.join(root, "ro.bin"), "user.keep", b"kept")
    os.mkdir(os.path.join(root, "dir"))
    fd = os.open(os.path.join(root, "ro.bin"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    rec("digest", sha(data))


def group_overwrite(root, name):
    write_file(os.path.join(root, name), b"changed after the snapshot")
    rec("digest", sha(read_file(os.path.join(root, name))))


def group_cross_mount(src_root, dst_root, name):
    rec("rename_across_mounts", outcome(os.rename, os.path.join(src_root, name), os.path.join(dst_root, name)))
    rec("link_across_mounts", outcome(os.link, os.path.join(src_root, name), os.path.join(dst_root, "hard")))


def group_unlinked_open(root):
    """An open file outlives its last name (ext4 semantics), and leaves no trace in its directory."""
    d = os.path.join(root, "unlinked")
    os.mkdir(d)
    p = os.path.join(d, "f")
    write_file(p, b"before")
    fd = os.open(p, os.O_RDWR)
    os.unlink(p)
    rec("gone_from_namespace", outcome(os.stat, p))
    os.pwrite(fd, b" and after", 6)
    rec("read_after_unlink", os.pread(fd, 100, 0).decode())
    rec("fstat_nlink_after_unlink", os.fstat(fd).st_nlink)
    rec("listing_while_open", sorted(os.listdir(d)))
    rec("rmdir_while_open", outcome(os.rmdir, d))
    os.close(fd)
    # rename over a file another descriptor still reads: the descriptor keeps the old contents
    os.makedirs(d, exist_ok=True)
    q = os.path.join(d, "g")
    write_file(q, b"old contents")
    fd = os.open(q, os.O_RDONLY)
    write_file(os.path.join(d, "h"), b"new contents")
    os.rename(os.path.join(d, "h"), q)
    rec("old_fd_after_rename_over", os.pread(fd, 100, 0).decode())
    rec("new_name_after_rename_over", read_file(q).decode())
    rec("listing_after_rename_over", sorted(os.listdir(d)))
    os.close(fd)
    time.sleep(0.2)  # release is asynchronous to close
    rec("listing_after_close", sorted(os.listdir(d)))


def group_append_worker(root, worker, count):
    """Appends count 64-byte records with O_APPEND; concurrent appenders must never overwrite each other."""
    fd = os.open(os.path.join(root, "append.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(int(count)):
        line = ("worker %s record %06d " % (worker, i)).encode()
        os.write(fd, line + b"." * (63 - len(line)) + b"\n")
    os.close(fd)
    rec("appended", int(count))


def group_append_check(root):
    data = read_file(os.path.join(root, "append.log"))
    lines = data.split(b"\n")[:-1]
    rec("size", len(data))
    rec("well_formed", all(len(l) == 63 and l.startswith(b"worker ") for l in lines))
    seen = {}
    for l in lines:
        w, i = l.split()[1], int(l.split()[3])
        seen.setdefault(w.decode(), []).append(i)
    rec("per_worker_in_order", {w: v == sorted(v) and v == list(range(len(v))) for w, v in seen.items()})


def group_block_worker(root, worker, blocks, seed):
    """Writes every other 4 KiB block of one shared file (worker 0 the even, 1 the odd ones)."""
    p = os.path.join(root, "shared-blocks")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    rng = random.Random(int(seed) * 10 + int(worker))
    order = list(range(int(worker), int(blocks), 2))
    rng.shuffle(order)
    for b in order:
        os.pwrite(fd, block_content(b, seed), b * 4096)
    os.close(fd)
    rec("written", len(order))


def block_content(b, seed):
    return hashlib.sha256(("%s-%d" % (seed, b)).encode()).digest() * 128


def group_block_check(root, blocks, seed):
    data = read_file(os.path.join(root, "shared-blocks"))
    bad = [b for b in range(int(blocks)) if data[b * 4096:(b + 1) * 4096] != block_content(b, seed)]
    rec("size", len(data))
    rec("bad_blocks", bad[:20])


def group_names(root):
    d = os.path.join(root, "names")
    os.mkdir(d)
    names = ["a b", "new\nline", "tab\there", "\u00fcn\u00efc\u00f6d\u00e9", "\U0001f600", "..a", "-", "x" * 255, "back\\slash", "q'uote\"", "*?[]"]
    for n in names:
        write_file(os.path.join(d, n), n.encode())
    listed = os.listdir(d)
    rec("listed_exactly", sorted(listed) == sorted(names))
    rec("contents_by_name", all(read_file(os.path.join(d, n)) == n.encode() for n in names))
    # bytes that are not UTF-8 are a valid Linux name; they must come back byte for byte
    raw = os.path.join(d.encode(), b"raw-\xff\xfe")
    rec("non_utf8_create", outcome(os.open, raw, os.O_CREAT | os.O_WRONLY, 0o644))
    rec("non_utf8_listed", b"raw-\xff\xfe" in os.listdir(d.encode()))
    rec("non_utf8_stat", outcome(os.stat, raw))
    rec("non_utf8_listing", sorted(repr(n) for n in os.listdir(d.encode()) if n.startswith(b"raw-")))
    # two names that differ only in bytes that are not UTF-8 are two files
    write_file(os.path.join(d.encode(), b"two-\xff"), b"first")
    write_file(os.path.join(d.encode(), b"two-\xfe"), b"second")
    rec("non_utf8_distinct", [read_file(os.path.join(d.encode(), b"two-\xff")).decode(), read_file(os.path.join(d.encode(), b"two-\xfe")).decode()])
    rec("dot_names", [outcome(os.mkdir, os.path.join(d, ".")), outcome(os.mkdir, os.path.join(d, "..")), outcome(os.open, os.path.join(d, "."), os.O_CREAT | os.O_WRONLY, 0o644)])


def group_umask(root):
    d = os.path.join(root, "umask")
    os.mkdir(d)
    os.umask(0o027)
    os.close(os.open(os.path.join(d, "f"), os.O_CREAT | os.O_WRONLY, 0o666))
    os.mkdir(os.path.join(d, "sub"), 0o777)
    os.close(os.open(os.path.join(d, "g"), os.O_CREAT | os.O_WRONLY, 0o600))
    rec("modes", [oct(stat.S_IMODE(os.stat(os.path.join(d, n)).st_mode)) for n in ["f", "sub", "g"]])


def group_io_extras(root, seed):
    rng = random.Random(int(seed))
    d = os.path.join(root, "extras")
    os.mkdir(d)
    p = os.path.join(d, "falloc")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"abc")
    # glibc emulates posix_fallocate when the file system has no fallocate: either way it must work
    rec("posix_fallocate", outcome(os.posix_fallocate, fd, 0, 1024 * 1024))
    rec("posix_fallocate_result", [os.fstat(fd).st_size, os.pread(fd, 3, 0).decode(), all_zero(os.pread(fd, 4096, 4096))])
    os.close(fd)
    src = os.path.join(d, "src")
    data = rand_bytes(rng, 300 * KiB + 11)
    write_file(src, data)
    fi = os.open(src, os.O_RDONLY)
    fo = os.open(os.path.join(d, "dst"), os.O_WRONLY | os.O_CREAT, 0o644)
    copied = 0
    while copied < len(data):
        n = os.copy_file_range(fi, fo, len(data) - copied)
        if n == 0:
            break
        copied += n
    os.close(fi)
    os.close(fo)
    rec("copy_file_range", read_file(os.path.join(d, "dst")) == data)
    direct = os.path.join(d, "direct")
    try:
        fd = os.open(direct, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
    except OSError as e:
        rec("o_direct", ename(e))
    else:
        buf = mmap.mmap(-1, 8192)  # page aligned, as O_DIRECT wants
        payload = rand_bytes(rng, 8192)
        buf[:] = payload
        res = outcome(os.pwrite, fd, buf, 4096)
        back = mmap.mmap(-1, 8192)
        n = os.preadv(fd, [back], 4096) if res == "OK" else 0
        rec("o_direct", [res, n, back[:] == payload])
        os.close(fd)
        rec("o_direct_buffered_view", read_file(direct)[4096:] == payload)
    h = os.path.join(d, "huge")
    fd = os.open(h, os.O_RDWR | os.O_CREAT, 0o644)
    res = outcome(os.pwrite, fd, b"Y", 1 << 50)
    rec("write_at_1PiB", res)
    if res == "OK":
        rec("write_at_1PiB_result", [os.fstat(fd).st_size == (1 << 50) + 1, os.pread(fd, 2, 1 << 50).decode(), all_zero(os.pread(fd, 4096, 1 << 49))])
    os.close(fd)
    rec("unlink_huge", outcome(os.unlink, h))


def group_perm_setup_extra(root):
    d = os.path.join(root, "perm2")
    os.mkdir(d)
    os.chmod(d, 0o755)
    sg = os.path.join(d, "sgid")
    os.mkdir(sg)
    os.chown(sg, 0, 1234)
    os.chmod(sg, 0o2777)
    suid = os.path.join(d, "suid")
    write_file(suid, b"#!/bin/sh\n")
    os.chmod(suid, 0o6777)
    chowned = os.path.join(d, "chowned")
    write_file(chowned, b"x")
    os.chmod(chowned, 0o6755)
    os.chown(chowned, 4321, 4321)
    rec("chown_clears_suid_sgid", oct(stat.S_IMODE(os.stat(chowned).st_mode)))
    rec("setup", "OK")


def group_perm_nobody_extra(root):
    d = os.path.join(root, "perm2")
    sg = os.path.join(d, "sgid")
    write_file(os.path.join(sg, "f"), b"f")
    os.mkdir(os.path.join(sg, "sub"))
    st_f, st_sub = os.stat(os.path.join(sg, "f")), os.stat(os.path.join(sg, "sub"))
    rec("sgid_dir_file_group", [st_f.st_uid, st_f.st_gid])
    rec("sgid_dir_subdir_group_and_bit", [st_sub.st_gid, bool(st_sub.st_mode & stat.S_ISGID)])
    fd = os.open(os.path.join(d, "suid"), os.O_WRONLY)
    os.write(fd, b"#")
    os.close(fd)
    rec("write_by_other_clears_suid", oct(stat.S_IMODE(os.stat(os.path.join(d, "suid")).st_mode)))


GROUPS = {
    "open_flags": group_open_flags,
    "rw": group_rw,
    "rename": group_rename,
    "rename_writer": group_rename_writer,
    "rename_reader": group_rename_reader,
    "links": group_links,
    "dirs": group_dirs,
    "bigdir": group_bigdir,
    "attrs": group_attrs,
    "perm_setup": group_perm_setup,
    "perm_nobody": group_perm_nobody,
    "xattrs": group_xattrs,
    "statfs": group_statfs,
    "durable_write": group_durable_write,
    "mmap": group_mmap,
    "lock_hold": group_lock_hold,
    "lock_try": group_lock_try,
    "erofs": group_erofs,
    "cross_mount": group_cross_mount,
    "snapshot_source": group_snapshot_source,
    "overwrite": group_overwrite,
    "unlinked_open": group_unlinked_open,
    "append_worker": group_append_worker,
    "append_check": group_append_check,
    "block_worker": group_block_worker,
    "block_check": group_block_check,
    "names": group_names,
    "umask": group_umask,
    "io_extras": group_io_extras,
    "perm_setup_extra": group_perm_setup_extra,
    "perm_nobody_extra": group_perm_nobody_extra,
}

if __name__ == "__main__":
    GROUPS[sys.argv[1]](*sys.argv[2:])
