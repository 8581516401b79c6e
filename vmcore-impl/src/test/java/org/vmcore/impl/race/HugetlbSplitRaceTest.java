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
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;

/**
 * The ordering 081056dc00a2 ("mm/hugetlb: unshare page tables during VMA split, not before",
 * CVE-2025-38084) established, scenario U6 of the reference: while process A splits a hugetlb
 * VMA inside a 1 GiB window, between the unshare step and the split, process B faults in the
 * same file window. Before the fix B's huge_pmd_share could find A's still whole VMA and share
 * A's table again, just before A's VMA stopped covering the window. vmcore holds the VMA lock
 * and i_mmap_rwsem from the unshare through the split, as the fix does: B's fault waits, and
 * once A's VMA is split it no longer offers its table, so B builds its own.
 */
class HugetlbSplitRaceTest {
    private static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final long BASE_A = 4 * GIB;
    private static final long BASE_B = 8 * GIB;
    private static final Duration WAIT = Duration.ofSeconds(20);

    private final Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 600).build();

    @AfterEach
    void close() {
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    private static long pmdTable(AddressSpace mm, long va) {
        return mm.pageTableView().entry(va, PageTableLevel.PUD).filter(e -> e.present()).map(e -> e.pa() >>> 12).orElse(-1L);
    }

    @Test
    @DisplayName("a sibling's fault during the split of A's VMA waits, then builds its own table: A's is never shared again")
    void aFaultDuringTheSplitWaitsAndDoesNotShare() throws Exception {
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, BASE_A, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, BASE_B, GIB, Protection.READ_WRITE, SHARED_FIXED);
        a.fault(BASE_A, Access.WRITE); // A's own PMD table for the window, shared with nobody yet
        long tableA = pmdTable(a, BASE_A);

        RacePause pause = RacePause.arm(machine, RacePoint.HUGETLB_SPLIT_AFTER_UNSHARE);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread splitting = Thread.ofPlatform().name("mprotect-a").start(() -> {
            try {
                a.mprotect(BASE_A + 2 * MIB, 2 * MIB, Protection.READ); // splits at 2 MiB and 4 MiB
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        pause.awaitArrival(WAIT);
        AtomicReference<FaultResult> bResult = new AtomicReference<>();
        Thread faulting = Thread.ofPlatform().name("fault-b").start(() -> {
            try {
                bResult.set(b.fault(BASE_B + 10 * MIB, Access.WRITE));
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        assertThat(ThreadStates.blockedOrDone(faulting)).as("B's fault must wait for the split").isTrue();
        pause.release();
        splitting.join(WAIT.toMillis());
        faulting.join(WAIT.toMillis());
        pause.disarm();
        assertThat(failure.get()).isNull();
        assertThat(bResult.get()).as("B found no shareable table: A's VMA no longer covers the window").isEqualTo(FaultResult.NEW_PAGE);
        assertThat(pmdTable(b, BASE_B)).isNotEqualTo(tableA).isPositive();
        assertThat(a.vmas()).hasSize(3);
        assertThat(machine.checkInvariants()).isEmpty();
    }
}
