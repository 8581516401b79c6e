package org.vmcore.examples;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.api.SegmentationFaultException;

/**
 * CVE-2021-4002 (a4a118f2eead), once without the fix and once with it: P1 and P2 share the PMD
 * table of a 1 GiB hugetlbfs file, and cpu0, running P1, caches three of its huge pages. The
 * file loses its last 2 MiB page, which unshares P1's whole window; without the fix the
 * truncation flushes only the entries it cleared, none of them P1's, so cpu0 keeps its
 * translations. The file is truncated to 0, its pages go back to the pool, and a second file,
 * mapped by P3, takes them all. cpu0 then stores through its stale entries: the stores land in
 * P3's pages, P3 reads values it never wrote, and the stale-translation detector records each
 * use. With the fix, cpu0's stores fault: P1's window lies beyond the end of the file.
 *
 * <p>Run: {@code ./run-example UnshareFlush [--regression=pre-a4a118f2|none]}
 */
public final class UnshareFlush {
    private static final long GIB = 1L << 30;
    private static final long HUGE = 2L << 20;
    private static final long P1 = 16 * GIB;
    private static final long P2 = 18 * GIB;
    private static final long P3 = 20 * GIB;
    private static final long MARK = 0x0bad_cafeL;

    private UnshareFlush() {
    }

    public static void main(String[] args) {
        RegressionStory.tell("UnshareFlush", "pre-a4a118f2", args, UnshareFlush::run, "stale uses by P1's CPU: %d without the fix, %d with it");
    }

    /** Runs the story once; returns the stale uses the detector recorded. */
    static long run(boolean regression) {
        // 512 huge pages: exactly one 1 GiB file, so the second file can only get the freed ones
        Machine.Builder b = RegressionStory.telling(Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 512)
                .detectStaleTranslations(true), Regression.PRE_A4A118F2, regression);
        try (Machine machine = b.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace[] sharers = RegressionStory.shareWindow(machine, file, P1, P2);
            AddressSpace p1 = sharers[0];
            AddressSpace p2 = sharers[1];
            Cpu cpu0 = machine.cpu(0);
            cpu0.switchTo(p1);
            long[] pfns = new long[3];
            for (int i = 0; i < 3; i++) {
                cpu0.store(P1 + i * HUGE, 8, 1);
                pfns[i] = p1.pageAt(P1 + i * HUGE);
            }
            System.out.println("P1 and P2 share one PMD table; cpu0 runs P1 and caches its huge pages 0, 1 and 2");

            file.truncate(GIB - HUGE);
            System.out.printf("the file loses its last huge page: P1's window is unshared (translate(P1) = %d); cpu0 still"
                    + " caches %d of P1's three pages%n", p1.translate(P1), cached(cpu0, p1));
            file.truncate(0);
            System.out.printf("the file is truncated to 0: %d huge pages free%n", machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free());
            HugetlbFile second = machine.hugetlbfs().create("other", GIB, PageSize.SIZE_2M);
            AddressSpace p3 = machine.createAddressSpace();
            p3.mmap(second, 0, P3, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
            System.out.println("P3 maps a second 1 GiB file, populated: it takes every free huge page");

            int landed = 0;
            for (int i = 0; i < 3; i++) {
                try {
                    cpu0.store(P1 + i * HUGE, 8, MARK + i);
                    System.out.printf("cpu0 (P1) stores 0x%x at P1 + %d MiB: no fault%n", MARK + i, i * 2);
                } catch (SegmentationFaultException e) {
                    System.out.printf("cpu0 (P1) stores at P1 + %d MiB: %s (%s)%n", i * 2, "SIGBUS", e.cause());
                }
            }
            Cpu cpu1 = machine.cpu(1);
            cpu1.switchTo(p3);
            for (int k = 0; k < 512; k++) {
                long va = P3 + k * HUGE;
                long value = cpu1.load(va, 8);
                if (value != 0) {
                    landed++;
                    int i = indexOf(pfns, p3.pageAt(va));
                    System.out.printf("P3 reads 0x%x in its page %d (pfn 0x%x, P1's page %d before the truncation)%n", value, k,
                            p3.pageAt(va), i);
                }
            }
            System.out.printf("values P3 never wrote: %d%n", landed);
            System.out.println("stale-translation detector:");
            machine.staleAccesses().forEach(s -> System.out.println("  " + s));
            if (machine.staleAccessCount() == 0) {
                System.out.println("  (none)");
            }
            return machine.staleAccessCount();
        }
    }

    private static int cached(Cpu cpu, AddressSpace mm) {
        int n = 0;
        for (int i = 0; i < 3; i++) {
            n += cpu.tlbHolds(mm, P1 + i * HUGE) ? 1 : 0;
        }
        return n;
    }

    private static int indexOf(long[] pfns, long pfn) {
        for (int i = 0; i < pfns.length; i++) {
            if (pfns[i] == pfn) {
                return i;
            }
        }
        return -1;
    }
}
