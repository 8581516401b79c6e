package org.vmcore.examples;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.CostModel;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.TraceOp;

/**
 * vmcore as the virtual-memory component of a trace-driven timing simulator. Several processes
 * share a 1 GiB hugetlbfs window (2 MiB pages, PMD tables shared) and each has a private heap
 * of 4 KiB pages. A generated trace runs in three phases per process (streaming over the heap,
 * random accesses in the shared window, pointer chasing through a shuffled list in the heap),
 * replayed with {@link Cpu#replay}. A small set-associative data cache is fed with the data
 * accesses and, through a custom {@link CostModel}, with every page-walk reference, so walks
 * through shared tables find each other's lines. Per phase it prints how the TLB translated the
 * accesses and the simulated cycles per access beside the host time.
 *
 * <p>Run: {@code ./run-example TraceSimulator [--processes=4] [--accesses=200000] [--seed=42]}
 */
public final class TraceSimulator {
    static final long GIB = 1L << 30;
    static final long HEAP = 0x10_0000_0000L;
    static final long HEAP_BYTES = 64L << 20;
    static final long WINDOW = 0x40_0000_0000L;

    private TraceSimulator() {
    }

    /** A set-associative cache of 64-byte lines with LRU replacement: hits and misses cost fixed cycles. */
    static final class DataCache {
        static final int HIT_CYCLES = 4;
        static final int MISS_CYCLES = 200;
        private final long[] tags;
        private final long[] stamps;
        private final int ways;
        private final int sets;
        private long clock;
        long hits;
        long misses;

        DataCache(int bytes, int ways) {
            this.ways = ways;
            this.sets = bytes / 64 / ways;
            this.tags = new long[sets * ways];
            this.stamps = new long[sets * ways];
            Arrays.fill(tags, -1);
        }

        /** Looks up the line of physical address {@code pa}, fills it on a miss; returns the cycles. */
        int access(long pa) {
            long line = pa >>> 6;
            int base = (int) (line % sets) * ways;
            int victim = base;
            clock++;
            for (int i = base; i < base + ways; i++) {
                if (tags[i] == line) {
                    stamps[i] = clock;
                    hits++;
                    return HIT_CYCLES;
                }
                if (stamps[i] < stamps[victim]) {
                    victim = i;
                }
            }
            tags[victim] = line;
            stamps[victim] = clock;
            misses++;
            return MISS_CYCLES;
        }
    }

    /** The default latencies, except that a walk reference costs what the data cache says. */
    static final class CachedWalks implements CostModel {
        private final CostTable table = CostTable.DEFAULT;
        private final DataCache cache;

        CachedWalks(DataCache cache) {
            this.cache = cache;
        }

        @Override
        public long l1Hit(PageSize size) {
            return table.l1Hit(size);
        }

        @Override
        public long stlbHit(PageSize size) {
            return table.stlbHit(size);
        }

        @Override
        public long walkReference(PageTableLevel level, long physicalAddress) {
            return cache.access(physicalAddress);
        }

        @Override
        public long fault(FaultResult result, PageSize size) {
            return table.fault(result, size);
        }

        @Override
        public long tlbFlush(boolean all, long pages) {
            return table.tlbFlush(all, pages);
        }

        @Override
        public long shootdownSent(int targets) {
            return table.shootdownSent(targets);
        }

        @Override
        public long shootdownReceived() {
            return table.shootdownReceived();
        }

        @Override
        public long notifierCallback() {
            return table.notifierCallback();
        }

        @Override
        public long pageCopy(long bytes) {
            return table.pageCopy(bytes);
        }
    }

    /** What one phase did, summed over the processes. */
    static final class Phase {
        final String name;
        long accesses;
        long l1;
        long stlb;
        long walks;
        long faults;
        long references;
        long cycles;
        long hostNanos;

        Phase(String name) {
            this.name = name;
        }

        @Override
        public String toString() {
            double n = accesses;
            return String.format(Locale.ROOT, "%-16s %9d accesses  L1 %5.1f%%  STLB %5.1f%%  walks %7d (%.1f refs each)  faults %6d  "
                    + "%7.1f cycles/access  %6.1f ns/access on the host", name, accesses, 100 * l1 / n, 100 * stlb / n, walks,
                    walks == 0 ? 0.0 : (double) references / walks, faults, cycles / n, hostNanos / n);
        }
    }

    public static void main(String[] args) {
        int processes = 4;
        int accesses = 200_000;
        long seed = 42;
        for (String a : args) {
            if (a.startsWith("--processes=")) {
                processes = Integer.parseInt(a.substring(12));
            } else if (a.startsWith("--accesses=")) {
                accesses = Integer.parseInt(a.substring(11));
            } else if (a.startsWith("--seed=")) {
                seed = Long.parseLong(a.substring(7));
            } else {
                throw new IllegalArgumentException(a + ": expected --processes=N, --accesses=N or --seed=N");
            }
        }
        for (Phase p : run(processes, accesses, seed)) {
            System.out.println(p);
        }
    }

    /** Runs the three phases on {@code processes} processes of {@code accesses} accesses each; returns their totals. */
    static List<Phase> run(int processes, int accesses, long seed) {
        Random random = new Random(seed);
        List<Phase> phases = List.of(new Phase("streaming heap"), new Phase("random window"), new Phase("pointer chase"));
        try (Machine machine = Machine.builder().node(4 * GIB).cpus(processes)
                .hugePages(0, PageSize.SIZE_2M, 512).build()) {
            HugetlbFile window = machine.hugetlbfs().create("window", GIB, PageSize.SIZE_2M);
            List<AddressSpace> mms = new ArrayList<>();
            DataCache cache = new DataCache(32 << 10, 8);
            for (int p = 0; p < processes; p++) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(HEAP, HEAP_BYTES, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
                mm.mmap(window, 0, WINDOW, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
                Cpu cpu = machine.cpu(p);
                cpu.switchTo(mm);
                cpu.costModel(new CachedWalks(cache));
                mms.add(mm);
            }
            for (int p = 0; p < processes; p++) {
                Cpu cpu = machine.cpu(p);
                Trace[] traces = new Trace[3];
                for (int ph = 0; ph < 3; ph++) {
                    Phase phase = phases.get(ph);
                    // The chase writes its list before it is traced, unheard.
                    Trace t = ph == 0 ? streaming(accesses) : ph == 1 ? randomWindow(accesses, random) : chase(cpu, accesses, random);
                    traces[ph] = t;
                    cpu.accessListener(o -> heard(phase, o, cache));
                    long start = System.nanoTime();
                    cpu.replay(t.ops, t.vas, t.widths, t.values);
                    phase.hostNanos += System.nanoTime() - start;
                    cpu.accessListener(null);
                }
                Trace chased = traces[2];
                for (int i = 0; i + 1 < accesses; i++) {
                    if (chased.values[i] != chased.vas[i + 1] && (i + 1) % (HEAP_BYTES / 4096) != 0) {
                        throw new IllegalStateException("the chase read 0x" + Long.toHexString(chased.values[i]) + " at step " + i);
                    }
                }
            }
        }
        return phases;
    }

    private static void heard(Phase phase, AccessOutcome o, DataCache cache) {
        phase.accesses++;
        switch (o.translation()) {
            case L1_HIT -> phase.l1++;
            case STLB_HIT -> phase.stlb++;
            case WALK -> phase.walks++;
        }
        phase.faults += o.faults();
        phase.references += o.walkReferences();
        phase.cycles += o.cycles() + cache.access(o.physicalAddress());
    }

    /** A trace in the parallel arrays {@link Cpu#replay} takes. */
    record Trace(byte[] ops, long[] vas, byte[] widths, long[] values) {
        static Trace of(int n) {
            byte[] widths = new byte[n];
            Arrays.fill(widths, (byte) 8);
            return new Trace(new byte[n], new long[n], widths, new long[n]);
        }
    }

    /** A loop that reads and updates the heap a cache line at a time: one store per four loads. */
    static Trace streaming(int n) {
        Trace t = Trace.of(n);
        for (int i = 0; i < n; i++) {
            t.ops[i] = i % 4 == 3 ? TraceOp.STORE : TraceOp.LOAD;
            t.vas[i] = HEAP + (64L * i) % HEAP_BYTES;
            t.values[i] = i;
        }
        return t;
    }

    /** Uniform random loads over the shared window: a TLB-reach test that 2 MiB pages pass. */
    static Trace randomWindow(int n, Random random) {
        Trace t = Trace.of(n);
        for (int i = 0; i < n; i++) {
            t.ops[i] = TraceOp.LOAD;
            t.vas[i] = WINDOW + (random.nextLong(GIB) & ~7L);
        }
        return t;
    }

    /**
     * Pointer chasing: a shuffled cycle of nodes one per 4 KiB page of the heap, written through
     * the CPU, then the trace of loads a chase makes (each load reads the address of the next).
     */
    static Trace chase(Cpu cpu, int n, Random random) {
        int nodes = (int) (HEAP_BYTES / 4096);
        int[] order = new int[nodes];
        for (int i = 0; i < nodes; i++) {
            order[i] = i;
        }
        for (int i = nodes - 1; i > 0; i--) {
            int j = random.nextInt(i + 1);
            int x = order[i];
            order[i] = order[j];
            order[j] = x;
        }
        long[] at = new long[nodes];
        long[] next = new long[nodes];
        for (int i = 0; i < nodes; i++) {
            at[i] = HEAP + 4096L * order[i] + 128;
            next[i] = HEAP + 4096L * order[(i + 1) % nodes] + 128;
        }
        cpu.storeAll(at, 8, next);
        Trace t = Trace.of(n);
        for (int i = 0; i < n; i++) {
            t.ops[i] = TraceOp.LOAD;
            t.vas[i] = at[i % nodes];
        }
        return t;
    }
}
