package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.function.Consumer;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;

/**
 * The layouts of {@code linux-check/vma_rules.c}, replayed on vmcore. Each test states what the
 * real kernel printed for the same calls (Linux 6.18 on the project's machine, via
 * {@code linux-check/run.sh}); vmcore must give the same answer.
 */
class LinuxReferenceTest {
    private static final long PAGE = 4096;
    private static final long BASE = 0x1_0000_0000L;
    private static final int FIXED = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED_NOREPLACE;

    private static void run(Consumer<AddressSpace> body) {
        try (Machine machine = Machine.builder().checkInvariantsAfterEveryOperation(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            body.accept(mm);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    private static long vmasIn(AddressSpace mm, long start, long end) {
        return mm.vmas().stream().filter(v -> v.start() < end && v.end() > start).count();
    }

    private static void write(AddressSpace mm, long va) {
        mm.fault(va, org.vmcore.api.Access.WRITE);
    }

    @Test
    @DisplayName("fresh neighbour of a faulted anonymous VMA: 1 VMA (vma_merge, is_mergeable_anon_vma)")
    void aFreshNeighbourOfAFaultedVmaMerges() {
        run(mm -> {
            mm.mmap(BASE, 4 * PAGE, Protection.READ_WRITE, FIXED);
            write(mm, BASE);
            mm.mmap(BASE + 4 * PAGE, 4 * PAGE, Protection.READ_WRITE, FIXED);
            assertThat(vmasIn(mm, BASE, BASE + 8 * PAGE)).isEqualTo(1);
        });
    }

    @Test
    @DisplayName("faulted neighbours rw- and r--, then mprotect to rw-: 2 VMAs before, 1 after")
    void faultedNeighboursMergeAfterMprotect() {
        run(mm -> {
            mm.mmap(BASE, 4 * PAGE, Protection.READ_WRITE, FIXED);
            mm.mmap(BASE + 4 * PAGE, 4 * PAGE, Protection.READ, FIXED);
            write(mm, BASE);
            mm.fault(BASE + 4 * PAGE, org.vmcore.api.Access.READ);
            mm.mprotect(BASE + 4 * PAGE, 4 * PAGE, Protection.READ_WRITE);
            write(mm, BASE + 4 * PAGE);
            mm.mprotect(BASE + 4 * PAGE, 4 * PAGE, Protection.READ);
            mm.fault(BASE + 4 * PAGE, org.vmcore.api.Access.READ);
            assertThat(vmasIn(mm, BASE, BASE + 8 * PAGE)).isEqualTo(2);
            mm.mprotect(BASE + 4 * PAGE, 4 * PAGE, Protection.READ_WRITE);
            assertThat(vmasIn(mm, BASE, BASE + 8 * PAGE)).isEqualTo(1);
        });
    }

    @Test
    @DisplayName("mprotect of the middle with the same protection: 1 VMA (mprotect_fixup returns early)")
    void mprotectWithTheSameProtectionDoesNotSplit() {
        run(mm -> {
            mm.mmap(BASE, 8 * PAGE, Protection.READ_WRITE, FIXED);
            write(mm, BASE);
            mm.mprotect(BASE + 2 * PAGE, 2 * PAGE, Protection.READ_WRITE);
            assertThat(vmasIn(mm, BASE, BASE + 8 * PAGE)).isEqualTo(1);
        });
    }

    @Test
    @DisplayName("forked child's faulted VMA and a fresh faulted neighbour: 2 VMAs (the child's anon_vma_chain is not singular)")
    void aForkedChildsVmaDoesNotMergeWithAFreshNeighbour() {
        run(parent -> {
            parent.mmap(BASE, 4 * PAGE, Protection.READ_WRITE, FIXED);
            write(parent, BASE);
            AddressSpace child = parent.fork();
            write(child, BASE + PAGE);
            child.mmap(BASE + 4 * PAGE, 4 * PAGE, Protection.READ_WRITE, FIXED);
            write(child, BASE + 4 * PAGE);
            assertThat(vmasIn(child, BASE, BASE + 8 * PAGE)).isEqualTo(2);
            child.close();
        });
    }

    @Test
    @DisplayName("the page at 2^47-4096 cannot be mapped (ENOMEM), the one below can, a hint there is ignored")
    void taskSizeMax() {
        run(mm -> {
            long last = (1L << 47) - PAGE;
            assertThatThrownBy(() -> mm.mmap(last, PAGE, Protection.READ, FIXED))
                    .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("ENOMEM");
            assertThat(mm.mmap(last - PAGE, PAGE, Protection.READ, FIXED)).isEqualTo(last - PAGE);
            mm.munmap(last - PAGE, PAGE);
            assertThat(mm.mmap(last, PAGE, Protection.READ, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS)).isNotEqualTo(last);
        });
    }

    @Test
    @DisplayName("an 8-byte store across into a read-only page: SIGSEGV, first half unwritten")
    void aStoreAcrossIntoAReadOnlyPageWritesNothing() {
        try (Machine machine = Machine.builder().checkInvariantsAfterEveryOperation(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(BASE, 2 * PAGE, Protection.READ_WRITE, FIXED);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            for (long va = BASE; va < BASE + 2 * PAGE; va += 8) {
                cpu.store(va, 8, 0x1111_1111_1111_1111L);
            }
            mm.mprotect(BASE + PAGE, PAGE, Protection.READ);
            assertThatThrownBy(() -> cpu.store(BASE + PAGE - 4, 8, 0x2222_2222_2222_2222L))
                    .isInstanceOf(SegmentationFaultException.class);
            assertThat(cpu.load(BASE + PAGE - 4, 4)).isEqualTo(0x1111_1111L);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }
}
