package org.vmcore.bench.mm;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationService;
import org.vmcore.api.Protection;

/**
 * Whether a migration stops the world: one thread faults in its address space (the 16 MiB
 * region of {@link AnonBench}, 4096 write faults per invocation, mmap before and munmap after
 * untimed) while another migrates the pages of a second address space between the two nodes,
 * one {@code move_pages} call per page. The score of {@code beside:faults} over
 * {@code faultsAlone}, from the same run, is the share of fault throughput left beside the
 * migrations: with migration under the machine lock held exclusive each migration stops the
 * faults; under the folio lock only, the two threads meet only in the allocators.
 * {@code beside:migrations} is the migration rate beside the faults (pages per millisecond).
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class MigrationBesideFaultsBench {
    /** Pages of the migrating address space. */
    static final int MIGRATING_PAGES = 256;
    static final long MIGRATING_VA = 0x7000_0000_0000L;

    @State(Scope.Benchmark)
    public static class Shared {
        Machine machine;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(1L << 30).node(1L << 30).cpus(2).build();
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    /** The faulting thread's address space, with an unpopulated region before each invocation. */
    @State(Scope.Thread)
    public static class Faulting {
        AddressSpace mm;

        @Setup(Level.Trial)
        public void create(Shared shared) {
            mm = shared.machine.createAddressSpace();
        }

        @Setup(Level.Invocation)
        public void map() {
            mm.mmap(AnonBench.VA, AnonBench.LENGTH, Protection.READ_WRITE, AnonBench.ANON);
        }

        @TearDown(Level.Invocation)
        public void unmap() {
            mm.munmap(AnonBench.VA, AnonBench.LENGTH);
        }
    }

    /** The migrating thread's address space: populated pages it moves to the other node in turn. */
    @State(Scope.Thread)
    public static class Migrating {
        MigrationService migration;
        AddressSpace mm;
        final long[] address = new long[1];
        final int[] node = new int[1];
        final int[] nodeOf = new int[MIGRATING_PAGES];
        int next;

        @Setup(Level.Trial)
        public void create(Shared shared) {
            migration = shared.machine.migration();
            mm = shared.machine.createAddressSpace();
            mm.mmap(MIGRATING_VA, MIGRATING_PAGES * 4096L, Protection.READ_WRITE, AnonBench.ANON);
            for (int i = 0; i < MIGRATING_PAGES; i++) {
                mm.fault(MIGRATING_VA + i * 4096L, Access.WRITE);
            }
        }
    }

    @Benchmark
    @Threads(1)
    public void faultsAlone(Faulting f) {
        fault(f);
    }

    @Benchmark
    @Group("beside")
    @GroupThreads(1)
    public void faults(Faulting f) {
        fault(f);
    }

    @Benchmark
    @Group("beside")
    @GroupThreads(1)
    public int migrations(Migrating m) {
        int i = m.next;
        m.next = (i + 1) % MIGRATING_PAGES;
        m.address[0] = MIGRATING_VA + i * 4096L;
        m.node[0] = m.nodeOf[i] = 1 - m.nodeOf[i];
        return m.migration.movePages(m.mm, m.address, m.node, MigrationService.MPOL_MF_MOVE).status(0);
    }

    private static void fault(Faulting f) {
        for (long va = AnonBench.VA; va < AnonBench.VA + AnonBench.LENGTH; va += 4096) {
            f.mm.fault(va, Access.WRITE);
        }
    }
}
