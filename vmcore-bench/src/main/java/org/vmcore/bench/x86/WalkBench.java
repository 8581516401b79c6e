package org.vmcore.bench.x86;

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
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;

/**
 * One hardware walk (a TLB miss) over 1 Mi mapped 4 KiB pages, in address order and in a
 * random order, under 4-level paging. Compare with {@code src/main/c/radix_walk.c}.
 */
@State(Scope.Thread)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class WalkBench {
    private static final int PAGES = 1 << 20;

    @Param({"sequential", "random"})
    public String order;

    private MappedTables tables;
    private Walker walker;
    private final WalkResult out = new WalkResult();
    private long[] addresses;
    private int next;

    @Setup
    public void setUp() {
        tables = new MappedTables(8L << 30, PagingMode.FOUR_LEVEL);
        tables.map(PAGES, PageSize.SIZE_4K);
        walker = new Walker(tables.memory);
        addresses = MappedTables.addresses(PAGES, PageSize.SIZE_4K, order.equals("random"), 42);
        if (!walker.walk(tables.table, addresses[0], PageFaultCode.USER, out)) {
            throw new IllegalStateException("setup: the first walk fails: " + out);
        }
    }

    @TearDown
    public void tearDown() {
        tables.memory.close();
    }

    @Benchmark
    public long walk4k() {
        long va = addresses[next];
        next = (next + 1) & (PAGES - 1);
        walker.walk(tables.table, va, PageFaultCode.USER, out);
        return out.physicalAddress();
    }

    /**
     * 1024 walks per call, the way {@code radix_walk.c} measures: a loop of independent walks
     * over consecutive elements of the address array, with no harness work between them; time
     * per walk.
     */
    @Benchmark
    @OperationsPerInvocation(1024)
    public long walk4kLoop() {
        long sum = 0;
        int from = next & (PAGES - 1024); // a whole chunk inside the array: the loop keeps no index check
        for (int n = from; n < from + 1024; n++) {
            walker.walk(tables.table, addresses[n], PageFaultCode.USER, out);
            sum += out.physicalAddress();
        }
        next = (from + 1024) & (PAGES - 1);
        return sum;
    }
}
