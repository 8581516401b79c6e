package org.vmcore.impl.notifier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.VmException;
import org.vmcore.impl.Fixtures.PopulatedFile;
import org.vmcore.impl.Fixtures;

/**
 * User callbacks that call back into the engine: close the machine or an address space, or
 * change the address space they are notified for. A close asked for from inside a callback
 * happens when the operation that called back ends; a change of the notified address space from
 * its own notifier is refused (the kernel runs notifiers under locks the change would need).
 * Errors a callback throws reach the caller as thrown.
 */
class CallbackReentryTest {
    private static final long K4 = 4096;
    private static final long M2 = 2L << 20;
    private static final long G = 1L << 30;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE;

    private static Machine machine() {
        return Machine.builder().node(G).node(G).hugePages(0, PageSize.SIZE_2M, 8).hugePages(1, PageSize.SIZE_2M, 8)
                .cpus(2).detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    }

    private static void closeClean(Machine machine) {
        assertThat(machine.staleAccessCount()).isZero();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    @ParameterizedTest(name = "at {0}")
    @EnumSource(MigrationPhase.class)
    @DisplayName("an observer that closes the address space: the migration ends, then the address space exits, nothing leaks")
    void observerClosesTheAddressSpace(MigrationPhase phase) {
        Machine machine = machine();
        long free = machine.freeFrames();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 2 * K4, Protection.READ_WRITE, ANON);
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                mm.close();
                assertThat(mm.isClosed()).as("not yet: the migration is mid-way").isFalse();
            }
        });
        machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
        assertThat(mm.isClosed()).isTrue();
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.freeFrames()).isEqualTo(free);
        closeClean(machine);
    }

    @Test
    @DisplayName("a notifier that closes its address space during a shared hugetlb migration: closed afterwards, pool whole")
    void notifierClosesTheAddressSpaceDuringHugetlbMigration() {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        PopulatedFile populated = Fixtures.populatedFile(machine, mm, "h", M2);
        HugetlbFile file = populated.file();
        long va = populated.va();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
                mm.close();
            }
        });
        machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
        assertThat(mm.isClosed()).isTrue();
        assertThat(machine.checkInvariants()).isEmpty();
        file.truncate(0);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free() + machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free())
                .isEqualTo(16);
        closeClean(machine);
    }

    @Test
    @DisplayName("a notifier that closes the machine during mprotect: mprotect completes, then the machine closes")
    void notifierClosesTheMachine() {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 2 * K4, Protection.READ_WRITE, ANON);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                machine.close();
            }
        });
        mm.mprotect(va, K4, Protection.READ);
        assertThat(machine.offHeapBytes()).isZero();
        assertThatThrownBy(machine::vmstat).isInstanceOf(ClosedException.class);
    }

    @ParameterizedTest(name = "at {0}")
    @EnumSource(MigrationPhase.class)
    @DisplayName("an observer that closes the machine: the page's migration ends, the next call sees ClosedException")
    void observerClosesTheMachine(MigrationPhase phase) {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 2 * K4, Protection.READ_WRITE, ANON);
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                machine.close();
            }
        });
        assertThatThrownBy(() -> machine.migration().movePages(mm, new long[] {va, va + K4}, new int[] {1, 1},
                MigrationService.MPOL_MF_MOVE)).isInstanceOf(ClosedException.class);
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("a notifier that munmaps its own address space during fork is refused; fork reports it, nothing breaks")
    void aNotifierMayNotChangeItsOwnAddressSpace() {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(0x1000_0000L, 2 * K4, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED);
        mm.mmap(0x3000_0000L, K4, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED);
        AtomicReference<Throwable> refused = new AtomicReference<>();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                try {
                    mm.munmap(0x3000_0000L, K4);
                } catch (VmException e) {
                    refused.compareAndSet(null, e);
                    throw e;
                }
            }
        });
        assertThatThrownBy(mm::fork).isInstanceOf(VmException.class).hasMessageContaining("own MMU notifiers");
        assertThat(refused.get()).as("the munmap inside the notifier was refused").hasMessageContaining("own MMU notifiers");
        assertThat(mm.vmas()).hasSize(2);
        assertThat(machine.addressSpaces()).containsExactly(mm);
        assertThat(machine.checkInvariants()).isEmpty();
        closeClean(machine);
    }

    @Test
    @DisplayName("an Error a notifier throws reaches the caller as thrown, not wrapped")
    void anErrorReachesTheCallerAsThrown() {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 2 * K4, Protection.READ_WRITE, ANON);
        AssertionError error = new AssertionError("device model bug");
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeEnd(NotifierRange range) {
                throw error;
            }
        });
        assertThatThrownBy(() -> mm.munmap(va, K4)).isSameAs(error);
        assertThat(mm.vmas()).hasSize(1);
        assertThat(machine.checkInvariants()).isEmpty();
        closeClean(machine);
    }

    @Test
    @DisplayName("a flush that reaches two other CPUs counts one remote flush sent (flush_tlb_multi) and one received on each")
    void oneRemoteFlushPerFlush() {
        Machine machine = Machine.builder().cpus(3).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, K4, Protection.READ_WRITE, ANON);
        for (int i = 0; i < 3; i++) {
            Cpu cpu = machine.cpu(i);
            cpu.switchTo(mm);
            cpu.load(va, 8);
        }
        long sent = machine.vmstat().get("nr_tlb_remote_flush");
        long received = machine.vmstat().get("nr_tlb_remote_flush_received");
        machine.cpu(2).run(() -> mm.munmap(va, K4));
        assertThat(machine.vmstat().get("nr_tlb_remote_flush") - sent).isEqualTo(1);
        assertThat(machine.vmstat().get("nr_tlb_remote_flush_received") - received).isEqualTo(2);
        closeClean(machine);
    }

    @Test
    @DisplayName("cpumask of an exited address space throws ClosedException")
    void cpumaskAfterClose() {
        Machine machine = machine();
        AddressSpace mm = machine.createAddressSpace();
        mm.close();
        assertThatThrownBy(mm::cpumask).isInstanceOf(ClosedException.class);
        closeClean(machine);
    }
}
