package org.vmcore.bench.migrate;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/**
 * Whole migrations: move_pages(2) of one 4 KiB or 2 MiB page to the other node (each invocation
 * moves it the other way), and migrate_pages(2) of a 1 GiB hugetlb window whose every 4 KiB frame
 * was written, next to a plain off-heap copy of 1 GiB in the same run for the memory bandwidth.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class MovePagesBench {
    static final long GIB = 1L << 30;

    /** One page of the given size, touched, on node 0 or 1. */
    @State(Scope.Thread)
    public static class OnePage {
        @Param({"SIZE_4K", "SIZE_2M"})
        public PageSize size;

        Machine machine;
        AddressSpace mm;
        long va;
        int target = 1;

        @Setup(Level.Trial)
        public void build() {
            machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 8)
                    .hugePages(1, PageSize.SIZE_2M, 8).build();
            mm = machine.createAddressSpace();
            if (size == PageSize.SIZE_4K) {
                va = mm.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            } else {
                HugetlbFile file = machine.hugetlbfs().create("f", 2L << 20, PageSize.SIZE_2M);
                va = mm.mmap(file, 0, 0, 2L << 20, Protection.READ_WRITE, MapFlags.MAP_SHARED);
            }
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(va, 8, 1);
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.NANOSECONDS)
    public MovePagesResult movePages(OnePage p) {
        MovePagesResult r = p.machine.migration().movePages(p.mm, new long[] {p.va}, new int[] {p.target},
                MigrationService.MPOL_MF_MOVE);
        p.target = 1 - p.target;
        return r;
    }

    /** A shared 1 GiB window with every 4 KiB frame written, migrated between the nodes. */
    @State(Scope.Thread)
    public static class Window {
        Machine machine;
        AddressSpace mm;
        int from;

        @Setup(Level.Trial)
        public void build() {
            machine = Machine.builder().node(3 * GIB).node(3 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 520)
                    .hugePages(1, PageSize.SIZE_2M, 520).build();
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            mm = machine.createAddressSpace();
            mm.mmap(file, 0, 8 * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            for (long off = 0; off < GIB; off += 4096) {
                cpu.store(8 * GIB + off, 8, off);
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Warmup(iterations = 2, time = 2)
    @Measurement(iterations = 5, time = 2)
    public int migrate1GiBWindow(Window w) {
        int failed = w.machine.migration().migratePages(w.mm, new int[] {w.from}, new int[] {1 - w.from},
                MigrationService.MPOL_MF_MOVE);
        w.from = 1 - w.from;
        return failed;
    }

    /** Two off-heap 1 GiB buffers, to measure plain copy bandwidth next to the migration. */
    @State(Scope.Thread)
    public static class Buffers {
        Arena arena;
        MemorySegment a;
        MemorySegment b;

        @Setup(Level.Trial)
        public void allocate() {
            arena = Arena.ofShared();
            a = arena.allocate(GIB, 4096);
            b = arena.allocate(GIB, 4096);
            a.fill((byte) 1);
            b.fill((byte) 2);
        }

        @TearDown(Level.Trial)
        public void free() {
            arena.close();
        }
    }

    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Warmup(iterations = 2, time = 2)
    @Measurement(iterations = 5, time = 2)
    public void plainCopy1GiB(Buffers buffers) {
        MemorySegment.copy(buffers.a, 0, buffers.b, 0, GIB);
    }

    /**
     * The same 1 GiB copied 4 KiB at a time, as migration copies frames: the floor for a copy
     * made page by page (one large copy may use stores that bypass the cache, page-sized ones
     * do not).
     */
    @Benchmark
    @OutputTimeUnit(TimeUnit.MILLISECONDS)
    @Warmup(iterations = 2, time = 2)
    @Measurement(iterations = 5, time = 2)
    public void plainCopy1GiBBy4K(Buffers buffers) {
        for (long off = 0; off < GIB; off += 4096) {
            MemorySegment.copy(buffers.a, off, buffers.b, off, 4096);
        }
    }
}
