package org.vmcore.bench.x86;

import static org.vmcore.x86.pgtable.Level.PTE;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.PageTable;

/**
 * PageTable.map and PageTable.unmap per 4 KiB page, in batches of 4096 pages (16 MiB) so the
 * untimed per-invocation setup is small against the timed work. Tables stay allocated between
 * batches, as in a process that maps and unmaps the same region.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class MapUnmapBench {
    static final int BATCH = 4096;

    /** A region that is empty before each timed map. */
    @State(Scope.Thread)
    public static class Empty {
        MappedTables tables;
        long pfn;

        @Setup(Level.Trial)
        public void setUp() {
            tables = new MappedTables(1L << 30, PagingMode.FOUR_LEVEL);
            pfn = tables.memory.allocate(0, 0, true);
        }

        @Setup(Level.Invocation)
        public void clear() {
            PageTable table = tables.table;
            if (table.entry(MappedTables.BASE, PTE) != 0) {
                for (int i = 0; i < BATCH; i++) {
                    table.unmap(MappedTables.BASE + ((long) i << 12), PageSize.SIZE_4K);
                }
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            tables.memory.close();
        }
    }

    /** A region that is fully mapped before each timed unmap. */
    @State(Scope.Thread)
    public static class Full {
        MappedTables tables;
        long pfn;

        @Setup(Level.Trial)
        public void setUp() {
            tables = new MappedTables(1L << 30, PagingMode.FOUR_LEVEL);
            pfn = tables.memory.allocate(0, 0, true);
        }

        @Setup(Level.Invocation)
        public void fill() {
            PageTable table = tables.table;
            if (table.entry(MappedTables.BASE, PTE) == 0) {
                for (int i = 0; i < BATCH; i++) {
                    table.map(MappedTables.BASE + ((long) i << 12), pfn, PageSize.SIZE_4K, MappedTables.USER_RW);
                }
            }
        }

        @TearDown(Level.Trial)
        public void tearDown() {
            tables.memory.close();
        }
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public void map4k(Empty state) {
        PageTable table = state.tables.table;
        for (int i = 0; i < BATCH; i++) {
            table.map(MappedTables.BASE + ((long) i << 12), state.pfn, PageSize.SIZE_4K, MappedTables.USER_RW);
        }
    }

    @Benchmark
    @OperationsPerInvocation(BATCH)
    public long unmap4k(Full state) {
        PageTable table = state.tables.table;
        long sum = 0;
        for (int i = 0; i < BATCH; i++) {
            sum += table.unmap(MappedTables.BASE + ((long) i << 12), PageSize.SIZE_4K);
        }
        return sum;
    }
}
