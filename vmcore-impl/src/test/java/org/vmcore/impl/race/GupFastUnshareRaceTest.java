package org.vmcore.impl.race;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;

/**
 * CVE-2025-38085, fixed by 1013af4f585f ("mm/hugetlb: fix huge_pmd_unshare() vs GUP-fast race"),
 * replayed step by step (scenario U5 of the reference): process A's GUP-fast has read A's PUD
 * entry and is about to read the shared PMD table; A unmaps its window, which unshares the table;
 * the table is now an ordinary page table of B's, and B maps anonymous memory over part of its
 * window, so an entry of the table now points to a PTE table of B's. Then A's walk goes on.
 *
 * <p>Today the unshare waits for lockless walkers (tlb_remove_table_sync_one), so A's munmap
 * cannot return while the walk is inside the table, and the walk finds the file page it started
 * for. With {@link Regression#PRE_1013AF4F} nothing waits: the walk reads B's new tables and
 * returns a reference on B's private anonymous page, a page A never mapped. (Freeing a table waits
 * for lockless walkers in both modes, as tlb_remove_table does; the race needs no free.)
 */
class GupFastUnshareRaceTest {
    private static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final long BASE_A = 4 * GIB;
    private static final long BASE_B = 8 * GIB;
    private static final long OFFSET = 6 * MIB; // the page both processes touch, inside the window
    private static final Duration WAIT = Duration.ofSeconds(20);

    private Machine machine;

    @AfterEach
    void close() {
        if (machine != null) {
            machine.close();
            assertThat(machine.offHeapBytes()).isZero();
        }
    }

    /** What A's GUP-fast got, B's anonymous page, the file's page, and whether A's munmap waited. */
    private record Outcome(long gotPfn, long bAnonPfn, long filePfn, boolean munmapWaited) {
    }

    private Outcome replay(boolean preFix) throws Exception {
        Machine.Builder builder = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 600);
        if (preFix) {
            builder.enable(Regression.PRE_1013AF4F);
        }
        machine = builder.build();
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, BASE_A, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, BASE_B, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.fault(BASE_B + OFFSET, Access.WRITE); // B's PMD table for the window
        b.fault(BASE_B, Access.WRITE); // and one more entry of B's there, so the table never empties
        a.fault(BASE_A + OFFSET, Access.WRITE); // A shares it
        // A keeps memory elsewhere under the same PUD table, so its munmap frees no table of its
        // own (freeing one waits for lockless walkers whatever the fix): only the unshare decides.
        long other = a.mmap(2 * GIB, 4096, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        a.fault(other, Access.WRITE);
        long filePfn = file.pageAt(OFFSET / (2 * MIB));

        RacePause pause = RacePause.arm(machine, RacePoint.GUP_FAST_AFTER_PUD);
        AtomicReference<PageReference> got = new AtomicReference<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread gup = Thread.ofPlatform().name("gup-fast").start(() -> {
            try {
                got.set(a.getUserPageFast(BASE_A + OFFSET, true));
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        pause.awaitArrival(WAIT);
        AtomicReference<Throwable> munmapFailure = new AtomicReference<>();
        Thread unmapping = Thread.ofPlatform().name("munmap-a").start(() -> {
            try {
                a.munmap(BASE_A, GIB); // unshares A's window
            } catch (Throwable e) {
                munmapFailure.set(e);
            }
        });
        boolean waited = ThreadStates.blockedOrDone(unmapping);
        long bAnon = -1;
        if (!waited) {
            // The table is B's alone now, an ordinary PMD table: B maps anonymous memory over 2 MiB
            // of its window, and that entry of the table now points to a PTE table of B's.
            long anon = b.mmap(BASE_B + OFFSET, 2 * MIB, Protection.READ_WRITE,
                    MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            b.fault(anon, Access.WRITE);
            bAnon = b.pageAt(anon);
        }
        pause.release();
        gup.join(WAIT.toMillis());
        unmapping.join(WAIT.toMillis());
        assertThat(gup.isAlive() || unmapping.isAlive()).as("both finished").isFalse();
        assertThat(failure.get()).isNull();
        assertThat(munmapFailure.get()).isNull();
        pause.disarm();
        PageReference ref = got.get();
        long gotPfn = ref == null ? -1 : ref.pfn();
        if (ref != null) {
            ref.close();
        }
        assertThat(machine.checkInvariants()).isEmpty();
        return new Outcome(gotPfn, bAnon, filePfn, waited);
    }

    @Test
    @DisplayName("fixed: A's munmap waits for A's GUP-fast walk; the walk returns the file page it set out for")
    void withTheFixTheUnshareWaitsForTheWalk() throws Exception {
        Outcome outcome = replay(false);
        assertThat(outcome.munmapWaited()).as("the unshare waited for the lockless walker").isTrue();
        assertThat(outcome.gotPfn()).isEqualTo(outcome.filePfn());
    }

    @Test
    @DisplayName("PRE_1013AF4F: A's GUP-fast walks the freed and reused table and returns B's private page")
    void beforeTheFixTheWalkReturnsAnotherProcesssPage() throws Exception {
        Outcome outcome = replay(true);
        assertThat(outcome.munmapWaited()).as("nothing waits for the walker").isFalse();
        assertThat(outcome.bAnonPfn()).isPositive();
        assertThat(outcome.gotPfn()).as("A pinned a page of B's private memory").isEqualTo(outcome.bAnonPfn());
    }
}
