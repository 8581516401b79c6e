package org.vmcore.examples;

import java.util.concurrent.atomic.AtomicReference;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;

/**
 * CVE-2025-38085, fixed by "mm/hugetlb: fix huge_pmd_unshare() vs GUP-fast race" (1013af4f585f,
 * 2025), replayed step by step with a {@link RacePause}, once without the fix and once with it.
 * Processes A and B map one 1 GiB hugetlbfs file at 1 GiB-aligned addresses and share B's PMD
 * table; A writes a value of its own in the file. A driver pins A's buffer with GUP-fast
 * (get_user_pages_fast), a lockless walk: it reads A's PUD entry and stops at
 * {@link RacePoint#GUP_FAST_AFTER_PUD}, about to read the shared table. A unmaps its window,
 * which unshares the table.
 *
 * <p>Without the fix the munmap returns at once. The table is now an ordinary page table of B's
 * alone, and B maps anonymous memory over 2 MiB of its window and writes a secret there: that
 * entry of the table now points to a PTE table of B's. A's walk resumes in the table and pins B's
 * private page: reading through the pinned frame, as the driver's DMA would, gives B's secret.
 * (A keeps other memory under the same PUD table, so its munmap frees no table: freeing one waits
 * for lockless walkers in both modes, as tlb_remove_table does.) With the fix the
 * unshare waits for lockless walkers (tlb_remove_table_sync_one), so A's munmap blocks until the
 * walk is done and the walk pins the file page it set out for; B's steps, run afterwards, cannot
 * change that.
 *
 * <p>Run: {@code ./run-example GupFastRace [--regression=pre-1013af4f|none]}
 */
public final class GupFastRace {
    private static final long GIB = 1L << 30;
    private static final long MIB = 1L << 20;
    private static final long A = 16 * GIB;
    private static final long B = 18 * GIB;
    private static final long OFFSET = 6 * MIB + 0x40; // in huge page 3 of the window
    private static final long MINE = 0xa11ce_da7aL;
    private static final long SECRET = 0x5ec2_e75ec2e7L;

    private GupFastRace() {
    }

    public static void main(String[] args) {
        RegressionStory.tell("GupFastRace", "pre-1013af4f", args, GupFastRace::run, "pages of B pinned by A: %d without the fix, %d with it");
    }

    /** Replays the race once; returns 1 when A's GUP-fast pinned B's private page, else 0. */
    static long run(boolean regression) {
        Machine.Builder builder = RegressionStory.telling(Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 600),
                Regression.PRE_1013AF4F, regression);
        try (Machine machine = builder.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
            a.mmap(file, 0, A, GIB, Protection.READ_WRITE, shared);
            a.mmap(A - GIB, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            a.fault(A - GIB, Access.WRITE); // other memory of A under the same PUD table
            b.mmap(file, 0, B, GIB, Protection.READ_WRITE, shared);
            b.fault(B + OFFSET, Access.WRITE); // B's PMD table for the window
            b.fault(B, Access.WRITE); // one more entry of B's there: the table never empties (and is never freed)
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(a);
            cpu.store(A + OFFSET, 8, MINE); // A's fault shares B's table
            System.out.printf("A and B share B's PMD table (pfn 0x%x); A wrote 0x%x in file page 3 (pfn 0x%x)%n", pmdTable(b, B),
                    MINE, file.pageAt(3));

            RacePause pause = RacePause.arm(machine, RacePoint.GUP_FAST_AFTER_PUD);
            AtomicReference<PageReference> pinned = new AtomicReference<>();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            Thread gup = RegressionStory.start("A-gup-fast", failure, () -> pinned.set(a.getUserPageFast(A + OFFSET, true)));
            Thread unmap = null;
            boolean waited;
            long secretPfn = -1;
            try {
                RegressionStory.arrive(pause);
                System.out.printf("step 1: a driver pins A's buffer with GUP-fast: the lockless walk read A's PUD (-> pfn 0x%x)"
                        + " and stops at %s%n", pmdTable(a, A), RacePoint.GUP_FAST_AFTER_PUD);
                unmap = RegressionStory.start("A-munmap", failure, () -> a.munmap(A, GIB));
                waited = RegressionStory.blockedOrDone(unmap);
                if (waited) {
                    System.out.printf("step 2: A munmaps its window, which unshares the table: the munmap thread is %s,"
                            + " waiting for the lockless walker%n", unmap.getState());
                } else {
                    System.out.println("step 2: A munmaps its window, which unshares the table: the munmap returned at once");
                    secretPfn = bReusesTheTable(machine, b, cpu, 3);
                }
                System.out.println("step " + (waited ? 3 : 5) + ": A's GUP-fast walk resumes");
            } finally {
                pause.disarm();
                RegressionStory.join(failure, gup, unmap);
            }
            if (waited) {
                System.out.println("step 4: the walk is done and A's munmap returns");
                secretPfn = bReusesTheTable(machine, b, cpu, 5);
            }
            boolean leaked;
            try (PageReference ref = pinned.get()) {
                if (ref == null) {
                    throw new IllegalStateException("A's GUP-fast pinned nothing");
                }
                long seen = machine.readPhysical((ref.pfn() << 12) + OFFSET % (2 * MIB), 8);
                leaked = ref.pfn() == secretPfn;
                System.out.printf("A's GUP-fast pinned pfn 0x%x (%s); the driver reads 0x%x through it%s%n", ref.pfn(),
                        leaked ? "B's private anonymous page" : "A's file page 3", seen, seen == SECRET ? ": B's secret" : "");
            }
            System.out.println("mode=" + (regression ? "pre-1013af4f" : "fixed") + " leaked=" + leaked);
            return leaked ? 1 : 0;
        }
    }

    /** B maps anonymous memory over 2 MiB of its window and writes its secret there; returns the secret's page. */
    private static long bReusesTheTable(Machine machine, AddressSpace b, Cpu cpu, int step) {
        long table = pmdTable(b, B);
        long huge = OFFSET & -(2 * MIB);
        System.out.printf("step %d: the table at pfn 0x%x is B's alone now, an ordinary PMD table%n", step, table);
        b.mmap(B + huge, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        cpu.switchTo(b);
        cpu.store(B + OFFSET, 8, SECRET);
        System.out.printf("step %d: B maps anonymous memory over 2 MiB of its window and writes its secret 0x%x (pfn 0x%x);"
                + " B's PMD table is still pfn 0x%x, its entry now points to a PTE table of B's%n", step + 1, SECRET,
                b.pageAt(B + OFFSET), pmdTable(b, B));
        return b.pageAt(B + OFFSET);
    }

    /** The PMD table {@code mm}'s PUD entry for {@code va} points at, or -1. */
    private static long pmdTable(AddressSpace mm, long va) {
        return mm.pageTableView().entry(va, PageTableLevel.PUD).filter(e -> e.present()).map(e -> e.pa() >>> 12).orElse(-1L);
    }
}
