package org.vmcore.impl.race;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.race.ThreadStates.join;
import static org.vmcore.impl.race.ThreadStates.start;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmCounters;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;

/**
 * The kernel's locks instead of one machine lock: an operation stopped inside its kernel path
 * (at a {@link RacePoint}) holds only what Linux holds there, so operations on other address
 * spaces run to completion meanwhile, faults of one address space run side by side (mmap_lock
 * for read), and only what needs one of the held locks waits: a change of the same address space
 * (mmap_lock for write) or a machine-wide operation. Each test would deadlock or time out if the
 * operations were serialised.
 */
class ParallelOperationsTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final long K4 = 4096;
    private static final Duration WAIT = Duration.ofSeconds(20);

    private final Machine machine = Machine.builder().node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 16)
            .detectStaleTranslations(true).build();

    @AfterEach
    void close() {
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    /** Waits until {@code t} blocks (on a lock); fails if it finishes instead. */
    private static void assertBlocks(Thread t) throws InterruptedException {
        assertThat(ThreadStates.blockedOrDone(t)).as(t.getName() + " must wait for the stopped operation, not finish").isTrue();
    }

    @Test
    @DisplayName("while one address space's fault is stopped inside the kernel, every kind of operation on another one completes")
    void anotherAddressSpaceRunsWhileAFaultIsStopped() throws Exception {
        AddressSpace stopped = machine.createAddressSpace();
        long va = stopped.mmap(0, 16 * K4, Protection.READ_WRITE, ANON);
        AddressSpace other = machine.createAddressSpace();
        RacePause pause = RacePause.arm(machine, RacePoint.FAULT_AFTER_VMA_LOOKUP);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        Thread faulting = start("stopped-fault", failures, () -> stopped.fault(va, Access.WRITE));
        pause.awaitArrival(WAIT);

        assertTimeoutPreemptively(WAIT, () -> {
            long o = other.mmap(0, 64 * K4, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            assertThat(other.fault(o, Access.WRITE)).isEqualTo(FaultResult.ALREADY_MAPPED);
            other.mprotect(o, 16 * K4, Protection.READ);
            AddressSpace child = other.fork();
            child.close();
            Cpu cpu = machine.cpu(1);
            cpu.switchTo(other);
            cpu.store(o + 32 * K4, 8, 42);
            assertThat(cpu.load(o + 32 * K4, 8)).isEqualTo(42);
            cpu.switchTo(null);
            HugetlbFile file = machine.hugetlbfs().create("other", 4 * MIB, PageSize.SIZE_2M);
            long h = other.mmap(file, 0, 0, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_POPULATE);
            file.truncate(2 * MIB);
            other.munmap(h, 4 * MIB);
            other.munmap(o, 64 * K4);
            machine.createAddressSpace().close();
            other.close();
        }, "operations on another address space waited for the stopped fault");

        assertThat(faulting.isAlive()).as("the stopped fault is still stopped").isTrue();
        pause.release();
        join(faulting);
        assertThat(failures).isEmpty();
        assertThat(stopped.counters().anonPages()).isEqualTo(1);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("a change of the same address space waits for its fault (mmap_lock), then runs")
    void aChangeOfTheSameAddressSpaceWaitsForItsFault() throws Exception {
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 16 * K4, Protection.READ_WRITE, ANON);
        RacePause pause = RacePause.arm(machine, RacePoint.FAULT_AFTER_VMA_LOOKUP);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        Thread faulting = start("fault", failures, () -> mm.fault(va, Access.WRITE));
        pause.awaitArrival(WAIT);
        Thread unmapping = start("munmap", failures, () -> mm.munmap(va, 16 * K4));
        assertBlocks(unmapping);
        pause.release();
        join(faulting);
        join(unmapping);
        assertThat(failures).isEmpty();
        assertThat(mm.counters().anonPages()).as("the fault mapped, then munmap took it").isZero();
        assertThat(mm.vmas()).isEmpty();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("a machine-wide operation waits for the address-space operations in progress")
    void aMachineWideOperationWaits() throws Exception {
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 16 * K4, Protection.READ_WRITE, ANON);
        RacePause pause = RacePause.arm(machine, RacePoint.FAULT_AFTER_VMA_LOOKUP);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        Thread faulting = start("fault", failures, () -> mm.fault(va, Access.WRITE));
        pause.awaitArrival(WAIT);
        AtomicReference<List<String>> violations = new AtomicReference<>();
        Thread checking = start("check", failures, () -> violations.set(machine.checkInvariants()));
        assertBlocks(checking);
        pause.release();
        join(faulting);
        join(checking);
        assertThat(failures).isEmpty();
        assertThat(violations.get()).as("checked at a quiescent point, after the fault").isEmpty();
    }

    @Test
    @DisplayName("two faults of one address space are inside the fault handler at the same time (mmap_lock for read)")
    void twoFaultsOfOneAddressSpaceRunTogether() throws Exception {
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 16 * K4, Protection.READ_WRITE, ANON);
        CyclicBarrier bothInside = new CyclicBarrier(2);
        machine.setRaceHook(RacePoint.FAULT_AFTER_VMA_LOOKUP, (point, addressSpace, address) ->
                bothInside.await(WAIT.toMillis(), TimeUnit.MILLISECONDS)); // times out if the faults were serialised
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        List<FaultResult> results = new java.util.concurrent.CopyOnWriteArrayList<>();
        Thread a = start("fault-a", failures, () -> results.add(mm.fault(va, Access.WRITE)));
        Thread b = start("fault-b", failures, () -> results.add(mm.fault(va + K4, Access.WRITE)));
        join(a);
        join(b);
        machine.setRaceHook(RacePoint.FAULT_AFTER_VMA_LOOKUP, null);
        assertThat(failures).isEmpty();
        assertThat(results).containsExactlyInAnyOrder(FaultResult.NEW_PAGE, FaultResult.NEW_PAGE);
        assertThat(mm.counters().anonPages()).isEqualTo(2);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("two faults of the same page at the same time: one maps it, the other finds it mapped (the pte_same check)")
    void twoFaultsOfTheSamePage() throws Exception {
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 16 * K4, Protection.READ_WRITE, ANON);
        long free = machine.freeFrames();
        long tablesBefore = mm.counters().pageTablePages();
        CyclicBarrier bothInside = new CyclicBarrier(2);
        machine.setRaceHook(RacePoint.FAULT_AFTER_VMA_LOOKUP, (point, addressSpace, address) ->
                bothInside.await(WAIT.toMillis(), TimeUnit.MILLISECONDS));
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        List<FaultResult> results = new java.util.concurrent.CopyOnWriteArrayList<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            threads.add(start("fault-" + i, failures, () -> results.add(mm.fault(va, Access.WRITE))));
        }
        for (Thread t : threads) {
            join(t);
        }
        machine.setRaceHook(RacePoint.FAULT_AFTER_VMA_LOOKUP, null);
        assertThat(failures).isEmpty();
        assertThat(results).containsExactlyInAnyOrder(FaultResult.NEW_PAGE, FaultResult.ALREADY_MAPPED);
        MmCounters c = mm.counters();
        assertThat(c.anonPages()).isEqualTo(1);
        assertThat(machine.freeFrames()).as("one data page and the PTE table, nothing leaked by the loser")
                .isEqualTo(free - 1 - (c.pageTablePages() - tablesBefore));
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("many parallel faults of one address space: every page mapped once, every fault counted")
    void parallelFaultsCountExactly() throws Exception {
        AddressSpace mm = machine.createAddressSpace();
        int pages = 2048;
        long va = mm.mmap(0, pages * K4, Protection.READ_WRITE, ANON);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        long before = mm.counters().minorFaults();
        List<Thread> threads = new ArrayList<>();
        for (int t = 0; t < 2; t++) {
            int first = t;
            threads.add(start("faults-" + t, failures, () -> {
                for (int p = first; p < pages; p += 2) {
                    assertThat(mm.fault(va + p * K4, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
                }
            }));
        }
        for (Thread t : threads) {
            join(t);
        }
        assertThat(failures).isEmpty();
        assertThat(mm.counters().anonPages()).isEqualTo(pages);
        assertThat(mm.counters().minorFaults() - before).isEqualTo(pages);
        assertThat(machine.checkInvariants()).isEmpty();
    }
}
