package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.PteFlag;
import org.vmcore.api.ThpMode;
import org.vmcore.impl.Fixtures;

/**
 * MADV_FREE, MADV_COLD and MADV_PAGEOUT on transparent huge pages, and reclaim of lazy-free ones,
 * beyond the kernel-parity layouts (ThpMadviseParityTest): what the data becomes, with and without
 * a swap device, and a notifier that refuses. Follows mm/madvise.c (madvise_free_huge_pmd,
 * madvise_cold_or_pageout_pte_range) and mm/vmscan.c (shrink_folio_list).
 */
class ThpMadviseTest {
    private static final long K4 = 4096;
    private static final long H = 2 * MIB;
    private static final long VA = 0x40_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    private Machine machine;
    private Cpu cpu;

    @AfterEach
    void close() {
        Fixtures.closeChecked(machine);
    }

    private AddressSpace filledHuge(long swapBytes) {
        Machine.Builder b = Machine.builder().node(GIB).cpus(2).thp(ThpMode.MADVISE)
                .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true);
        machine = swapBytes > 0 ? b.swap(swapBytes).build() : b.build();
        cpu = machine.cpu(0);
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H, Protection.READ_WRITE, ANON);
        assertThat(mm.madvise(VA, H, Advice.HUGEPAGE)).isZero();
        cpu.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            cpu.store(VA + off, 8, off ^ 0x5a5a);
        }
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        return mm;
    }

    private long vmstat(String name) {
        return machine.vmstat().get(name);
    }

    private void assertContents(long skip) {
        for (long off = 0; off < H; off += K4) {
            if (off != skip) {
                assertThat(cpu.load(VA + off, 8)).as("page at +0x%x", off).isEqualTo(off ^ 0x5a5a);
            }
        }
    }

    @Test
    @DisplayName("reclaim with no swap device drops a clean lazy-free huge page: its memory goes, and it reads as zero")
    void reclaimDropsACleanLazyFreeHugePage() {
        AddressSpace mm = filledHuge(0);
        long free = machine.freeFrames();
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        assertThat(mm.counters().anonHugePages()).as("lazy free, still mapped whole").isEqualTo(512);
        assertThat(machine.reclaim(0, 10_000)).isEqualTo(512);
        assertThat(vmstat("pglazyfreed")).isEqualTo(512);
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(machine.freeFrames()).isEqualTo(free + 512);
        assertThat(cpu.load(VA, 8)).isZero();
        assertThat(cpu.load(VA + H - K4, 8)).isZero();
    }

    @Test
    @DisplayName("a write after MADV_FREE keeps the whole huge page from reclaim and from MADV_PAGEOUT")
    void aWriteAfterFreeKeepsTheHugePage() {
        AddressSpace mm = filledHuge(0);
        mm.madvise(VA, H, Advice.FREE);
        cpu.store(VA + 3 * K4, 8, 42);
        machine.reclaim(0, 10_000);
        machine.reclaim(0, 10_000); // the second look, after the write's accessed bit was taken
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("pglazyfreed")).isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(512);
        assertThat(cpu.load(VA + 3 * K4, 8)).isEqualTo(42);
        assertContents(3 * K4);
    }

    @Test
    @DisplayName("MADV_PAGEOUT with swap splits a huge page (thp_swpout_fallback) and swaps its pages; they read back intact")
    void pageoutWithSwapSplitsAndSwapsOut() {
        AddressSpace mm = filledHuge(8 * MIB);
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("thp_swpout_fallback")).isEqualTo(1);
        assertThat(vmstat("thp_split_page")).isEqualTo(1);
        assertThat(vmstat("pswpout")).isEqualTo(512);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertThat(mm.counters().swapPages()).isEqualTo(512);
        assertContents(-1);
    }

    @Test
    @DisplayName("reclaim with swap splits an unused huge page once, counted in thp_swpout_fallback, and swaps it out")
    void reclaimCountsTheSwapoutFallback() {
        AddressSpace mm = filledHuge(8 * MIB);
        machine.reclaim(0, 10_000); // first look: the writes' accessed bits are taken
        machine.reclaim(0, 10_000);
        assertThat(vmstat("thp_swpout_fallback")).isEqualTo(1);
        assertThat(mm.counters().swapPages()).isPositive();
        assertContents(-1);
    }

    @Test
    @DisplayName("MADV_COLD on a whole huge page makes its PMD entry old and keeps it whole; an access makes it young again")
    void coldMakesTheHugeEntryOld() {
        AddressSpace mm = filledHuge(0);
        assertThat(mm.pageTableView().entry(VA, PageTableLevel.PMD).orElseThrow().flags()).contains(PteFlag.ACCESSED);
        assertThat(mm.madvise(VA, H, Advice.COLD)).isZero();
        var pmd = mm.pageTableView().entry(VA, PageTableLevel.PMD).orElseThrow();
        assertThat(pmd.flags()).contains(PteFlag.PSE).doesNotContain(PteFlag.ACCESSED);
        assertThat(vmstat("thp_split_page")).isZero();
        cpu.load(VA + 5 * K4, 8);
        assertThat(mm.pageTableView().entry(VA, PageTableLevel.PMD).orElseThrow().flags()).contains(PteFlag.ACCESSED);
        assertContents(-1);
    }

    @Test
    @DisplayName("a notifier that refuses MADV_PAGEOUT of a lazy-free huge page leaves it mapped and lazy free; the retry drops it")
    void pageoutRefusedByANotifier() {
        AddressSpace mm = filledHuge(0);
        mm.madvise(VA, H, Advice.FREE);
        AtomicBoolean refuse = new AtomicBoolean(true);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (refuse.get()) {
                    throw new IllegalStateException("device busy");
                }
            }
        });
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.madvise(VA, H, Advice.PAGEOUT)).hasMessageContaining("device busy");
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        refuse.set(false);
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("pglazyfreed")).isEqualTo(512);
        assertThat(mm.counters().anonPages()).isZero();
    }

    @Test
    @DisplayName("a lazy-free huge page a fork shares is dropped from neither by MADV_PAGEOUT; the child keeps its data")
    void aForkedLazyFreeHugePageIsNotDroppedByPageout() {
        AddressSpace mm = filledHuge(0);
        mm.madvise(VA, H, Advice.FREE);
        AddressSpace child = mm.fork();
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("pglazyfreed")).isZero();
        assertContents(-1);
        cpu.switchTo(child);
        assertContents(-1);
        child.close();
    }

    @Test
    @DisplayName("MADV_COLLAPSE copies a PTE-mapped huge page, one of whose pages mremap moved away, into a new huge page;"
            + " the old one is queued for a deferred split and goes once its last page is unmapped")
    void collapseOfAPteMappedHugePageWithAPageElsewhere() {
        AddressSpace mm = filledHuge(0);
        long free = machine.freeFrames();
        long away = VA + 64 * MIB;
        int move = MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED;
        assertThat(mm.mremap(VA + 7 * K4, K4, K4, move, away)).isEqualTo(away); // split_huge_pmd, then the page moves
        assertThat(mm.mmap(VA + 7 * K4, K4, Protection.READ_WRITE, ANON)).isEqualTo(VA + 7 * K4); // the hole filled
        assertThat(mm.madvise(VA, H, Advice.HUGEPAGE)).isZero(); // and the VMAs merged again
        assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).isZero(); // collapse_huge_page: the other 511 pages are copied
        assertThat(vmstat("thp_collapse_alloc")).isEqualTo(1);
        assertThat(vmstat("thp_deferred_split_page")).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertContents(7 * K4);
        assertThat(cpu.load(VA + 7 * K4, 8)).isZero();
        assertThat(cpu.load(away, 8)).isEqualTo((7 * K4) ^ 0x5a5a);
        assertThat(machine.freeFrames()).as("the new huge page beside the old one, still partly mapped, and the PTE table at away")
                .isEqualTo(free - 512 - 1);
        mm.munmap(away, K4);
        machine.reclaim(0, 1); // runs the deferred split queue: nothing of the old huge page is mapped any more
        assertThat(machine.freeFrames()).isEqualTo(free);
    }

    /** The huge page of {@link #filledHuge}, its PMD split by an mprotect of its first page and back: 512 PTEs. */
    private void splitToPtes(AddressSpace mm) {
        mm.mprotect(VA, K4, Protection.READ);
        mm.mprotect(VA, K4, Protection.READ_WRITE);
        assertThat(mm.counters().anonHugePages()).isZero();
    }

    @Test
    @DisplayName("a PTE-mapped huge page written after MADV_FREE is kept whole by MADV_PAGEOUT, with every word")
    void aWrittenPteMappedLazyFreeHugePageStays() {
        AddressSpace mm = filledHuge(0);
        splitToPtes(mm);
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        assertThat(vmstat("pglazyfree")).isEqualTo(512);
        cpu.store(VA + 300 * K4, 8, 99);
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero(); // try_to_unmap_one: a dirty entry, folio_set_swapbacked
        assertThat(vmstat("pglazyfreed")).isZero();
        assertThat(vmstat("thp_split_page")).as("kept whole").isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(512);
        assertThat(cpu.load(VA + 300 * K4, 8)).isEqualTo(99);
        assertContents(300 * K4);
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero(); // swap-backed again now: split for swap, as any other
        assertThat(vmstat("thp_swpout_fallback")).isEqualTo(1);
        assertContents(300 * K4);
    }

    @Test
    @DisplayName("a pinned PTE-mapped lazy-free huge page stays through MADV_PAGEOUT; unpinned, it goes")
    void aPinnedPteMappedLazyFreeHugePageStays() {
        AddressSpace mm = filledHuge(0);
        splitToPtes(mm);
        mm.madvise(VA, H, Advice.FREE);
        long free = machine.freeFrames();
        try (var pin = mm.getUserPageFast(VA + 5 * K4, false)) {
            assertThat(pin).isNotNull();
            assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
            assertThat(vmstat("pglazyfreed")).isZero();
            assertContents(-1);
        }
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("pglazyfreed")).isEqualTo(512);
        assertThat(machine.freeFrames()).isEqualTo(free + 512);
        assertThat(cpu.load(VA + 5 * K4, 8)).isZero();
    }

    @Test
    @DisplayName("deferred_split_folio queues a huge page only once some page of it is mapped nowhere: not when a fork"
            + " relative still maps what a munmap took (Linux 6.18: 0, then 1 when the relative exits)")
    void aHugePageARelativeStillMapsWholeIsNotQueuedForSplit() {
        AddressSpace mm = filledHuge(0);
        AddressSpace child = mm.fork();
        child.mprotect(VA, K4, Protection.READ); // both split their PMD: the huge page is mapped by PTEs twice
        child.mprotect(VA, K4, Protection.READ_WRITE);
        splitToPtes(mm);
        mm.munmap(VA, H / 2);
        assertThat(vmstat("thp_deferred_split_page")).isZero();
        child.close(); // the child's zap: the first half is mapped nowhere now, the second still by the parent
        assertThat(vmstat("thp_deferred_split_page")).isEqualTo(1);
        for (long off = H / 2; off < H; off += K4) {
            assertThat(cpu.load(VA + off, 8)).isEqualTo(off ^ 0x5a5a);
        }
    }

    @Test
    @DisplayName("MADV_FREE over what is left of a partly unmapped huge page splits it and makes its 511 pages lazy free"
            + " (Linux 6.18: thp_split_page 1, pglazyfree 511)")
    void freeOfAPartlyUnmappedHugePageSplitsIt() {
        AddressSpace mm = filledHuge(0);
        mm.munmap(VA + H - K4, K4);
        assertThat(mm.madvise(VA, H - K4, Advice.FREE)).isZero(); // madvise_free_pte_range: the batch is short of the folio
        assertThat(vmstat("thp_split_page")).isEqualTo(1);
        assertThat(vmstat("pglazyfree")).isEqualTo(511);
        assertThat(mm.madvise(VA, H - K4, Advice.PAGEOUT)).isZero();
        assertThat(vmstat("pglazyfreed")).isEqualTo(511);
        assertThat(mm.counters().anonPages()).isZero();
    }
}
