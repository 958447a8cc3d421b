# The machine's speed as the benchmarks found it: sha256 (OpenSSL, through
# Python's hashlib) of 512 MiB in memory, on one core and then on two at
# once. A VM's load average and /proc/stat cannot show a busy host: there
# a core hashes more slowly, and two at once fall short of twice one. Both
# figures go in the report's header beside the load average, so runs on
# differently loaded hosts are not compared as equals.
#
#   cpu_probe   -> "1 core 1.85 GB/s, 2 at once 1.80 + 1.79 GB/s"

cpu_probe_one() {
    python3 -c '
import hashlib, time
block = bytes(1 << 26)
h = hashlib.sha256()
t = time.perf_counter()
for _ in range(8):
    h.update(block)
print("%.2f" % (8 * len(block) / (time.perf_counter() - t) / 1e9))'
}

cpu_probe() {
    local one a b dir
    one=$(cpu_probe_one)
    dir=$(mktemp -d)
    cpu_probe_one >"$dir/a" &
    cpu_probe_one >"$dir/b"
    wait
    a=$(cat "$dir/a") b=$(cat "$dir/b")
    rm -rf "$dir"
    echo "1 core $one GB/s, 2 at once $a + $b GB/s"
}
