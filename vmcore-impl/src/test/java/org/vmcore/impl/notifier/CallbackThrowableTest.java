package org.vmcore.impl.notifier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/**
 * Callbacks that throw what is not a RuntimeException (an Error such as a failing assertion in a
 * device model, or a checked exception thrown sneakily, as Kotlin and Lombok code does): every
 * abort and rollback path undoes its work all the same, no notifier range stays open, closes
 * still happen, and counters stay per machine. Found by a review of the callback contract.
 */
class CallbackThrowableTest {
    private static final long K4 = 4096;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    /** Throws AssertionError (what a failing assertThat in a test device throws) at the n-th invalidateRangeStart. */
    static MmuNotifier errorAtStart(int n) {
        AtomicInteger starts = new AtomicInteger();
        return new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (starts.incrementAndGet() == n) {
                    throw new AssertionError("device bug");
                }
            }
        };
    }

    @SuppressWarnings("unchecked")
    static <E extends Throwable> void sneaky(Throwable t) throws E {
        throw (E) t;
    }

    @Test
    void mprotectOverTwoVmasWithAnErrorLeavesNoRangeOpen() {
        Machine machine = Machine.builder().node(GIB).cpus(1).detectStaleTranslations(true).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = 0x10_0000_0000L;
        mm.mmap(va, 2 * K4, Protection.READ_WRITE, ANON);
        mm.mmap(va + 2 * K4, 2 * K4, Protection.READ, ANON);
        mm.registerNotifier(errorAtStart(2));
        assertThatThrownBy(() -> mm.mprotect(va + K4, 3 * K4, Protection.READ_EXEC)).isInstanceOf(AssertionError.class);
        // a device that checks a wrong translation inside the first VMA's range must be reported as stale
        machine.checkTranslation("dev", mm, va, 0x1234, false);
        assertThat(machine.staleAccessCount()).as("control: outside the leaked range it is seen").isEqualTo(1);
        machine.checkTranslation("dev", mm, va + K4, 0x1234, false);
        assertThat(machine.staleAccessCount()).as("stale detector blinded by a range left open").isEqualTo(2);
        assertThat(mm.vmas()).as("VMAs as they were").hasSize(2);
        machine.close();
    }

    @Test
    void hugetlbMapFixedAbortedByAnErrorGivesItsReservationsBack() {
        Machine machine = Machine.builder().node(GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 4).build();
        HugetlbFile file = machine.hugetlbfs().create("f", 2 * 2 * MIB, PageSize.SIZE_2M);
        AddressSpace mm = machine.createAddressSpace();
        long va = GIB;
        mm.mmap(va, 2 * MIB, Protection.READ_WRITE, ANON);
        mm.registerNotifier(errorAtStart(1));
        long before = machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved();
        assertThatThrownBy(() -> mm.mmap(file, 0, va, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED))
                .isInstanceOf(AssertionError.class);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("reservations leaked").isEqualTo(before);
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
    }

    @Test
    void forkAbortedByAnErrorLeavesNoChild() {
        Machine machine = Machine.builder().node(GIB).cpus(1).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = 0x10_0000_0000L;
        mm.mmap(va, K4, Protection.READ_WRITE, ANON);
        mm.mmap(va + 2 * K4, K4, Protection.READ_WRITE, ANON);
        mm.registerNotifier(errorAtStart(2));
        assertThatThrownBy(mm::fork).isInstanceOf(AssertionError.class);
        assertThat(machine.addressSpaces()).as("half-forked child left behind").containsExactly(mm);
        machine.close();
    }

    @Test
    void aVisitorThrowingACheckedExceptionDoesNotStopClose() {
        Machine machine = Machine.builder().node(GIB).cpus(1).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0x10_0000_0000L, K4, Protection.READ_WRITE, ANON);
        long pfn = mm.pageAt(va);
        assertThatThrownBy(() -> machine.rmap().walk(pfn, (as, a) -> {
            sneaky(new java.io.IOException("visitor"));
            return true;
        })).isInstanceOf(java.io.IOException.class);
        mm.close();
        machine.close();
        assertThat(machine.offHeapBytes()).as("machine.close deferred forever: off-heap leaked").isZero();
    }

    @Test
    void anObserverThrowingACheckedExceptionRollsTheMigrationBack() {
        Machine machine = Machine.builder().node(GIB).node(GIB).cpus(1).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0x10_0000_0000L, K4, Protection.READ_WRITE, ANON);
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        cpu.store(va, 8, 42);
        long free = machine.freeFrames();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                sneaky(new java.io.IOException("observer"));
            }
        });
        assertThatThrownBy(() -> machine.migration().movePages(mm, new long[] {va}, new int[] {1}, 2))
                .isInstanceOf(java.io.IOException.class);
        machine.migration().setObserver(null);
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.freeFrames()).isEqualTo(free);
        machine.close();
    }

    @Test
    void aCloseAskedByANotifierThatAbortsMunmapHappensWhenMunmapEnds() {
        Machine machine = Machine.builder().node(GIB).cpus(1).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = 0x10_0000_0000L;
        mm.mmap(va, 2 * K4, Protection.READ_WRITE, ANON);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                mm.close();
                throw new IllegalStateException("refuse");
            }
        });
        assertThatThrownBy(() -> mm.munmap(va, K4)).isInstanceOf(IllegalStateException.class);
        assertThat(mm.isClosed()).as("the close the notifier asked for is still pending").isTrue();
        machine.close();
    }

    @Test
    void runAsACpuOfAnotherMachineDoesNotCountOnIt() {
        Machine a = Machine.builder().node(GIB).cpus(1).build();
        Machine b = Machine.builder().node(GIB).cpus(2).build();
        AddressSpace mm = b.createAddressSpace();
        long va = 0x10_0000_0000L;
        mm.mmap(va, K4, Protection.READ_WRITE, ANON);
        b.cpu(0).switchTo(mm);
        b.cpu(0).load(va, 8);
        a.cpu(0).run(() -> mm.munmap(va, K4));
        assertThat(a.cpu(0).stats().shootdownsSent()).as("machine a's CPU counted machine b's flush").isZero();
        a.close();
        b.close();
    }
}
