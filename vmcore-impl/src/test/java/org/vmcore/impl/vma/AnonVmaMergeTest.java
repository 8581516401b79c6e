package org.vmcore.impl.vma;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Mapping;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/**
 * Merging of anonymous VMAs that already have an anon_vma, as vma_merge allows it through
 * is_mergeable_anon_vma (equal anon_vmas, or one side without one while the other's
 * anon_vma_chain is singular), and anon_vma_prepare's reuse of a compatible neighbour's anon_vma
 * (find_mergeable_anon_vma / reusable_anon_vma).
 */
class AnonVmaMergeTest {
    private static final int FIXED_ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long BASE = 0x1000_0000L;
    private static final long K4 = 0x1000;

    private final Machine machine = Machine.builder().node(GIB).node(GIB).cpus(1).checkInvariantsAfterEveryOperation(true)
            .build();
    private final Cpu cpu = machine.cpu(0);

    @AfterEach
    void close() {
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    private static List<String> layout(AddressSpace mm) {
        return mm.vmas().stream().map(v -> String.format("%x-%x %s", v.start() - BASE, v.end() - BASE, v.protection()))
                .toList();
    }

    /** Every page of [from, to) is found by rmap at its address in mm, and nowhere else. */
    private void assertRmapFinds(AddressSpace mm, long from, long to) {
        for (long va = from; va < to; va += K4) {
            assertThat(machine.rmap().mappings(mm.pageAt(va))).as("rmap of the page at 0x%x", va)
                    .containsExactly(new Mapping(mm, va));
        }
    }

    /** Migrates the page at va to node 1 and checks that its contents and rmap followed it. */
    private void migrateAndCheck(AddressSpace mm, long va, long expected) {
        long before = mm.pageAt(va);
        MovePagesResult r = machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
        assertThat(r.status(0)).as("moved to node 1").isEqualTo(1);
        assertThat(mm.pageAt(va)).isNotEqualTo(before);
        assertThat(machine.rmap().mappings(mm.pageAt(va))).containsExactly(new Mapping(mm, va));
        assertThat(cpu.load(va, 8)).isEqualTo(expected);
    }

    @Test
    @DisplayName("vma_merge: a new mapping next to a faulted one joins it (is_mergeable_anon_vma, singular chain)")
    void aFreshMappingMergesWithAFaultedNeighbourOnEitherSide() {
        AddressSpace mm = machine.createAddressSpace();
        cpu.switchTo(mm);
        mm.mmap(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        cpu.store(BASE + 4 * K4, 8, 1);
        mm.mmap(BASE + 8 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON); // above: prev has the anon_vma
        assertThat(layout(mm)).containsExactly("4000-c000 rw-");
        mm.mmap(BASE, 4 * K4, Protection.READ_WRITE, FIXED_ANON); // below: next has the anon_vma
        assertThat(layout(mm)).as("as /proc/self/maps shows one line").containsExactly("0-c000 rw-");
        cpu.store(BASE, 8, 2);
        cpu.store(BASE + 8 * K4, 8, 3);
        assertRmapFinds(mm, BASE, BASE + K4);
        assertRmapFinds(mm, BASE + 4 * K4, BASE + 5 * K4);
        assertRmapFinds(mm, BASE + 8 * K4, BASE + 9 * K4);
        migrateAndCheck(mm, BASE + 4 * K4, 1);
        migrateAndCheck(mm, BASE, 2);
        migrateAndCheck(mm, BASE + 8 * K4, 3);
    }

    @Test
    @DisplayName("anon_vma_prepare reuses the neighbour's anon_vma (find_mergeable_anon_vma), so mprotect can merge")
    void faultedNeighboursOfDifferentProtectionMergeAfterMprotect() {
        AddressSpace mm = machine.createAddressSpace();
        cpu.switchTo(mm);
        mm.mmap(BASE, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        mm.mmap(BASE + 4 * K4, 4 * K4, Protection.READ, FIXED_ANON);
        assertThat(layout(mm)).containsExactly("0-4000 rw-", "4000-8000 r--");
        cpu.store(BASE, 8, 7);
        mm.mprotect(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE);
        assertThat(layout(mm)).as("B had no anon_vma yet").containsExactly("0-8000 rw-");
        // The same with both faulted before the mprotect.
        mm.mmap(BASE + 8 * K4, 4 * K4, Protection.READ, FIXED_ANON);
        assertThat(cpu.load(BASE + 8 * K4, 8)).isZero();
        mm.mmap(BASE + 12 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        cpu.store(BASE + 12 * K4, 8, 9);
        mm.mprotect(BASE + 8 * K4, 4 * K4, Protection.READ_WRITE);
        // The read mapped the zero page, which needs no anon_vma (do_anonymous_page): the third VMA
        // found no neighbour's to reuse and took its own, so the second merges with the first only.
        assertThat(layout(mm)).containsExactly("0-c000 rw-", "c000-10000 rw-");
        cpu.store(BASE + 8 * K4, 8, 8);
        assertRmapFinds(mm, BASE, BASE + K4);
        assertRmapFinds(mm, BASE + 8 * K4, BASE + 9 * K4);
        assertRmapFinds(mm, BASE + 12 * K4, BASE + 13 * K4);
        migrateAndCheck(mm, BASE + 12 * K4, 9);
        migrateAndCheck(mm, BASE, 7);
        migrateAndCheck(mm, BASE + 8 * K4, 8);
    }

    @Test
    @DisplayName("a forked VMA's anon_vma_chain is not singular: no merge with a fresh neighbour, the parent's merges")
    void aForkedChildsVmaDoesNotMergeWithAFreshNeighbour() {
        AddressSpace parent = machine.createAddressSpace();
        cpu.switchTo(parent);
        parent.mmap(BASE, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        cpu.store(BASE, 8, 5);
        AddressSpace child = parent.fork();
        child.mmap(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        assertThat(layout(child)).containsExactly("0-4000 rw-", "4000-8000 rw-");
        cpu.switchTo(child);
        cpu.store(BASE + 4 * K4, 8, 6); // anon_vma_prepare must not reuse the child's non-singular neighbour either
        child.mprotect(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE);
        assertThat(layout(child)).containsExactly("0-4000 rw-", "4000-8000 rw-");
        assertThat(machine.rmap().mappings(child.pageAt(BASE))).containsExactlyInAnyOrder(new Mapping(parent, BASE),
                new Mapping(child, BASE));
        assertRmapFinds(child, BASE + 4 * K4, BASE + 5 * K4);
        parent.mmap(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        assertThat(layout(parent)).as("the parent's chain is singular").containsExactly("0-8000 rw-");
        cpu.switchTo(parent);
        cpu.store(BASE, 8, 15); // breaks COW: the child keeps 5
        assertThat(cpu.load(BASE, 8)).isEqualTo(15);
        cpu.switchTo(child);
        assertThat(cpu.load(BASE, 8)).isEqualTo(5);
        migrateAndCheck(child, BASE + 4 * K4, 6);
        child.close();
        parent.close();
    }
}
