#!/usr/bin/env bash
# Builds and runs the Linux reference checks on this machine's kernel (needs gcc).
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp -d)
gcc -O1 -o "$out/vma_rules" vma_rules.c
echo "kernel $(uname -r)"
"$out/vma_rules"
