package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableEntry;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.PageTableView;
import org.vmcore.api.PagingMode;
import org.vmcore.api.Protection;
import org.vmcore.api.PteFlag;
import org.vmcore.impl.Fixtures;
import org.vmcore.x86.pgtable.Pte;

/** The read-only page-table view: walks, single entries, leaf iteration and flag decoding. */
class PageTableViewTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    record Seen(long va, PageTableLevel level, long raw, long pa) {
    }

    private static List<Seen> leaves(AddressSpace mm, long start, long end) {
        List<Seen> out = new ArrayList<>();
        assertThat(mm.pageTableView().forEachLeaf(start, end, (va, level, raw, pa) -> out.add(new Seen(va, level, raw, pa))))
                .isTrue();
        return out;
    }

    @Test
    void aWalkReadsOneEntryPerLevelChainedFromCr3ToTheFrame() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(VA + 4096 + 8, 8, 42);
            List<PageTableEntry> walk = mm.pageTableView().walk(VA + 4096 + 8);
            assertThat(walk).extracting(PageTableEntry::level)
                    .containsExactly(PageTableLevel.PGD, PageTableLevel.PUD, PageTableLevel.PMD, PageTableLevel.PTE);
            assertThat(walk.getFirst().tablePa()).isEqualTo(mm.cr3());
            for (int i = 0; i + 1 < walk.size(); i++) {
                assertThat(walk.get(i).pa()).as("each entry points to the next table").isEqualTo(walk.get(i + 1).tablePa());
                assertThat(walk.get(i).leaf()).isFalse();
            }
            PageTableEntry pte = walk.getLast();
            assertThat(pte.va()).isEqualTo(VA + 4096);
            assertThat(pte.index()).isEqualTo(1);
            assertThat(pte.leaf()).isTrue();
            assertThat(pte.pa()).isEqualTo(mm.translate(VA + 4096));
            assertThat(machine.readPhysical(pte.pa() + 8, 8)).isEqualTo(42);
            for (PageTableEntry e : walk) {
                assertThat(machine.readPhysical(e.entryPa(), 8)).as("the raw entry is the one in memory").isEqualTo(e.raw());
            }
            assertThat(pte.flags()).contains(PteFlag.PRESENT, PteFlag.RW, PteFlag.USER, PteFlag.ACCESSED, PteFlag.DIRTY, PteFlag.NX)
                    .doesNotContain(PteFlag.GLOBAL, PteFlag.PSE);
            assertThat(mm.pageTableView().entry(VA + 4096, PageTableLevel.PTE)).contains(pte);
            assertThat(mm.pageTableView().entry(VA + 2 * 4096, PageTableLevel.PTE)).get().satisfies(e -> {
                assertThat(e.none()).as("never touched").isTrue();
                assertThat(e.pa()).isEqualTo(-1);
            });
            assertThat(mm.pageTableView().walk(VA + GIB)).as("a hole: the walk stops at the empty PUD entry").hasSize(2);
            assertThat(mm.pageTableView().entry(VA + GIB, PageTableLevel.PMD)).as("no PMD table covers it").isEmpty();
        }
    }

    @Test
    void aSharedPmdTableIsTheSameTableFromBothAddressSpaces() {
        try (Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 600).build()) {
            Fixtures.SharedWindow w = Fixtures.sharedWindow(machine, GIB, 5 * GIB, true);
            w.b().fault(5 * GIB, Access.READ); // huge_pmd_share
            PageTableEntry a = w.a().pageTableView().entry(GIB + 6 * MIB, PageTableLevel.PMD).orElseThrow();
            PageTableEntry b = w.b().pageTableView().entry(5 * GIB + 6 * MIB, PageTableLevel.PMD).orElseThrow();
            assertThat(b.tablePa()).as("one PMD table").isEqualTo(a.tablePa());
            assertThat(b.entryPa()).isEqualTo(a.entryPa());
            assertThat(b.raw()).isEqualTo(a.raw());
            assertThat(a.leaf()).isTrue();
            assertThat(a.flags()).contains(PteFlag.PRESENT, PteFlag.PSE, PteFlag.USER);
            assertThat(a.va()).isEqualTo(GIB + 6 * MIB);
            assertThat(w.a().pageTableView().entry(GIB, PageTableLevel.PUD).orElseThrow().pa()).isEqualTo(a.tablePa());
            List<Seen> seenByA = leaves(w.a(), GIB, 2 * GIB);
            List<Seen> seenByB = leaves(w.b(), 5 * GIB, 6 * GIB);
            assertThat(seenByA).hasSize(512).allMatch(s -> s.level() == PageTableLevel.PMD);
            assertThat(seenByB).as("b sees a's 512 pages through the shared table").extracting(Seen::pa)
                    .isEqualTo(seenByA.stream().map(Seen::pa).toList());
            assertThat(seenByA.get(3).va()).isEqualTo(GIB + 6 * MIB);
            assertThat(seenByA.get(3).pa()).isEqualTo(w.a().translate(GIB + 6 * MIB));
            List<Seen> straddling = leaves(w.a(), GIB + 6 * MIB + 4096, GIB + 8 * MIB);
            assertThat(straddling).extracting(Seen::va).as("the entry's own address, below start").containsExactly(GIB + 6 * MIB);
        }
    }

    @Test
    void leavesAreVisitedInOrderAndTheVisitorCanStop() {
        long seed = 1717;
        System.out.println("seed " + seed);
        Random random = new Random(seed);
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * MIB, Protection.READ_WRITE, ANON);
            List<Long> touched = new ArrayList<>();
            for (int i = 0; i < 40; i++) {
                long va = VA + (random.nextLong(1024) << 12);
                mm.fault(va, Access.WRITE);
                if (!touched.contains(va)) {
                    touched.add(va);
                }
            }
            touched.sort(null);
            List<Seen> seen = leaves(mm, VA, VA + 4 * MIB);
            assertThat(seen).extracting(Seen::va).isEqualTo(touched);
            for (Seen s : seen) {
                assertThat(s.level()).isEqualTo(PageTableLevel.PTE);
                assertThat(s.pa()).isEqualTo(mm.translate(s.va()));
                assertThat(PteFlag.DIRTY.isSetIn(s.raw(), s.level())).isTrue();
            }
            List<Long> firstThree = new ArrayList<>();
            boolean completed = mm.pageTableView().forEachLeaf(VA, VA + 4 * MIB, (va, level, raw, pa) -> {
                firstThree.add(va);
                return firstThree.size() < 3;
            });
            assertThat(completed).isFalse();
            assertThat(firstThree).isEqualTo(touched.subList(0, 3));
        }
    }

    @Test
    void protNoneAndMigrationEntriesAreVisitedToo() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            long pa = mm.translate(VA);
            long pfn = mm.pageAt(VA + 4096);
            mm.mprotect(VA, 4096, Protection.NONE);
            machine.rmap().tryToMigrate(pfn); // leaves a migration entry at VA + 4096
            List<Seen> seen = leaves(mm, VA, VA + 2 * 4096);
            assertThat(seen).hasSize(2);
            assertThat(seen.get(0).pa()).as("PROT_NONE: pte_present, the PFN un-inverted").isEqualTo(pa);
            assertThat(seen.get(1).pa()).as("a migration entry maps nothing").isEqualTo(-1);
            // PAGE_NONE (arch/x86/include/asm/pgtable_types.h) is _PAGE_PROTNONE | _PAGE_ACCESSED: no P, no U/S, no R/W.
            assertThat(PteFlag.decode(seen.get(0).raw(), PageTableLevel.PTE)).contains(PteFlag.PROTNONE, PteFlag.ACCESSED)
                    .doesNotContain(PteFlag.PRESENT, PteFlag.USER, PteFlag.RW, PteFlag.GLOBAL);
            assertThat(PteFlag.decode(seen.get(1).raw(), PageTableLevel.PTE)).as("a migration entry has no flags").isEmpty();
            assertThat(mm.pageTableView().entry(VA + 4096, PageTableLevel.PTE).orElseThrow().none()).isFalse();
            machine.rmap().removeMigrationEntries(pfn, pfn);
        }
    }

    @Test
    void fiveLevelPagingHasAP4dAndFourLevelFoldsIt() {
        try (Machine machine = Machine.builder().pagingMode(PagingMode.FIVE_LEVEL).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long high = 1L << 50;
            mm.mmap(high, 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            assertThat(mm.pageTableView().walk(high)).extracting(PageTableEntry::level).containsExactly(PageTableLevel.PGD,
                    PageTableLevel.P4D, PageTableLevel.PUD, PageTableLevel.PMD, PageTableLevel.PTE);
            assertThat(mm.pageTableView().walk(high).getLast().pa()).isEqualTo(mm.translate(high));
            assertThat(mm.pageTableView().entry(high, PageTableLevel.P4D)).isPresent();
        }
        try (Machine machine = Machine.builder().build()) {
            PageTableView view = machine.createAddressSpace().pageTableView();
            assertThatThrownBy(() -> view.entry(VA, PageTableLevel.P4D)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("level=P4D").hasMessageContaining("4-level");
        }
    }

    @Test
    void flagBitsAreTheArchitecturesAndTheKernelsNames() {
        // arch/x86/include/asm/pgtable_types.h: _PAGE_BIT_* positions; the x86 layer's Pte holds the same values.
        long present = Pte.PRESENT | Pte.RW | Pte.USER | Pte.PWT | Pte.PCD | Pte.ACCESSED | Pte.DIRTY | Pte.GLOBAL | Pte.SPECIAL
                | Pte.UFFD_WP | Pte.SOFT_DIRTY | Pte.NX;
        assertThat(PteFlag.decode(present, PageTableLevel.PTE)).containsExactly(PteFlag.PRESENT, PteFlag.RW, PteFlag.USER,
                PteFlag.PWT, PteFlag.PCD, PteFlag.ACCESSED, PteFlag.DIRTY, PteFlag.GLOBAL, PteFlag.SPECIAL, PteFlag.UFFD_WP,
                PteFlag.SOFT_DIRTY, PteFlag.NX);
        assertThat(PteFlag.decode(Pte.PRESENT | Pte.PAT, PageTableLevel.PTE)).containsExactly(PteFlag.PRESENT, PteFlag.PAT);
        assertThat(PteFlag.decode(Pte.PRESENT | Pte.PSE, PageTableLevel.PMD)).containsExactly(PteFlag.PRESENT, PteFlag.PSE);
        assertThat(PteFlag.decode(Pte.PRESENT | Pte.PSE | Pte.PAT_LARGE, PageTableLevel.PUD)).containsExactly(PteFlag.PRESENT,
                PteFlag.PSE, PteFlag.PAT);
        assertThat(PteFlag.decode(Pte.PRESENT | Pte.PAT_LARGE, PageTableLevel.PTE)).as("bit 12 of a PTE is PFN bit 0")
                .containsExactly(PteFlag.PRESENT);
        assertThat(PteFlag.decode(Pte.PROTNONE | Pte.USER | Pte.ACCESSED, PageTableLevel.PTE)).containsExactly(PteFlag.USER,
                PteFlag.ACCESSED, PteFlag.PROTNONE);
        assertThat(PteFlag.decode(0, PageTableLevel.PTE)).isEmpty();
        assertThatThrownBy(() -> PteFlag.RW.isSetIn(Pte.RW, null)).isInstanceOf(InvalidArgumentException.class);
    }

    @Test
    void aViewOfAnExitedAddressSpaceIsClosed() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            PageTableView view = mm.pageTableView();
            mm.close();
            assertThatThrownBy(() -> view.walk(VA)).isInstanceOf(ClosedException.class);
            assertThatThrownBy(mm::pageTableView).isInstanceOf(ClosedException.class);
        }
    }
}
