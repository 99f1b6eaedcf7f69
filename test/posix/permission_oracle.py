#!/usr/bin/env python3
"""Permission oracle: the same seeded tree on ext4 and on a Cairn mount, probed by several callers.

  permission_oracle.py setup ROOT SEED   (as root) builds the tree under ROOT
  permission_oracle.py probe ROOT        (as the caller) prints one JSON line per check

Every check's value is what the kernel returned ("OK" or the errno name, or a bool), so the test can
compare the two trees line by line: ext4 is the reference, whatever Cairn's server decides must match.
What a probe changes (a truncate that clears setuid, a chmod that drops setgid) it records, and each
caller probes a tree of its own, built the same way.
"""
import errno
import json
import os
import random
import sys

UIDS = [0, 1000, 1001]
GIDS = [0, 1000, 1001, 4242]
DIR_MODES = [0o000, 0o500, 0o700, 0o711, 0o750, 0o751, 0o755, 0o770, 0o775, 0o777, 0o1777, 0o1770, 0o2775, 0o3777]
FILE_MODES = [0o000, 0o400, 0o440, 0o444, 0o600, 0o604, 0o640, 0o644, 0o660, 0o664, 0o666, 0o700, 0o750, 0o755, 0o777, 0o2755, 0o4755]
ENTRIES = 24


def rec(name, value):
    print(json.dumps({"name": name, "value": value}), flush=True)


def outcome(fn, *args, **kwargs):
    try:
        result = fn(*args, **kwargs)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    if fn is os.open:
        os.close(result)
    return "OK"


def state(path):
    """Mode and size as root would see them afterwards, or the errno the caller gets from stat."""
    try:
        st = os.stat(path)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return [oct(st.st_mode & 0o7777), st.st_size]


def setup(root, seed):
    rnd = random.Random(seed)
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    links = os.path.join(root, "links")
    os.mkdir(links)
    os.chmod(links, 0o777)
    for i in range(ENTRIES):
        d = os.path.join(root, f"d{i}")
        os.mkdir(d)
        f = os.path.join(d, "f")
        with open(f, "wb") as out:
            out.write(b"inner")
        os.setxattr(f, "user.tag", b"x")
        os.chown(f, rnd.choice(UIDS), rnd.choice(GIDS))
        os.chmod(f, rnd.choice(FILE_MODES))
        os.chown(d, rnd.choice(UIDS), rnd.choice(GIDS))
        os.chmod(d, rnd.choice(DIR_MODES))
        g = os.path.join(root, f"g{i}")
        with open(g, "wb") as out:
            out.write(b"outer")
        os.setxattr(g, "user.tag", b"y")
        os.chown(g, rnd.choice(UIDS), rnd.choice(GIDS))
        os.chmod(g, rnd.choice(FILE_MODES))
    rec("setup", "OK")


def probe(root):
    me = f"{os.getuid()}"
    for i in range(ENTRIES):
        d = os.path.join(root, f"d{i}")
        f = os.path.join(d, "f")
        g = os.path.join(root, f"g{i}")
        rec(f"d{i}.access", [os.access(d, os.R_OK), os.access(d, os.W_OK), os.access(d, os.X_OK)])
        rec(f"d{i}.list", outcome(os.listdir, d))
        rec(f"d{i}.chdir", outcome(os.chdir, d))
        os.chdir("/")
        rec(f"d{i}.f.stat", outcome(os.stat, f))
        rec(f"d{i}.f.read", outcome(os.open, f, os.O_RDONLY))
        rec(f"d{i}.f.write", outcome(os.open, f, os.O_WRONLY))
        rec(f"d{i}.f.getxattr", outcome(os.getxattr, f, "user.tag"))
        new = os.path.join(d, f"new-{me}")
        created = outcome(os.open, new, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        rec(f"d{i}.create", created)
        if created == "OK":
            rec(f"d{i}.unlink-own", outcome(os.unlink, new))
        rec(f"d{i}.f.truncate", [outcome(os.truncate, f, 5), state(f)])
        sub = os.path.join(d, f"sub-{me}")
        made = outcome(os.mkdir, sub)
        rec(f"d{i}.mkdir", made)
        if made == "OK":
            rec(f"d{i}.rmdir-own", outcome(os.rmdir, sub))
        link = os.path.join(d, f"sym-{me}")
        made = outcome(os.symlink, "f", link)
        rec(f"d{i}.symlink", made)
        if made == "OK":
            os.unlink(link)
        rec(f"d{i}.setxattr", outcome(os.setxattr, d, "user.tag", b"d"))
        rec(f"d{i}.getxattr", outcome(os.getxattr, d, "user.tag"))
        moved = os.path.join(d, f"moved-{me}")
        renamed = outcome(os.rename, f, moved)
        rec(f"d{i}.rename", renamed)
        if renamed == "OK":
            os.rename(moved, f)
        rec(f"g{i}.access", [os.access(g, os.R_OK), os.access(g, os.W_OK), os.access(g, os.X_OK)])
        rec(f"g{i}.read", outcome(os.open, g, os.O_RDONLY))
        rec(f"g{i}.write", outcome(os.open, g, os.O_WRONLY))
        st = os.stat(g)
        rec(f"g{i}.chmod-same", outcome(os.chmod, g, st.st_mode & 0o7777))
        rec(f"g{i}.chown-same", [outcome(os.chown, g, st.st_uid, st.st_gid), state(g)])
        sgid = outcome(os.chmod, g, (st.st_mode & 0o7777) | 0o2000)
        rec(f"g{i}.chmod-sgid", [sgid, oct(os.stat(g).st_mode & 0o7777)])
        if sgid == "OK":
            os.chmod(g, st.st_mode & 0o7777)
        rec(f"g{i}.chmod-back", state(g))
        rec(f"g{i}.otrunc", [outcome(os.open, g, os.O_WRONLY | os.O_TRUNC), state(g)])
        rec(f"g{i}.touch", outcome(os.utime, g))
        rec(f"g{i}.settime", outcome(os.utime, g, ns=(st.st_atime_ns, st.st_mtime_ns)))
        rec(f"g{i}.setxattr", outcome(os.setxattr, g, "user.tag", b"y"))
        for where, parent in (("link", os.path.join(root, "links")), ("link-top", root)):
            link = os.path.join(parent, f"link-{me}-{i}")
            rec(f"g{i}.{where}", outcome(os.link, g, link))
            if os.path.lexists(link):
                os.unlink(link)


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2], int(sys.argv[3]))
    else:
        probe(sys.argv[2])
