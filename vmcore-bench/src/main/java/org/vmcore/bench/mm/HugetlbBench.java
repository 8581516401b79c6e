package org.vmcore.bench.mm;

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
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/**
 * hugetlb with 2 MiB pages around one 1 GiB window that an owner has populated: a write fault
 * per huge page of a private mapping (a new page from the pool); a sharer's first fault, which
 * shares the owner's PMD table; and munmap of the whole shared window by one sharer, which
 * unshares it. The sharer is created and mapped before each invocation and exits after it,
 * untimed.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class HugetlbBench {
    static final long GIB = 1L << 30;
    static final long MIB2 = 2L << 20;
    static final long OWNER_VA = 4 * GIB;
    static final long SHARER_VA = 8 * GIB;
    static final int PRIVATE_PAGES = 256;

    /** The machine, the file and the owner that populated the window. */
    public abstract static class Env {
        Machine machine;
        HugetlbFile file;
        AddressSpace sharer;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 1100).build();
            file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace owner = machine.createAddressSpace();
            owner.mmap(file, 0, OWNER_VA, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }

        @TearDown(Level.Invocation)
        public void exitSharer() {
            sharer.close();
        }

        void mapSharer(int flags, long length) {
            sharer = machine.createAddressSpace();
            sharer.mmap(file, 0, SHARER_VA, length, Protection.READ_WRITE, flags | MapFlags.MAP_FIXED);
        }
    }

    /** A sharer that has mapped the window but not faulted. */
    @State(Scope.Thread)
    public static class FreshSharer extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mapSharer(MapFlags.MAP_SHARED, GIB);
        }
    }

    /** A sharer that has faulted once and so shares the owner's table. */
    @State(Scope.Thread)
    public static class SharingSharer extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mapSharer(MapFlags.MAP_SHARED, GIB);
            if (sharer.fault(SHARER_VA, Access.READ) != FaultResult.SHARED_TABLE) {
                throw new IllegalStateException("the sharer did not share the table");
            }
        }
    }

    /** A private mapping of 256 huge pages, not yet faulted. */
    @State(Scope.Thread)
    public static class PrivateMapping extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mapSharer(MapFlags.MAP_PRIVATE, PRIVATE_PAGES * MIB2);
        }
    }

    @Benchmark
    @OperationsPerInvocation(PRIVATE_PAGES)
    public void hugetlbFaultNewPrivatePage(PrivateMapping s) {
        for (long va = SHARER_VA; va < SHARER_VA + PRIVATE_PAGES * MIB2; va += MIB2) {
            s.sharer.fault(va, Access.WRITE);
        }
    }

    @Benchmark
    public FaultResult sharerFirstFaultSharesTable(FreshSharer s) {
        return s.sharer.fault(SHARER_VA + 6 * MIB2, Access.READ);
    }

    @Benchmark
    public void munmapSharedWindowUnshares(SharingSharer s) {
        s.sharer.munmap(SHARER_VA, GIB);
    }
}
