package org.vmcore.impl.swap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.function.Consumer;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;

/**
 * The invariant checker's swap rules, each shown by one corruption of a consistent machine
 * (swap_map counts against the swap entries, VmSwap against the tables); a corrupt machine still
 * closes and gives back everything. Also the pages reclaim must pass by.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
class SwapInvariantsTest {
    private static final long P = 4096;
    private static final long VA = 0x5000_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    /** Two pages swapped out of one address space, then {@code corruption} of its tables; the violations name {@code rule}. */
    private static void corruptAndExpect(Consumer<RawPageTable> corruption, String rule, String detail) {
        Machine machine = Machine.builder().node(GIB).swap(17 * P).build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * P, Protection.READ_WRITE, ANON);
        machine.cpu(0).switchTo(mm);
        machine.cpu(0).store(VA, 8, 1);
        machine.cpu(0).store(VA + P, 8, 2);
        assertThat(machine.reclaim(0, 2)).isEqualTo(2);
        assertThat(machine.checkInvariants()).as("consistent before the corruption").isEmpty();
        try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
            corruption.accept(((SimAddressSpace) mm).pageTable());
        }
        assertThat(machine.checkInvariants()).as("violations").anySatisfy(v -> assertThat(v).startsWith(rule).contains(detail));
        machine.close();
        assertThat(machine.offHeapBytes()).as("a corrupt machine closes all the same").isZero();
    }

    private static long entry(RawPageTable t, long va) {
        return t.readSlot(t.slot(va, Level.PTE));
    }

    private static void set(RawPageTable t, long va, long e) {
        long slot = t.slot(va, Level.PTE);
        t.compareAndSetSlot(slot, t.readSlot(slot), e);
    }

    @Test
    void aCopiedSwapEntryBreaksTheSwapCount() {
        corruptAndExpect(t -> set(t, VA + 2 * P, entry(t, VA)), "swap count", "but 2 swap entries name it");
    }

    @Test
    void aClearedSwapEntryLeavesTheSlotCounted() {
        corruptAndExpect(t -> set(t, VA, 0), "swap count", "has swap count 1 but 0 swap entries name it");
    }

    @Test
    void vmSwapCountsTheEntries() {
        corruptAndExpect(t -> set(t, VA + 3 * P, entry(t, VA + P)), "VmSwap", "counts 2 swap entries but its tables hold 3");
    }

    @Test
    @DisplayName("a 16 TiB swap device costs nothing until used, and its check only what was used")
    void aLargeDeviceIsLazy() {
        try (Machine machine = Machine.builder().node(GIB).swap(16L << 40).build()) {
            assertThat(machine.offHeapBytes()).isLessThan(1L << 20);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * P, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            machine.cpu(0).switchTo(mm);
            machine.cpu(0).store(VA, 8, 7);
            assertThat(machine.reclaim(0, 4)).isEqualTo(4);
            assertThat(machine.stats().meminfo().get("SwapFree")).isEqualTo((16L << 30) - 4 - 4 * 4);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.cpu(0).load(VA, 8)).isEqualTo(7);
        }
    }

    @Test
    @DisplayName("reclaim passes mlocked pages by (try_to_unmap_one's VM_LOCKED check)")
    void mlockedPagesStay() {
        try (Machine machine = Machine.builder().node(GIB).swap(17 * P).checkInvariantsAfterEveryOperation(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * P, Protection.READ_WRITE, ANON | MapFlags.MAP_LOCKED | MapFlags.MAP_POPULATE);
            assertThat(machine.reclaim(0, 4)).as("try_to_unmap_one stops at VM_LOCKED").isZero();
            assertThat(mm.counters().anonPages()).isEqualTo(4);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }
}
