package org.vmcore.impl.race;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.time.Duration;
import java.util.List;
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
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;

/**
 * The race fixed by c0d0381ade79 ("hugetlbfs: use i_mmap_rwsem for more pmd sharing
 * synchronization"; upstream now holds the hugetlb VMA lock of 40549ba8f8e0 instead), replayed
 * step by step: mm A's hugetlb_fault has shared mm B's PMD table (huge_pte_alloc) and stops
 * before it takes the table's lock; a truncate unshares A's window (hugetlb_vmdelete_list ->
 * huge_pmd_unshare), then B unmaps the file and frees the table; then A's fault goes on.
 *
 * <p>Today the fault holds the VMA lock for read, so the truncate waits for the fault (its
 * trylock fails and it takes the lock in order afterwards) and nothing goes wrong. With
 * {@link Regression#PRE_C0D0381A} the fault holds nothing: it fills its entry through the freed
 * table, A's page is mapped where no page table leads, and the invariant checker names the page
 * whose mapcount no entry explains (the page-cache rule: a cached page no entry maps must have
 * mapcount 0).
 */
class HugetlbFaultUnshareRaceTest {
    private static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final long BASE_A = 4 * GIB;
    private static final long BASE_B = 8 * GIB;
    private static final Duration WAIT = Duration.ofSeconds(20);

    private Machine machine;

    @AfterEach
    void close() {
        if (machine != null) {
            machine.close();
        }
    }

    /** What the replay saw. */
    private record Outcome(FaultResult faultResult, long translatedAfter, List<String> violations, boolean truncateWaited) {
    }

    private Outcome replay(boolean preFix) throws Exception {
        Machine.Builder builder = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 600);
        if (preFix) {
            builder.enable(Regression.PRE_C0D0381A);
        }
        machine = builder.build();
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, BASE_A, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, BASE_B, GIB, Protection.READ_WRITE, SHARED_FIXED);
        // B faults page 1: B's PMD table for the window exists, and A's first fault will share it.
        assertThat(b.fault(BASE_B + 2 * MIB, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);

        RacePause pause = RacePause.arm(machine, RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC);
        AtomicReference<FaultResult> result = new AtomicReference<>();
        AtomicReference<Throwable> failure = new AtomicReference<>();
        Thread faulting = Thread.ofPlatform().name("mm-a-fault").start(() -> {
            try {
                result.set(a.fault(BASE_A, Access.WRITE)); // page 0, through B's shared table
            } catch (Throwable e) {
                failure.set(e);
            }
        });
        pause.awaitArrival(WAIT);

        AtomicReference<Throwable> truncateFailure = new AtomicReference<>();
        Thread truncating = Thread.ofPlatform().name("truncate").start(() -> {
            try {
                file.truncate(512 * MIB); // the window [0, 1 GiB) of every mapping is unshared
            } catch (Throwable e) {
                truncateFailure.set(e);
            }
        });
        boolean truncateWaited = ThreadStates.blockedOrDone(truncating);
        if (!truncateWaited) {
            b.munmap(BASE_B, GIB); // B is the table's last user: it is freed
        }
        pause.release();
        faulting.join(WAIT.toMillis());
        truncating.join(WAIT.toMillis());
        assertThat(faulting.isAlive()).as("fault finished").isFalse();
        assertThat(truncating.isAlive()).as("truncate finished").isFalse();
        assertThat(failure.get()).isNull();
        assertThat(truncateFailure.get()).isNull();
        if (truncateWaited) {
            b.munmap(BASE_B, GIB);
        }
        pause.disarm();
        return new Outcome(result.get(), a.translate(BASE_A), machine.checkInvariants(), truncateWaited);
    }

    @Test
    @DisplayName("fixed: the truncate waits for the fault's VMA lock; afterwards nothing is mapped through a freed table")
    void withTheFixTheTruncateWaitsForTheFault() throws Exception {
        Outcome outcome = replay(false);
        assertThat(outcome.truncateWaited()).as("truncate blocked on the hugetlb VMA lock").isTrue();
        assertThat(outcome.faultResult()).isIn(FaultResult.NEW_PAGE, FaultResult.SHARED_TABLE);
        assertThat(outcome.violations()).isEmpty();
    }

    @Test
    @DisplayName("PRE_C0D0381A: the fault fills its entry through the freed table; the invariant checker names the page")
    void beforeTheFixTheFaultWritesThroughTheFreedTable() throws Exception {
        Outcome outcome = replay(true);
        assertThat(outcome.truncateWaited()).as("nothing holds the truncate back").isFalse();
        assertThat(outcome.faultResult()).as("the fault believes it mapped the page").isEqualTo(FaultResult.NEW_PAGE);
        assertThat(outcome.translatedAfter()).as("but no page table of A leads to it").isEqualTo(-1);
        // The page counts a mapping that no page table holds: its entry went into the freed table.
        assertThat(outcome.violations()).anySatisfy(v -> assertThat(v).startsWith("page cache").contains("has mapcount 1"));
    }
}
