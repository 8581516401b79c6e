package org.vmcore.bench.x86;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;

/** One hardware walk ending at a 2 MiB (PMD) or 1 GiB (PUD) leaf, random order over 4096 pages. */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class HugeWalkBench {
    private static final int PAGES = 4096;

    @Param({"SIZE_2M", "SIZE_1G"})
    public PageSize size;

    private MappedTables tables;
    private Walker walker;
    private final WalkResult out = new WalkResult();
    private long[] addresses;
    private int next;

    @Setup
    public void setUp() {
        tables = new MappedTables(8L << 30, PagingMode.FOUR_LEVEL);
        tables.map(PAGES, size);
        walker = new Walker(tables.memory);
        addresses = MappedTables.addresses(PAGES, size, true, 42);
        if (!walker.walk(tables.table, addresses[0], PageFaultCode.USER, out)) {
            throw new IllegalStateException("setup: the first walk fails: " + out);
        }
    }

    @TearDown
    public void tearDown() {
        tables.memory.close();
    }

    @Benchmark
    public long walkHuge() {
        long va = addresses[next];
        next = (next + 1) & (PAGES - 1);
        walker.walk(tables.table, va, PageFaultCode.USER, out);
        return out.physicalAddress();
    }
}
