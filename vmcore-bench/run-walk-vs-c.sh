#!/usr/bin/env bash
# Compares WalkBench.walk4kLoop with the C radix walk in pairs: each round runs the C reference
# and then one JMH fork right after it, so that both see the machine in the same state, and
# prints each round's ratios and their median. On a shared VM the two drift by tens of percent
# between runs (the C walk itself ran at 3.7 to 5.2 ns sequentially); a ratio taken within a
# round is steadier than one taken between runs made minutes apart.
#
# Usage: vmcore-bench/run-walk-vs-c.sh [rounds]   (default 6; needs gcc, JDK 25 and the
# benchmark jar: mvn -B -DskipTests package -pl vmcore-bench -am)
set -euo pipefail
cd "$(dirname "$0")"
rounds=${1:-6}
java=${JAVA25:-/usr/lib/jvm/temurin-25-jdk-amd64/bin/java}
mkdir -p target
gcc -O2 -march=native -o target/radix_walk src/main/c/radix_walk.c
for r in $(seq "$rounds"); do
    ./target/radix_walk | sed "s/^/round $r: /"
    "$java" -jar target/benchmarks.jar 'WalkBench.walk4kLoop' -f 1 -wi 3 -w 1 -i 5 -r 1 2>/dev/null \
        | grep -E '^WalkBench' | sed "s/^/round $r: /"
done | tee target/walk-vs-c.txt
awk '
    function ns() { match($0, /: [0-9.]+ ns\/walk/); return substr($0, RSTART + 2, RLENGTH - 9) + 0 }
    /c radix walk, sequential/ { c[$2 "s"] = ns() }
    /c radix walk, random/ { c[$2 "r"] = ns() }
    /c walk with .*sequential/ { cc[$2 "s"] = ns() }
    /c walk with .*random/ { cc[$2 "r"] = ns() }
    /walk4kLoop +sequential/ { j[$2 "s"] = $(NF - 3) }
    /walk4kLoop +random/ { j[$2 "r"] = $(NF - 3) }
    END {
        for (k in j) {
            o = substr(k, length(k)) == "s" ? "sequential" : "random"
            printf "%s %s java/c %.2f java/(c with checks) %.2f\n", k, o, j[k] / c[k], j[k] / cc[k]
        }
    }' target/walk-vs-c.txt | sort -k2,2 -k4,4n | awk '
    { ratio[$2] = ratio[$2] " " $4; n[$2]++; line[$2, n[$2]] = $4 }
    END {
        for (o in n) {
            m = n[o] % 2 ? line[o, (n[o] + 1) / 2] : (line[o, n[o] / 2] + line[o, n[o] / 2 + 1]) / 2
            printf "%s: java/c per round (sorted):%s; median %.2f\n", o, ratio[o], m
        }
    }'
