package org.vmcore.bench.migrate;

import java.util.ArrayList;
import java.util.List;
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
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.UnmapResult;

/**
 * try_to_migrate of one page (the unmap half of a migration): a 2 MiB page behind a PMD table
 * shared by 1, 8 or 64 processes (all but the last are unshared), a 4 KiB anonymous page mapped
 * by 1, 8 or 64 processes after fork, and a 2 MiB page mapped without sharing by 8 processes.
 * Between invocations, untimed, the migration entries are removed and the sharers fault again
 * (sharing the table again), so every invocation starts from the same state. Each process has
 * run on a CPU, so each flush reaches one CPU.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class TryToMigrateBench {
    static final long GIB = 1L << 30;

    /** Which kind of page and mappings. */
    public enum Layout { SHARED_PMD_2M, FORKED_ANON_4K }

    /** The machine, the page, and every address space mapping it. */
    @State(Scope.Thread)
    public static class Pages {
        @Param({"1", "8", "64"})
        public int mappers;

        @Param({"SHARED_PMD_2M", "FORKED_ANON_4K"})
        public Layout layout;

        Machine machine;
        final List<AddressSpace> spaces = new ArrayList<>();
        final List<Long> addresses = new ArrayList<>();
        long pfn;

        @Setup(Level.Trial)
        public void build() {
            machine = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 520).build();
            if (layout == Layout.SHARED_PMD_2M) {
                HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
                for (int i = 0; i < mappers; i++) {
                    AddressSpace mm = machine.createAddressSpace();
                    mm.mmap(file, 0, (8L + i) * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
                    spaces.add(mm);
                    addresses.add((8L + i) * GIB);
                }
            } else {
                AddressSpace root = machine.createAddressSpace();
                long va = root.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS
                        | MapFlags.MAP_POPULATE);
                spaces.add(root);
                addresses.add(va);
                for (int i = 1; i < mappers; i++) {
                    spaces.add(root.fork());
                    addresses.add(va);
                }
            }
            for (AddressSpace mm : spaces) {
                machine.cpu(0).switchTo(mm);
                machine.cpu(0).load(addresses.get(spaces.indexOf(mm)), 8);
            }
            pfn = spaces.getFirst().pageAt(addresses.getFirst());
        }

        @TearDown(Level.Invocation)
        public void restore() {
            machine.rmap().removeMigrationEntries(pfn, pfn);
            for (int i = 0; i < spaces.size(); i++) {
                spaces.get(i).fault(addresses.get(i), Access.READ); // unshared sharers share again
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    @Benchmark
    public UnmapResult tryToMigrate(Pages p) {
        return p.machine.rmap().tryToMigrate(p.pfn);
    }

    /** A 2 MiB page that 8 processes map through their own PMD tables (their mappings are under 1 GiB). */
    @State(Scope.Thread)
    public static class Unshared {
        Machine machine;
        long pfn;

        @Setup(Level.Trial)
        public void build() {
            machine = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 64).build();
            HugetlbFile file = machine.hugetlbfs().create("f", 64L << 20, PageSize.SIZE_2M);
            for (int i = 0; i < 8; i++) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(file, 0, (8L + i) * GIB, 64L << 20, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
                machine.cpu(0).switchTo(mm);
                machine.cpu(0).load((8L + i) * GIB, 8);
            }
            pfn = file.pageAt(0);
        }

        @TearDown(Level.Invocation)
        public void restore() {
            machine.rmap().removeMigrationEntries(pfn, pfn);
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    @Benchmark
    public UnmapResult tryToMigrateUnshared2mBy8(Unshared u) {
        return u.machine.rmap().tryToMigrate(u.pfn);
    }
}
