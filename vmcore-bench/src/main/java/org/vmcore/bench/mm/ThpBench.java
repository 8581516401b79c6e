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
import org.vmcore.api.Advice;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;

/**
 * Transparent huge pages, per 2 MiB page, with their references in the same class so that one run
 * gives the ratios:
 * <ul>
 *   <li>{@code thpFault}: a write fault of a private anonymous range advised MADV_HUGEPAGE
 *       (do_huge_pmd_anonymous_page: a zeroed order-9 folio from the buddy allocator, a PTE table
 *       deposited, one PMD entry), against {@code hugetlbFault}, the same setup as
 *       {@link HugetlbBench#hugetlbFaultNewPrivatePage} (a new page of a private hugetlbfs
 *       mapping, from the pool); target: THP fault ≤ 2 × hugetlb fault.</li>
 *   <li>{@code splitPmdDontneed4k}: madvise(MADV_DONTNEED) of the 4 KiB page 1 MiB into a
 *       mapped huge page: the madvise call (mmap_lock for read, VMA lookup, the notifier bracket
 *       of the range), split_huge_pmd (its own notifier bracket, the PMD lock, 512 PTEs from the
 *       deposited table, 512 mapcounts and the folio's references, a flush of the 2 MiB range on
 *       the CPUs of the mm, none here), then the zap of that one PTE and its one-page flush, and
 *       the folio queued for deferred split. No VMA changes. Target: split &lt; 5 µs.
 *       {@code dontneed4kNoSplit} is the same call on a 4 KiB-mapped range (MADV_NOHUGEPAGE), so the
 *       difference of the two is the split alone.</li>
 *   <li>{@code splitPmdMprotect4k}: mprotect(PROT_READ) of that 4 KiB page instead, which also
 *       cuts the VMA in three (each invocation adds two VMAs per huge page).</li>
 *   <li>{@code collapse}: MADV_COLLAPSE of one 2 MiB range of 512 written 4 KiB pages: a new
 *       huge page, 512 pages copied and freed, the PTE table kept as the deposit.</li>
 * </ul>
 * Every invocation gets fresh mappings from an untimed setup (mapped and, where the benchmark
 * needs it, faulted) and loses them in an untimed teardown.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class ThpBench {
    static final long GIB = 1L << 30;
    static final long MIB2 = 2L << 20;
    static final long VA = 0x7000_0000_0000L; // 1 GiB-aligned
    static final int FAULT_PAGES = 256;
    static final int SPLIT_PAGES = 64;
    static final int COLLAPSE_PAGES = 16;
    static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    /** A machine in THP mode madvise with one address space, which each invocation replaces. */
    public abstract static class Env {
        Machine machine;
        AddressSpace mm;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(2 * GIB).thp(ThpMode.MADVISE).build();
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }

        @TearDown(Level.Invocation)
        public void exit() {
            try {
                verify();
            } finally {
                mm.close();
            }
        }

        /** Checks, untimed, that the invocation did what its benchmark says. */
        void verify() {
        }

        void expectAnonHugePages(long pages) {
            long huge = mm.counters().anonHugePages();
            if (huge != pages) {
                throw new IllegalStateException("AnonHugePages " + huge + ", expected " + pages);
            }
        }

        /** A new address space with {@code pages} × 2 MiB mapped and advised, faulted by writes if {@code write}. */
        void map(int pages, Advice advice, boolean write) {
            mm = machine.createAddressSpace();
            mm.mmap(VA, pages * MIB2, Protection.READ_WRITE, ANON);
            check(mm.madvise(VA, pages * MIB2, advice), advice);
            if (write) {
                long step = advice == Advice.HUGEPAGE ? MIB2 : 4096;
                for (long va = VA; va < VA + pages * MIB2; va += step) {
                    mm.fault(va, Access.WRITE);
                }
                expectAnonHugePages(advice == Advice.HUGEPAGE ? pages * 512L : 0);
            }
        }
    }

    static void check(int rc, Advice advice) {
        if (rc != 0) {
            throw new IllegalStateException("madvise " + advice + " returned " + rc);
        }
    }

    /** 256 × 2 MiB advised MADV_HUGEPAGE, not faulted. */
    @State(Scope.Thread)
    public static class Unfaulted extends Env {
        @Setup(Level.Invocation)
        public void map() {
            map(FAULT_PAGES, Advice.HUGEPAGE, false);
        }

        @Override
        void verify() {
            expectAnonHugePages(FAULT_PAGES * 512L);
        }
    }

    /** 64 huge pages, written. */
    @State(Scope.Thread)
    public static class HugeMapped extends Env {
        @Setup(Level.Invocation)
        public void map() {
            map(SPLIT_PAGES, Advice.HUGEPAGE, true);
        }

        @Override
        void verify() {
            expectAnonHugePages(0);
        }
    }

    /** 64 × 2 MiB advised MADV_NOHUGEPAGE, every 4 KiB page written. */
    @State(Scope.Thread)
    public static class SmallMapped extends Env {
        @Setup(Level.Invocation)
        public void map() {
            map(SPLIT_PAGES, Advice.NOHUGEPAGE, true);
        }
    }

    /** 16 × 2 MiB not advised (4 KiB pages in madvise mode), every 4 KiB page written. */
    @State(Scope.Thread)
    public static class Collapsible extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mm = machine.createAddressSpace();
            mm.mmap(VA, COLLAPSE_PAGES * MIB2, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            expectAnonHugePages(0);
        }

        @Override
        void verify() {
            expectAnonHugePages(COLLAPSE_PAGES * 512L);
        }
    }

    /**
     * As {@link HugetlbBench.PrivateMapping}: a 1 GiB hugetlbfs file an owner populated; each
     * invocation maps 256 of its pages privately.
     */
    @State(Scope.Thread)
    public static class HugetlbPrivate {
        Machine machine;
        HugetlbFile file;
        AddressSpace sharer;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 1100).build();
            file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace owner = machine.createAddressSpace();
            owner.mmap(file, 0, HugetlbBench.OWNER_VA, GIB, Protection.READ_WRITE,
                    MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }

        @Setup(Level.Invocation)
        public void map() {
            sharer = machine.createAddressSpace();
            sharer.mmap(file, 0, HugetlbBench.SHARER_VA, FAULT_PAGES * MIB2, Protection.READ_WRITE,
                    MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        }

        @TearDown(Level.Invocation)
        public void exit() {
            sharer.close();
        }
    }

    /** A write fault that maps a new transparent huge page (thp_fault_alloc). */
    @Benchmark
    @OperationsPerInvocation(FAULT_PAGES)
    public FaultResult thpFault(Unfaulted s) {
        FaultResult r = null;
        for (long va = VA; va < VA + FAULT_PAGES * MIB2; va += MIB2) {
            r = s.mm.fault(va, Access.WRITE);
        }
        return r;
    }

    /** The reference for {@link #thpFault}: {@link HugetlbBench#hugetlbFaultNewPrivatePage}'s fault. */
    @Benchmark
    @OperationsPerInvocation(FAULT_PAGES)
    public FaultResult hugetlbFault(HugetlbPrivate s) {
        FaultResult r = null;
        for (long va = HugetlbBench.SHARER_VA; va < HugetlbBench.SHARER_VA + FAULT_PAGES * MIB2; va += MIB2) {
            r = s.sharer.fault(va, Access.WRITE);
        }
        return r;
    }

    /** split_huge_pmd by MADV_DONTNEED of one 4 KiB page in the middle of each huge page. */
    @Benchmark
    @OperationsPerInvocation(SPLIT_PAGES)
    public int splitPmdDontneed4k(HugeMapped s) {
        int rc = 0;
        for (long va = VA + MIB2 / 2; va < VA + SPLIT_PAGES * MIB2; va += MIB2) {
            rc |= s.mm.madvise(va, 4096, Advice.DONTNEED);
        }
        return rc;
    }

    /** The same MADV_DONTNEED of one 4 KiB page where 4 KiB pages map it: no split. */
    @Benchmark
    @OperationsPerInvocation(SPLIT_PAGES)
    public int dontneed4kNoSplit(SmallMapped s) {
        int rc = 0;
        for (long va = VA + MIB2 / 2; va < VA + SPLIT_PAGES * MIB2; va += MIB2) {
            rc |= s.mm.madvise(va, 4096, Advice.DONTNEED);
        }
        return rc;
    }

    /** split_huge_pmd by mprotect(PROT_READ) of one 4 KiB page in the middle of each huge page (the VMA is cut too). */
    @Benchmark
    @OperationsPerInvocation(SPLIT_PAGES)
    public void splitPmdMprotect4k(HugeMapped s) {
        for (long va = VA + MIB2 / 2; va < VA + SPLIT_PAGES * MIB2; va += MIB2) {
            s.mm.mprotect(va, 4096, Protection.READ);
        }
    }

    /** MADV_COLLAPSE of one 2 MiB range of 512 written 4 KiB pages (thp_collapse_alloc). */
    @Benchmark
    @OperationsPerInvocation(COLLAPSE_PAGES)
    public int collapse(Collapsible s) {
        int rc = 0;
        for (long va = VA; va < VA + COLLAPSE_PAGES * MIB2; va += MIB2) {
            rc |= s.mm.madvise(va, MIB2, Advice.COLLAPSE);
        }
        return rc;
    }
}
