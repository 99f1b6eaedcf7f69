#!/usr/bin/env bash
# Run on every mount at once: `mount-workload.sh LABEL=DIR...`, inputs in MW_* variables. Prints one
# "LABEL FIGURE VALUE" line per measurement. Every phase runs MW_ROUNDS rounds, the mounts taking
# turns in an order rotated each round (the small-file and untar turns 6 s apart, so one system's txg
# commit, 5 s timers on Cairn and zfs-fuse, does not land in the next one's timing): a slow stretch of
# the host then hits every system instead of one, and the table takes each figure's median. bench/mount.ts runs it; zfs-fuse.sh runs it through zfs-fuse-workload.sh.
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
order() { for ((k = 0; k < count; k++)); do echo $(( (k + $1) % count )); done; } # mount indices, rotated by $1

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
  echo "$label randWriteIops $(fio_iops "$w" randwrite write)"
  echo "$label randReadIops $(fio_iops "$w" randread read)"
  rm -f "$w/fio.dat"
}

small_files() { # INDEX FILES REPORT(0|1)
python3 - "${work[$1]}/small" "$2" "${labels[$1]}" "$3" <<'PY'
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

for ((r = 0; r < rounds; r++)); do for i in $(order "$r"); do sequential "$i"; done; done
for ((r = 0; r < rounds; r++)); do for i in $(order "$r"); do random_io "$i"; done; done
# An untimed pass of 3,000 files on every system first: steady state is what the rows compare (V8
# optimizes Cairn's create, lookup and unlink paths only after a few thousand calls).
for i in $(order 0); do small_files "$i" "$(( files < 3000 ? files : 3000 ))" 0; sleep 6; done
for ((r = 0; r < rounds; r++)); do for i in $(order "$r"); do small_files "$i" "$files" 1; sleep 6; done; done
for ((r = 0; r < rounds; r++)); do for i in $(order "$r"); do tree "$i"; sleep 6; done; done
for w in "${work[@]}"; do rm -rf "$w"; done
