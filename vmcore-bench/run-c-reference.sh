#!/usr/bin/env bash
# Builds and runs the plain C radix walk that WalkBench is compared with.
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p target
gcc -O2 -march=native -o target/radix_walk src/main/c/radix_walk.c
./target/radix_walk
