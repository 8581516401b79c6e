#!/usr/bin/env bash
# Prints the machine code of WalkBench.walk4kLoop's inner loop as C2 compiled it, and counts its
# instructions: the figure the README quotes for the walk's cost per walk.
#
# HotSpot prints compiled code through a disassembler plugin; Debian's (apt-get install
# libhsdis0-fcml) prints the bytes without mnemonics, so this script decodes them with objdump.
# The loop is the shortest backward jump that encloses the walk's index rotates (rorx).
#
# Usage: vmcore-bench/print-walk-loop.sh [sequential|random]   (needs the benchmark jar:
# mvn -B -DskipTests package -pl vmcore-bench -am; plus libhsdis0-fcml, objdump and python3)
set -euo pipefail
cd "$(dirname "$0")"
order=${1:-sequential}
java=${JAVA25:-/usr/lib/jvm/temurin-25-jdk-amd64/bin/java}
hsdis=/usr/lib/x86_64-linux-gnu/libhsdis.so.0
[ -e "$hsdis" ] || { echo "no $hsdis: apt-get install libhsdis0-fcml" >&2; exit 1; }
mkdir -p target/hsdis
ln -sf "$hsdis" target/hsdis/hsdis-amd64.so
LD_LIBRARY_PATH=target/hsdis "$java" -jar target/benchmarks.jar 'WalkBench.walk4kLoop' -p order="$order" \
    -f 1 -wi 3 -w 1 -i 1 -r 1 \
    -jvmArgsAppend "-XX:+UnlockDiagnosticVMOptions -XX:CompileCommand=print,*WalkBench.walk4kLoop" \
    > target/walk-loop-print.txt 2>&1
python3 - target/walk-loop-print.txt <<'EOF'
import re, subprocess, sys, tempfile

text = open(sys.argv[1]).read().split('\n')
# The last C2 compile of the whole method (not an on-stack-replacement one, marked %).
starts = [i for i, l in enumerate(text) if re.search(r'Compiled method \(c2\).*walk4kLoop \(', l)]
if not starts:
    sys.exit('no C2 compile of walk4kLoop in the output')
code, base, inside = bytearray(), None, False
for line in text[starts[-1]:]:
    if '[MachCode]' in line:
        inside = True
    elif '[/MachCode]' in line:
        break
    elif inside:
        m = re.match(r'\s*0x([0-9a-f]+): ([0-9a-f| ]+)$', line)
        if m:
            address = int(m.group(1), 16)
            if base is None:
                base = address
            code += b'\x90' * (address - base - len(code))  # gaps between annotated runs
            code += bytes.fromhex(m.group(2).replace('|', '').replace(' ', ''))
with tempfile.NamedTemporaryFile(suffix='.bin') as f:
    f.write(code)
    f.flush()
    dump = subprocess.run(['objdump', '-D', '-b', 'binary', '-m', 'i386:x86-64', '-M', 'intel',
                           '--adjust-vma=' + hex(base), f.name], capture_output=True, text=True).stdout
addresses, instructions = [], []
for line in dump.split('\n'):
    parts = line.split('\t')
    if len(parts) >= 3 and parts[0].strip().endswith(':'):
        addresses.append(int(parts[0].strip()[:-1], 16))
        instructions.append(parts[2].strip())
index_of = {address: i for i, address in enumerate(addresses)}
loop = None
for end, ins in enumerate(instructions):
    m = re.match(r'j\w+\s+0x([0-9a-f]+)', ins)
    head = index_of.get(int(m.group(1), 16)) if m else None
    if head is not None and head < end and any('rorx' in x for x in instructions[head:end]):
        if loop is None or end - head < loop[1] - loop[0]:
            loop = (head, end)
if loop is None:
    sys.exit('no loop with the walk found')
# Alignment padding is not part of the loop: nop, xchg ax,ax and their data16-prefixed forms.
body = [x for x in instructions[loop[0]:loop[1] + 1]
        if x and not x.startswith(('nop', 'data16')) and x.split() != ['xchg', 'ax,ax']]
print('\n'.join('  ' + x for x in body))
print('instructions per iteration (one walk):', len(body))
EOF
