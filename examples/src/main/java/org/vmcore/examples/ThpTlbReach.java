package org.vmcore.examples;

import java.util.Arrays;
import java.util.Locale;
import java.util.Random;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmCounters;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.api.TlbStats;
import org.vmcore.api.TraceOp;
import org.vmcore.api.VmstatCounter;

/**
 * TLB reach with and without transparent huge pages. One trace runs twice, each time on a fresh
 * machine of the same configuration ({@link ThpMode#MADVISE}, default TLB): over a private
 * anonymous region advised {@link Advice#HUGEPAGE}, then over the same region advised
 * {@link Advice#NOHUGEPAGE}. The trace stores once to each 4 KiB page in order (the first touch,
 * a write, so no zero page gets in between), then makes random 8-byte loads and stores (one in
 * four a store) all over the region. With 2 MiB pages a 128 MiB region is 64 translations, which
 * the 1024-entry 2 MiB TLB holds; with 4 KiB pages it is 32768, sixteen times what the 4 KiB TLB
 * holds, so nearly every random access walks. Simulated cycles are {@link CostTable#DEFAULT}'s.
 *
 * <p>Page tables: a huge entry keeps a deposited PTE table (pgtable_trans_huge_deposit), which
 * counts as Linux counts it, so THP saves walks, not page-table memory.
 *
 * <p>Run: {@code ./run-example ThpTlbReach [--mib=128] [--accesses=500000] [--seed=42]}
 */
public final class ThpTlbReach {
    static final long MIB = 1L << 20;
    static final long HUGE = 2 * MIB;
    static final long BASE = 0x7f00_0000_0000L; // 2 MiB-aligned, so the region is whole huge pages

    private ThpTlbReach() {
    }

    /** What one run of the trace did. */
    record Run(String name, long accesses, TlbStats tlb, long faults, long cycles, MmCounters counters, long thpFaultAlloc) {
        @Override
        public String toString() {
            return String.format(Locale.ROOT, "%-16s %8d %10d %10d %8d %9d kB %6d %12.1f", name, accesses, tlb.misses(),
                    tlb.walks(), faults, counters.anonHugePages() * 4, counters.pageTablePages(), (double) cycles / accesses);
        }
    }

    public static void main(String[] args) {
        long mib = 128;
        int accesses = 500_000;
        long seed = 42;
        for (String a : args) {
            if (a.startsWith("--mib=")) {
                mib = Long.parseLong(a.substring(6));
            } else if (a.startsWith("--accesses=")) {
                accesses = Integer.parseInt(a.substring(11));
            } else if (a.startsWith("--seed=")) {
                seed = Long.parseLong(a.substring(7));
            } else {
                throw new IllegalArgumentException(a + ": expected --mib=N (a multiple of 2), --accesses=N or --seed=N");
            }
        }
        if (mib < 2 || mib % 2 != 0 || mib > 1024) {
            throw new IllegalArgumentException("--mib=" + mib + ": must be an even number of MiB, 2 to 1024");
        }
        Run huge = run(mib * MIB, accesses, seed, Advice.HUGEPAGE);
        Run small = run(mib * MIB, accesses, seed, Advice.NOHUGEPAGE);
        System.out.printf(Locale.ROOT, "%d MiB private anonymous, thp=madvise: one store per 4 KiB page, then %d random"
                + " 8-byte accesses (1 in 4 a store), seed %d%n", mib, accesses, seed);
        System.out.printf(Locale.ROOT, "%-16s %8s %10s %10s %8s %12s %6s %12s%n", "", "accesses", "TLB misses", "walks",
                "faults", "AnonHugePgs", "PT pgs", "cycles/acc");
        System.out.println(huge);
        System.out.println(small);
        System.out.printf(Locale.ROOT, "HUGEPAGE / NOHUGEPAGE: TLB misses %.4f, walks %.4f, faults %.4f, cycles %.3f"
                + " (thp_fault_alloc %d)%n", ratio(huge.tlb.misses(), small.tlb.misses()), ratio(huge.tlb.walks(), small.tlb.walks()),
                ratio(huge.faults, small.faults), ratio(huge.cycles, small.cycles), huge.thpFaultAlloc);
    }

    private static double ratio(long a, long b) {
        return b == 0 ? Double.NaN : (double) a / b;
    }

    /** Runs the trace over {@code bytes} of memory advised {@code advice} on a fresh machine. */
    static Run run(long bytes, int accesses, long seed, Advice advice) {
        Trace t = trace(bytes, accesses, seed);
        try (Machine machine = Machine.builder().node(2L << 30).cpus(1).thp(ThpMode.MADVISE).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(BASE, bytes, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            if (mm.madvise(BASE, bytes, advice) != 0) {
                throw new IllegalStateException("madvise " + advice + " failed");
            }
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.costModel(CostTable.DEFAULT);
            TlbStats before = cpu.stats();
            long faultsBefore = mm.counters().minorFaults();
            cpu.replay(t.ops, t.vas, t.widths, t.values);
            for (int i = 0; i < t.ops.length; i++) { // a store writes its address, so a load reads 0 or its address
                if (t.ops[i] == TraceOp.LOAD && t.values[i] != 0 && t.values[i] != t.vas[i]) {
                    throw new IllegalStateException("access " + i + " read 0x" + Long.toHexString(t.values[i]) + " at 0x"
                            + Long.toHexString(t.vas[i]));
                }
            }
            MmCounters counters = mm.counters();
            return new Run(advice == Advice.HUGEPAGE ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", t.ops.length,
                    cpu.stats().minus(before), counters.minorFaults() - faultsBefore, cpu.cycles(), counters,
                    machine.vmstatSnapshot().get(VmstatCounter.THP_FAULT_ALLOC));
        }
    }

    /** A trace in the parallel arrays {@link Cpu#replay} takes; a store writes its own address. */
    record Trace(byte[] ops, long[] vas, byte[] widths, long[] values) {
    }

    /** One store per 4 KiB page in order, then {@code accesses} random 8-byte loads and stores. */
    static Trace trace(long bytes, int accesses, long seed) {
        int pages = (int) (bytes / 4096);
        int n = pages + accesses;
        byte[] ops = new byte[n];
        long[] vas = new long[n];
        byte[] widths = new byte[n];
        long[] values = new long[n];
        Arrays.fill(widths, (byte) 8);
        Random random = new Random(seed);
        for (int i = 0; i < n; i++) {
            boolean fill = i < pages;
            vas[i] = BASE + (fill ? 4096L * i : random.nextLong(bytes) & ~7L);
            ops[i] = fill || random.nextInt(4) == 0 ? TraceOp.STORE : TraceOp.LOAD;
            values[i] = ops[i] == TraceOp.STORE ? vas[i] : 0;
        }
        return new Trace(ops, vas, widths, values);
    }
}
