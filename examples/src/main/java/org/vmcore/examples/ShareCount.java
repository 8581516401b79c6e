package org.vmcore.examples;

import java.util.List;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;

/**
 * The PMD table's share count of 59d9094df3d7, once without the fix and once with it: P1 and P2
 * share P1's PMD table for a 1 GiB hugetlbfs window that maps four huge pages; P2 unmaps its
 * window, so P1 is the table's last user. A PFN walker (page_idle, DAMON, split_huge_pages) holds
 * a speculative reference on the table page while P1 unmaps the window. Without the fix the
 * sharers are counted in the refcount: the table looks shared, P1's unmap only unhooks it, and
 * the table page and the four huge pages it still maps are never freed.
 *
 * <p>Run: {@code ./run-example ShareCount [--regression=pre-59d9094d|none]}
 */
public final class ShareCount {
    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;
    private static final long P1 = 16 * GIB;
    private static final long P2 = 18 * GIB;
    private static final int PAGES = 4;
    private static final long POOL = 600;

    private ShareCount() {
    }

    public static void main(String[] args) {
        RegressionStory.tell("ShareCount", "pre-59d9094d", args, ShareCount::run, "huge pages never freed: %d without the fix, %d with it");
    }

    /** Runs the story once; returns the huge pages that did not come back to the pool. */
    static long run(boolean regression) {
        Machine.Builder b = RegressionStory.telling(Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, POOL), Regression.PRE_59D9094D, regression);
        try (Machine machine = b.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace p1 = machine.createAddressSpace();
            AddressSpace p2 = machine.createAddressSpace();
            int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
            p1.mmap(file, 0, P1, GIB, Protection.READ_WRITE, shared);
            p2.mmap(file, 0, P2, GIB, Protection.READ_WRITE, shared);
            for (int i = 0; i < PAGES; i++) {
                p1.fault(P1 + i * 2 * MIB, Access.WRITE);
            }
            p2.fault(P2, Access.READ); // P2's PUD entry now points at P1's PMD table
            long table = p1.pageTableView().entry(P1, PageTableLevel.PUD).orElseThrow().pa() >>> 12;
            System.out.printf("P1 and P2 share the PMD table at pfn 0x%x (refcount %d)%n", table, machine.page(table).refcount());
            p2.munmap(P2, GIB);
            System.out.printf("P2 unmaps its window: P1 is the table's last user (refcount %d)%n", machine.page(table).refcount());

            try (PageReference walker = machine.tryGetPage(table)) {
                System.out.printf("a PFN walker takes a speculative reference on pfn 0x%x (refcount %d)%n", walker.pfn(),
                        machine.page(table).refcount());
                report("invariant checker", machine.checkInvariants());
                p1.munmap(P1, GIB);
                System.out.printf("P1 unmaps its window: huge page 0 has mapcount %d, the table page is %s%n",
                        machine.page(file.pageAt(0)).mapcount(), machine.page(table).flags());
                report("invariant checker", machine.checkInvariants());
            }
            file.truncate(0);
            long leaked = POOL - machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free();
            System.out.printf("the walker drops its reference and the file is truncated: %d huge pages not back in the pool%n", leaked);
            return leaked;
        }
    }

    private static void report(String who, List<String> violations) {
        System.out.println(who + ":" + (violations.isEmpty() ? " clean" : ""));
        violations.forEach(v -> System.out.println("  " + v));
    }
}
