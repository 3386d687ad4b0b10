#!/usr/bin/env bash
# Sequential durable write bandwidth and small-write fsync rate of the disk holding DIR, with dd.
#
#   bash benches/disk_bandwidth.sh [DIR] [RUNS]
#
# DIR defaults to target/tmp of this repository (where `cargo bench --bench ingest` puts its stores);
# RUNS (default 3) repetitions of each measurement. Prints one line per run and the median.
# 1. bandwidth: dd if=/dev/zero of=FILE bs=1M count=1024 conv=fdatasync   (MB/s, MB = 10^6 bytes)
# 2. fsync rate: dd if=/dev/zero of=FILE bs=4k count=2000 oflag=dsync      (4 KiB appends, each followed
#    by a synchronous data flush: ops/s and the mean latency of one)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:-$repo/target/tmp}
runs=${2:-3}
mkdir -p "$dir"
file=$(mktemp "$dir/disk_bandwidth.XXXXXX")
trap 'rm -f "$file"' EXIT

# Seconds dd reports in its last line ("... copied, 1.234 s, 870 MB/s").
dd_seconds() {
    dd "$@" 2>&1 | awk '/copied/ { for (i = 1; i <= NF; i++) if ($i == "s," || $i == "s") { print $(i - 1); exit } }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

echo "directory: $dir ($(df -h --output=source,fstype,size "$dir" | tail -1 | tr -s ' '))"

echo "sequential write, 1 GiB in 1 MiB blocks, conv=fdatasync:"
bw=()
for ((r = 1; r <= runs; r++)); do
    rm -f "$file"
    s=$(dd_seconds if=/dev/zero of="$file" bs=1M count=1024 conv=fdatasync)
    mbs=$(awk -v s="$s" 'BEGIN { printf "%.0f", 1073741824 / s / 1e6 }')
    echo "  run $r: ${s} s, ${mbs} MB/s"
    bw+=("$mbs")
    sleep 1
done
echo "  median: $(printf '%s\n' "${bw[@]}" | median) MB/s"

echo "4 KiB append + fdatasync (oflag=dsync), 2000 ops:"
ops=()
for ((r = 1; r <= runs; r++)); do
    rm -f "$file"
    s=$(dd_seconds if=/dev/zero of="$file" bs=4k count=2000 oflag=dsync)
    o=$(awk -v s="$s" 'BEGIN { printf "%.0f", 2000 / s }')
    us=$(awk -v s="$s" 'BEGIN { printf "%.0f", s / 2000 * 1e6 }')
    echo "  run $r: ${o} ops/s, ${us} us/op"
    ops+=("$o")
done
echo "  median: $(printf '%s\n' "${ops[@]}" | median) ops/s"
