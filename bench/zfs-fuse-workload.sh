#!/usr/bin/env bash
# The fs-workload.sh ../shared/peers/zfs-fuse.sh calls as `DIR LABEL`: runs bench/mount-workload.sh on
# the mounts MW_MOUNTS names and on zfs-fuse's, and marks MW_STARTED so a failure is told from zfs-fuse not starting.
set -eu
touch "$MW_STARTED"
mapfile -t mounts <<<"$MW_MOUNTS" # LABEL=DIR, one a line
exec bash "$MW_SCRIPT" "${mounts[@]}" "zfs-fuse=$1"
