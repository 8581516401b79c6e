package org.vmcore.bench.x86;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.Pte;

/**
 * The Java floor for {@link WalkBench}: the same 4-level tree (built by vmcore's
 * {@code PageTable}, then copied table by table into one flat segment, frame i at i * 4096) walked
 * by a loop as bare as {@code radix_walk.c}: present bit only, no permissions, no A/D, no result
 * record. It shows what {@code java.lang.foreign} costs against C on the same machine, apart from
 * everything vmcore's walker does on top.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class FlatWalkBench {
    private static final int PAGES = 1 << 20;
    private static final ValueLayout.OfLong ENTRY = ValueLayout.JAVA_LONG;

    @Param({"sequential", "random"})
    public String order;

    private Arena arena;
    private MemorySegment flat;
    private long[] addresses;
    private int next;

    @Setup
    public void setUp() {
        MappedTables tables = new MappedTables(8L << 30, PagingMode.FOUR_LEVEL);
        tables.map(PAGES, PageSize.SIZE_4K);
        addresses = MappedTables.addresses(PAGES, PageSize.SIZE_4K, order.equals("random"), 42);
        // Number the tables breadth first from the root, then copy each with its child pointers renumbered.
        List<Long> pfns = new ArrayList<>();
        List<Integer> levels = new ArrayList<>();
        Map<Long, Long> number = new HashMap<>();
        pfns.add(tables.table.cr3() >>> 12);
        levels.add(0);
        number.put(pfns.get(0), 0L);
        for (int i = 0; i < pfns.size(); i++) {
            if (levels.get(i) == 3) {
                continue;
            }
            long table = pfns.get(i) << 12;
            for (int slot = 0; slot < 512; slot++) {
                long e = tables.memory.contents().read(table + slot * 8L, 8);
                if ((e & Pte.PRESENT) != 0 && number.putIfAbsent(Pte.pfn(e), (long) pfns.size()) == null) {
                    pfns.add(Pte.pfn(e));
                    levels.add(levels.get(i) + 1);
                }
            }
        }
        arena = Arena.ofShared();
        flat = arena.allocate(pfns.size() * 4096L, 4096);
        for (int i = 0; i < pfns.size(); i++) {
            long table = pfns.get(i) << 12;
            for (int slot = 0; slot < 512; slot++) {
                long e = tables.memory.contents().read(table + slot * 8L, 8);
                if (levels.get(i) < 3 && (e & Pte.PRESENT) != 0) {
                    e = (e & ~Pte.PFN_MASK) | (number.get(Pte.pfn(e)) << 12);
                }
                flat.set(ENTRY, i * 4096L + slot * 8L, e);
            }
        }
        tables.memory.close();
    }

    @TearDown
    public void tearDown() {
        arena.close();
    }

    /** 1024 walks per call, time per walk, as {@code WalkBench.walk4kLoop} and the C loop. */
    @Benchmark
    @OperationsPerInvocation(1024)
    public long flatJavaLoop() {
        long sum = 0;
        int n = next;
        for (int k = 0; k < 1024; k++) {
            long va = addresses[n];
            n = (n + 1) & (PAGES - 1);
            long table = 0;
            long e = 0;
            for (int shift = 39; shift >= 12; shift -= 9) {
                e = flat.get(ENTRY, (table << 12) + (((va >>> shift) & 511) << 3));
                if ((e & Pte.PRESENT) == 0) {
                    e = -1;
                    break;
                }
                table = (e & Pte.PFN_MASK) >>> 12;
            }
            sum += (e & Pte.PFN_MASK) | (va & 0xfff);
        }
        next = n;
        return sum;
    }
}
