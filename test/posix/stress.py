#!/usr/bin/env python3
"""Many-process stress through a mount: seeded workers share one tree, each logging what it completed.

    python3 stress.py work ROOT WORKER SEED SECONDS LOG   one worker; appends one JSON line per completed op
    python3 stress.py dump ROOT                           prints {"name": "tree", "value": {path: sha256 | "dir"}}

Workers share the directories stress/d0..d3 and stress/shared, and contend in them (creates, renames,
unlinks and listings side by side), but each owns its file names ("w<worker>-..."), so its own log
decides exactly what its files must hold at the end. The shared slots (stress/shared/slot-K) are
renamed over by every worker; at the end each must hold the last version some worker put there.

A worker also checks as it goes: a read of its own file must equal its model, and a listing of a shared
directory must show each of its own names there exactly once. A mismatch is logged and fails the test.
"""
import errno
import hashlib
import json
import os
import random
import sys
import time

SHARED_DIRS = ["d0", "d1", "d2", "d3"]
SLOTS = 4
FILES_PER_WORKER_MAX = 12
FILE_SIZE_MAX_BYTES = 256 * 1024


def sha(data):
    return hashlib.sha256(data).hexdigest()


class Worker:
    def __init__(self, root, worker, seed, log_path):
        self.root = os.path.join(root, "stress")
        self.worker = worker
        self.rng = random.Random(seed * 1000 + worker)
        self.log = open(log_path, "a", buffering=1)
        self.serial = 0
        # path (relative to stress/) -> inode key; inode key -> bytearray; own empty subdirectories
        self.paths = {}
        self.inodes = {}
        self.subdirs = set()

    def emit(self, **entry):
        self.log.write(json.dumps(entry) + "\n")

    def abs(self, rel):
        return os.path.join(self.root, rel)

    def new_name(self, prefix="f"):
        self.serial += 1
        parent = self.rng.choice(SHARED_DIRS + sorted(self.subdirs)) if self.subdirs and self.rng.random() < 0.3 else self.rng.choice(SHARED_DIRS)
        return os.path.join(parent, "w%d-%s%d" % (self.worker, prefix, self.serial))

    def rand_bytes(self, n):
        return self.rng.getrandbits(n * 8).to_bytes(n, "little") if n else b""

    def links_of(self, key):
        return sorted(p for p, k in self.paths.items() if k == key)

    def emit_content(self, key):
        self.emit(op="content", paths=self.links_of(key), sha=sha(bytes(self.inodes[key])))

    # ---- operations ----

    def op_create(self):
        if len(self.inodes) >= FILES_PER_WORKER_MAX:
            return self.op_unlink()
        rel = self.new_name()
        data = self.rand_bytes(self.rng.randrange(0, FILE_SIZE_MAX_BYTES))
        fd = os.open(self.abs(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        key = rel
        self.inodes[key] = bytearray(data)
        self.paths[rel] = key
        self.emit_content(key)

    def op_write(self):
        if not self.paths:
            return self.op_create()
        rel = self.rng.choice(sorted(self.paths))
        key = self.paths[rel]
        content = self.inodes[key]
        offset = self.rng.randrange(0, len(content) + 4096)
        length = self.rng.randrange(1, 65536)
        if offset + length > FILE_SIZE_MAX_BYTES:
            offset = max(0, FILE_SIZE_MAX_BYTES - length)
        data = self.rand_bytes(length)
        fd = os.open(self.abs(rel), os.O_WRONLY)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
        if len(content) < offset:
            content.extend(bytes(offset - len(content)))
        content[offset:offset + length] = data
        self.emit_content(key)

    def op_truncate(self):
        if not self.paths:
            return self.op_create()
        rel = self.rng.choice(sorted(self.paths))
        key = self.paths[rel]
        content = self.inodes[key]
        size = self.rng.randrange(0, FILE_SIZE_MAX_BYTES)
        os.truncate(self.abs(rel), size)
        if size < len(content):
            del content[size:]
        else:
            content.extend(bytes(size - len(content)))
        self.emit_content(key)

    def op_rename(self):
        if not self.paths:
            return self.op_create()
        src = self.rng.choice(sorted(self.paths))
        if len(self.paths) > 1 and self.rng.random() < 0.4:
            dst = self.rng.choice(sorted(p for p in self.paths if p != src))  # over an existing own file
        else:
            dst = self.new_name()
        os.rename(self.abs(src), self.abs(dst))
        # both names linking one inode: rename does nothing (POSIX), both names stay
        noop = dst in self.paths and self.paths[dst] == self.paths[src]
        if not noop:
            replaced = self.paths.pop(dst, None)
            self.paths[dst] = self.paths.pop(src)
            if replaced is not None and not self.links_of(replaced):
                del self.inodes[replaced]
        self.emit(op="rename", src=src, dst=dst, noop=noop)

    def op_link(self):
        if not self.paths or len(self.paths) >= FILES_PER_WORKER_MAX * 2:
            return self.op_create()
        src = self.rng.choice(sorted(self.paths))
        dst = self.new_name("l")
        os.link(self.abs(src), self.abs(dst))
        self.paths[dst] = self.paths[src]
        self.emit(op="link", src=src, dst=dst)

    def op_unlink(self):
        if not self.paths:
            return self.op_create()
        rel = self.rng.choice(sorted(self.paths))
        os.unlink(self.abs(rel))
        key = self.paths.pop(rel)
        if not self.links_of(key):
            del self.inodes[key]
        self.emit(op="unlink", path=rel)

    def op_mkdir(self):
        if len(self.subdirs) >= 4:
            return self.op_rmdir()
        self.serial += 1
        rel = os.path.join(self.rng.choice(SHARED_DIRS), "w%d-dir%d" % (self.worker, self.serial))
        os.mkdir(self.abs(rel))
        self.subdirs.add(rel)
        self.emit(op="mkdir", path=rel)

    def op_rmdir(self):
        empty = sorted(d for d in self.subdirs if not any(p.startswith(d + "/") for p in self.paths))
        if not empty:
            return self.op_mkdir() if len(self.subdirs) < 4 else self.op_unlink()
        rel = self.rng.choice(empty)
        os.rmdir(self.abs(rel))
        self.subdirs.discard(rel)
        self.emit(op="rmdir", path=rel)

    def op_slot(self):
        slot = self.rng.randrange(SLOTS)
        self.serial += 1
        data = ("slot %d worker %d serial %d\n" % (slot, self.worker, self.serial)).encode() + self.rand_bytes(self.rng.randrange(0, 20000))
        tmp = os.path.join("shared", "w%d-tmp" % self.worker)
        with open(self.abs(tmp), "wb") as f:
            f.write(data)
        os.rename(self.abs(tmp), self.abs(os.path.join("shared", "slot-%d" % slot)))
        self.emit(op="slot", slot=slot, sha=sha(data))

    def op_read(self):
        if not self.paths:
            return self.op_create()
        rel = self.rng.choice(sorted(self.paths))
        with open(self.abs(rel), "rb") as f:
            got = f.read()
        want = bytes(self.inodes[self.paths[rel]])
        if got != want:
            self.emit(op="mismatch", what="read", path=rel, got_size=len(got), want_size=len(want))

    def op_list(self):
        parent = self.rng.choice(SHARED_DIRS)
        mine = [n for n in os.listdir(self.abs(parent)) if n.startswith("w%d-" % self.worker)]
        want = sorted(os.path.basename(p) for p in list(self.paths) + list(self.subdirs) if os.path.dirname(p) == parent)
        if sorted(mine) != want:
            self.emit(op="mismatch", what="list", dir=parent, got=sorted(mine), want=want)

    def run(self, seconds):
        ops = [
            (self.op_create, 3), (self.op_write, 4), (self.op_truncate, 1), (self.op_rename, 3), (self.op_link, 1),
            (self.op_unlink, 2), (self.op_mkdir, 1), (self.op_rmdir, 1), (self.op_slot, 2), (self.op_read, 2), (self.op_list, 1),
        ]
        table = [fn for fn, weight in ops for _ in range(weight)]
        deadline = time.monotonic() + float(seconds)
        count = 0
        while time.monotonic() < deadline:
            self.rng.choice(table)()
            count += 1
        self.emit(op="done", count=count)


def dump(root):
    base = os.path.join(root, "stress")
    tree = {}
    for dirpath, dirnames, filenames in os.walk(base):
        for d in dirnames:
            tree[os.path.relpath(os.path.join(dirpath, d), base)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                tree[os.path.relpath(p, base)] = sha(fh.read())
    print(json.dumps({"name": "tree", "value": tree}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        for d in SHARED_DIRS + ["shared"]:
            os.makedirs(os.path.join(sys.argv[2], "stress", d), exist_ok=True)
    elif sys.argv[1] == "work":
        root, worker, seed, seconds, log_path = sys.argv[2:7]
        w = Worker(root, int(worker), int(seed), log_path)
        try:
            w.run(seconds)
        except OSError as e:
            w.emit(op="error", errno=errno.errorcode.get(e.errno, str(e.errno)), message=str(e))
            raise
    elif sys.argv[1] == "dump":
        dump(sys.argv[2])
