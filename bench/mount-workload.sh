#!/usr/bin/env bash
# Run on every mount at once: `mount-workload.sh LABEL=DIR...`, inputs in MW_* variables. Prints one
# "LABEL FIGURE VALUE" line per measurement. Every phase runs MW_ROUNDS rounds with the mounts taking
# turns, so a slow stretch of the host hits every system instead of one, and the table takes each
# figure's median. Turns are 6 s apart, so one system's txg commit and frees (5 s timers on Cairn and
# zfs-fuse; `sync` does not reach a FUSE server) do not land in the next one's timing, and the order
# changes every round (rotated, and reversed in odd rounds) so no system always follows the same one.
# bench/mount.ts runs it; zfs-fuse.sh runs it through bench/zfs-fuse-workload.sh.
set -euo pipefail
src=$MW_RANDOM; mb=$MW_MB; files=$MW_FILES; tarball=$MW_TARBALL; tree_files=$MW_TREE_FILES; fio_s=$MW_FIO_SECONDS; rounds=$MW_ROUNDS
labels=(); work=()
for arg in "$@"; do labels+=("${arg%%=*}"); work+=("${arg#*=}/mount-bench.$$"); done
count=${#labels[@]}
for w in "${work[@]}"; do mkdir -p "$w"; done
now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", n / ((b - a) / 1e9) }'; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
order() { # ROUND: the mount indices in this round's order (with 3 mounts, rounds 0-5 are all 6 orders)
  local k shift=$(( $1 / 2 ))
  for ((k = 0; k < count; k++)); do
    if (( $1 % 2 == 0 )); then echo $(( (k + shift) % count )); else echo $(( (count - 1 - k + shift) % count )); fi
  done
}
turns() { # PHASE: every round, every mount, 6 s after each turn
  local r i
  for ((r = 0; r < rounds; r++)); do for i in $(order "$r"); do "$1" "$i"; sleep 6; done; done
}

sequential() { # INDEX
  local label=${labels[$1]} w=${work[$1]}
  drop; t0=$(now); dd if="$src" of="$w/seq" bs=1M conv=fsync status=none; t1=$(now)
  echo "$label seqWriteMiBps $(rate "$mb" "$t0" "$t1")"
  drop; t0=$(now); dd if="$w/seq" of=/dev/null bs=1M status=none; t1=$(now)
  echo "$label seqReadMiBps $(rate "$mb" "$t0" "$t1")"
  cmp "$src" "$w/seq"
  rm -f "$w/seq"
}

fio_iops() { # DIR RW (randwrite|randread) SIDE (write|read)
  drop
  fio --name=mb --directory="$1" --filename=fio.dat --ioengine=psync --bs=4k --size=256m \
      --runtime="$fio_s" --time_based --numjobs=1 --direct=0 --rw="$2" --output-format=json \
    | python3 -c 'import json, sys; print(round(json.load(sys.stdin)["jobs"][0][sys.argv[1]]["iops"]))' "$3"
}
random_io() { # INDEX
  local label=${labels[$1]} w=${work[$1]}
  local iops # assigned apart from echo, so a failed fio stops the workload (set -e)
  iops=$(fio_iops "$w" randwrite write); echo "$label randWriteIops $iops"
  iops=$(fio_iops "$w" randread read); echo "$label randReadIops $iops"
  rm -f "$w/fio.dat"
}

small_files() { # INDEX [FILES REPORT(0|1)]: a timed pass of MW_FILES files unless told otherwise
python3 - "${work[$1]}/small" "${2:-$files}" "${labels[$1]}" "${3:-1}" <<'PY'
import os, subprocess, sys, time
d, n, label, report = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
def drop():
    subprocess.run(["sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"], stderr=subprocess.DEVNULL)
def out(figure, value):
    if report: print(f"{label} {figure} {value}")
data = os.urandom(4096)
os.makedirs(d)
t = time.time()
for i in range(n):
    fd = os.open(f"{d}/f{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644); os.write(fd, data); os.close(fd)
out("createPerS", f"{n / (time.time() - t):.1f}")
drop(); t = time.time()
for i in range(n):
    assert os.stat(f"{d}/f{i}").st_size == 4096
out("statPerS", f"{n / (time.time() - t):.1f}")
drop()
for figure in ("lsColdS", "lsWarmS"):
    t = time.time()
    subprocess.run(["ls", "-l", d], stdout=subprocess.DEVNULL, check=True)
    out(figure, f"{time.time() - t:.3f}")
t = time.time()
for i in range(n):
    os.unlink(f"{d}/f{i}")
out("deletePerS", f"{n / (time.time() - t):.1f}")
os.rmdir(d)
PY
}

tree() { # INDEX
  local label=${labels[$1]} w=${work[$1]}
  drop; mkdir "$w/tree"
  t0=$(now); tar -xf "$tarball" -C "$w/tree"; sync; t1=$(now)
  echo "$label untarS $(secs "$t0" "$t1")"
  got=$(find "$w/tree" -type f | wc -l)
  [ "$got" = "$tree_files" ] || { echo "$label untar: $got files, expected $tree_files" >&2; exit 1; }
  t0=$(now); rm -rf "$w/tree"; sync; t1=$(now)
  echo "$label rmTreeS $(secs "$t0" "$t1")"
}

turns sequential
turns random_io
# An untimed pass of 3,000 files on every system first: steady state is what the rows compare (V8
# optimizes Cairn's create, lookup and unlink paths only after a few thousand calls).
for i in $(order 0); do small_files "$i" "$(( files < 3000 ? files : 3000 ))" 0; sleep 6; done
turns small_files
turns tree
for w in "${work[@]}"; do rm -rf "$w"; done
