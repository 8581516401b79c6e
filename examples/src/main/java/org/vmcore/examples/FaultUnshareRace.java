package org.vmcore.examples;

import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;

/**
 * The race of "hugetlbfs: use i_mmap_rwsem for more pmd sharing synchronization" (c0d0381ade79,
 * 2020; today's kernels hold the hugetlb VMA lock of 40549ba8f8e0 instead), replayed step by step
 * with a {@link RacePause}, once without the fix and once with it. Processes A and B map one
 * 1 GiB hugetlbfs file at 1 GiB-aligned addresses; B has faulted a page, so it has a PMD table
 * for the window. A write-faults page 0: huge_pte_alloc shares B's table, and the fault stops at
 * {@link RacePoint#HUGETLB_FAULT_AFTER_PTE_ALLOC}, before it takes the table's lock. A truncate
 * of the file then unshares every window (hugetlb_vmdelete_list, huge_pmd_unshare).
 *
 * <p>With the fix the fault holds the lock that keeps its table from being unshared, so the
 * truncate waits for it (and, once it runs, unshares B's window only; A keeps the table); B
 * unmaps afterwards and nothing is wrong. Without it the truncate
 * unshares A at once, B unmaps the file and, as the table's last user, frees it; A's fault then
 * writes its entry through the freed table. The fault reports a new page that A cannot reach
 * ({@code translate} gives -1), and the invariant checker names the page whose mapcount no page
 * table explains.
 *
 * <p>Run: {@code ./run-example FaultUnshareRace [--regression=pre-c0d0381a|none]}
 */
public final class FaultUnshareRace {
    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;
    private static final long A = 16 * GIB;
    private static final long B = 18 * GIB;

    private FaultUnshareRace() {
    }

    public static void main(String[] args) {
        RegressionStory.tell("FaultUnshareRace", "pre-c0d0381a", args, FaultUnshareRace::run,
                "invariant violations: %d without the fix, %d with it");
    }

    /** Replays the race once; returns the invariant violations found afterwards. */
    static long run(boolean regression) {
        Machine.Builder builder = RegressionStory.telling(Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 600),
                Regression.PRE_C0D0381A, regression);
        try (Machine machine = builder.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
            a.mmap(file, 0, A, GIB, Protection.READ_WRITE, shared);
            b.mmap(file, 0, B, GIB, Protection.READ_WRITE, shared);
            b.fault(B + 2 * MIB, Access.WRITE);
            long table = pmdTable(b, B);
            System.out.printf("A and B map the 1 GiB file; B faulted page 1, so B has a PMD table for its window (pfn 0x%x)%n",
                    table);

            RacePause pause = RacePause.arm(machine, RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC);
            AtomicReference<FaultResult> result = new AtomicReference<>();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread fault = RegressionStory.start("A-fault", failure, () -> result.set(a.fault(A, Access.WRITE)));
            Thread truncate = null;
            boolean waited;
            try {
                RegressionStory.arrive(pause);
                System.out.printf("step 1: A write-faults page 0; huge_pte_alloc shares B's table (A's PUD %s) and the"
                        + " fault stops at %s, before the table lock%n", pud(a, A), RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC);
                truncate = RegressionStory.start("truncate", failure, () -> file.truncate(512 * MIB));
                waited = RegressionStory.blockedOrDone(truncate);
                if (waited) {
                    System.out.printf("step 2: the file is truncated to 512 MiB, which unshares the windows: the truncate"
                            + " thread is %s, blocked until A's fault is done%n", truncate.getState());
                } else {
                    System.out.printf("step 2: the file is truncated to 512 MiB: nothing held it back, it unshared A's"
                            + " window (A's PUD %s)%n", pud(a, A));
                    b.munmap(B, GIB);
                    System.out.printf("step 3: B unmaps the file: B was the table's last user, the table at pfn 0x%x is freed"
                            + " (refcount %d)%n", table, machine.page(table).refcount());
                }
                System.out.println("step " + (waited ? 3 : 4) + ": A's fault resumes");
            } finally {
                pause.disarm();
                RegressionStory.join(failure, fault, truncate);
            }
            if (waited) {
                System.out.printf("step 4: the fault is done, then the truncate runs: B's PUD %s, A's PUD %s%n", pud(b, B), pud(a, A));
                b.munmap(B, GIB);
                System.out.printf("step 5: B unmaps the file; the table at pfn 0x%x is A's (refcount %d, A's PUD %s)%n", table,
                        machine.page(table).refcount(), pud(a, A));
            }
            long pa = a.translate(A);
            System.out.printf("A's fault returned %s; A's translate(va) = %s; page 0 (pfn 0x%x) has mapcount %d%n", result.get(),
                    pa < 0 ? "-1" : "0x" + Long.toHexString(pa), file.pageAt(0), machine.page(file.pageAt(0)).mapcount());
            List<String> violations = machine.checkInvariants();
            System.out.println("invariant checker:" + (violations.isEmpty() ? " clean" : ""));
            violations.forEach(v -> System.out.println("  " + v));
            System.out.println("mode=" + (regression ? "pre-c0d0381a" : "fixed") + " violations=" + violations.size());
            return violations.size();
        }
    }

    /** Where {@code mm}'s PUD entry for the window at {@code base} leads. */
    private static String pud(AddressSpace mm, long base) {
        long t = pmdTable(mm, base);
        return t < 0 ? "is empty" : "-> pfn 0x" + Long.toHexString(t);
    }

    /** The PMD table {@code mm}'s PUD entry for {@code va} points at, or -1. */
    private static long pmdTable(AddressSpace mm, long va) {
        return mm.pageTableView().entry(va, PageTableLevel.PUD).filter(e -> e.present()).map(e -> e.pa() >>> 12).orElse(-1L);
    }
}
