#!/usr/bin/env bash
# Installs the Debian packages Cairn's tests and benchmarks use, when they are missing and we are root.
# Idempotent and quiet when everything is there. CAIRN_SKIP_APT=1 skips it.
set -u
[ "${CAIRN_SKIP_APT:-0}" = 1 ] && exit 0
want=()
command -v fio >/dev/null || want+=(fio)
# FUSE tools (Cairn speaks /dev/fuse itself; fusermount for peers and cleanup), NBD clients for the tests.
command -v fusermount >/dev/null || want+=(fuse)
command -v qemu-img >/dev/null || want+=(qemu-utils)
command -v nbdinfo >/dev/null || want+=(libnbd-bin)
command -v nbdkit >/dev/null || want+=(nbdkit)
# The POSIX suite through a mount (test/posix) runs its checks in Python children.
[ -x /usr/bin/python3 ] || want+=(python3)
# Its permission tests run callers with other uids, groups and capabilities (setpriv, unshare).
command -v setpriv >/dev/null && command -v unshare >/dev/null || want+=(util-linux)
# A plain libfuse passthrough (the mount benchmark's reference).
command -v bindfs >/dev/null || want+=(bindfs)
[ ${#want[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then echo "cairn: missing Debian packages (${want[*]}); install them as root" >&2; exit 0; fi
echo "cairn: installing Debian packages: ${want[*]}" >&2
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${want[@]}" >/dev/null) \
  || echo "cairn: could not install ${want[*]}; benchmarks that need them will be skipped" >&2
exit 0
