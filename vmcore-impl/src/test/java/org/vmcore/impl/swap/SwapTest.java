package org.vmcore.impl.swap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.FaultResult;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;
import org.vmcore.impl.Fixtures;

/**
 * Swap out by reclaim and swap in by fault, from outside: mm/vmscan.c shrink_folio_list with
 * add_to_swap and try_to_unmap (mm/rmap.c try_to_unmap_one), mm/memory.c do_swap_page, fork's
 * copy_nonpresent_pte (swap_duplicate) and zap's free_swap_and_cache.
 */
class SwapTest {
    private static final long P = 4096;
    private static final long VA = 0x5000_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long SWAP_PAGES = 1024;

    private final Machine machine = Machine.builder().node(GIB).cpus(2).swap((SWAP_PAGES + 1) * P)
            .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    private final Cpu cpu = machine.cpu(0);

    @AfterEach
    void close() {
        if (!machine.toString().contains("closed")) {
            Fixtures.closeChecked(machine);
        }
    }

    private long swapFreeKb() {
        return machine.stats().meminfo().get("SwapFree");
    }

    private AddressSpace written(int pages) {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, pages * P, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (int i = 0; i < pages; i++) {
            cpu.store(VA + i * P, 8, 0x1111_0000L + i);
            cpu.store(VA + i * P + P - 8, 8, ~(long) i);
        }
        return mm;
    }

    private void assertContents(AddressSpace mm, int pages) {
        cpu.switchTo(mm);
        for (int i = 0; i < pages; i++) {
            assertThat(cpu.load(VA + i * P, 8)).as("page %d", i).isEqualTo(0x1111_0000L + i);
            assertThat(cpu.load(VA + i * P + P - 8, 8)).isEqualTo(~(long) i);
        }
    }

    @Test
    @DisplayName("reclaim swaps every page out (pswpout, VmSwap, SwapFree) and the faults read them back (do_swap_page: pswpin, maj_flt)")
    void roundTripKeepsContents() {
        assertThat(machine.stats().meminfo().get("SwapTotal")).isEqualTo(SWAP_PAGES * 4);
        assertThat(machine.toString()).contains("swap " + (SWAP_PAGES + 1) * 4 + "K");
        AddressSpace mm = written(64);
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(machine.reclaim(0, 64)).isEqualTo(64);
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(mm.counters().swapPages()).isEqualTo(64);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPOUT)).isEqualTo(64);
        assertThat(swapFreeKb()).isEqualTo((SWAP_PAGES - 64) * 4);
        assertThat(mm.translate(VA)).as("not present").isEqualTo(-1);
        assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_IN);
        assertContents(mm, 64);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPIN)).isEqualTo(64);
        assertThat(mm.counters().majorFaults()).isEqualTo(64);
        assertThat(mm.counters().swapPages()).isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(64);
        assertThat(swapFreeKb()).as("read faults leave the pages in the swap cache with their slots (should_try_to_free_swap)")
                .isEqualTo((SWAP_PAGES - 64) * 4);
        assertThat(machine.stats().meminfo().get("SwapCached")).isEqualTo(64 * 4);
        long faults = mm.counters().majorFaults() + mm.counters().minorFaults();
        cpu.store(VA, 8, 42); // an exclusive page comes back writable: no fault, no COW
        assertThat(mm.counters().majorFaults() + mm.counters().minorFaults()).isEqualTo(faults);
        VmstatSnapshot again = machine.vmstatSnapshot();
        assertThat(machine.reclaim(0, 64)).isEqualTo(64);
        assertThat(machine.vmstatSnapshot().minus(again).get(VmstatCounter.PSWPOUT)).as("only the page written since").isEqualTo(1);
        assertThat(mm.fault(VA, Access.WRITE)).isEqualTo(FaultResult.SWAP_IN);
        assertThat(swapFreeKb()).as("a write fault that maps the page exclusively frees its slot at once")
                .isEqualTo((SWAP_PAGES - 63) * 4);
        assertThat(cpu.load(VA, 8)).isEqualTo(42);
        mm.munmap(VA, 64 * P);
        assertThat(swapFreeKb()).isEqualTo(SWAP_PAGES * 4);
        assertThat(machine.stats().meminfo().get("SwapCached")).isZero();
    }

    @Test
    @DisplayName("a page of a fork tree is unmapped from all three (anon_vma walk); each swaps in its own entry, the first from the device, the others from the swap cache")
    void forkTreeSharesSwapEntries() {
        AddressSpace parent = written(8);
        AddressSpace child = parent.fork();
        AddressSpace grandchild = child.fork();
        assertThat(machine.reclaim(0, 100)).isEqualTo(8);
        for (AddressSpace mm : new AddressSpace[] {parent, child, grandchild}) {
            assertThat(mm.counters().swapPages()).isEqualTo(8);
            assertThat(mm.counters().anonPages()).isZero();
        }
        assertThat(swapFreeKb()).as("one slot per page, counted three times").isEqualTo((SWAP_PAGES - 8) * 4);
        assertThat(child.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_IN);
        assertThat(parent.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_CACHE);
        assertThat(grandchild.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_CACHE);
        assertThat(parent.pageAt(VA)).isEqualTo(child.pageAt(VA)).isEqualTo(grandchild.pageAt(VA));
        assertThat(machine.page(parent.pageAt(VA)).mapcount()).isEqualTo(3);
        assertContents(grandchild, 8);
        assertContents(parent, 8);
        assertContents(child, 8);
        assertThat(swapFreeKb()).as("shared pages stay in the swap cache after read faults").isEqualTo((SWAP_PAGES - 8) * 4);
        parent.close();
        child.close();
        grandchild.close();
        assertThat(swapFreeKb()).as("the zap of the last mapping frees them (free_swap_cache)").isEqualTo(SWAP_PAGES * 4);
    }

    @Test
    @DisplayName("a write to a swapped-in page shared with a fork relative copies it (do_swap_page maps it read-only, do_wp_page copies)")
    void cowAfterSwapIn() {
        AddressSpace parent = written(2);
        AddressSpace child = parent.fork();
        assertThat(machine.reclaim(0, 2)).isEqualTo(2);
        assertThat(child.fault(VA, Access.WRITE)).isEqualTo(FaultResult.SWAP_IN);
        cpu.switchTo(child);
        cpu.store(VA, 8, 7);
        assertThat(cpu.load(VA, 8)).isEqualTo(7);
        cpu.switchTo(parent);
        assertThat(cpu.load(VA, 8)).as("the parent's page is untouched").isEqualTo(0x1111_0000L);
        cpu.store(VA + P, 8, 9); // parent writes the other page, still swapped in both
        cpu.switchTo(child);
        assertThat(cpu.load(VA + P, 8)).isEqualTo(0x1111_0001L);
        assertThat(parent.pageAt(VA)).isNotEqualTo(child.pageAt(VA));
    }

    @Test
    @DisplayName("a clean page still in the swap cache goes out again without a write (shrink_folio_list: pageout only when dirty)")
    void cleanSwapCachePageIsNotWrittenAgain() {
        AddressSpace parent = written(4);
        AddressSpace child = parent.fork();
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        for (int i = 0; i < 4; i++) {
            assertThat(parent.fault(VA + i * P, Access.READ)).isEqualTo(FaultResult.SWAP_IN); // the child's entries keep it cached
        }
        assertThat(machine.stats().meminfo().get("SwapCached")).isEqualTo(16);
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPOUT)).as("the slots hold the contents already")
                .isZero();
        assertThat(parent.counters().swapPages()).isEqualTo(4);
        assertContents(parent, 4);
        assertContents(child, 4);
    }

    @Test
    @DisplayName("munmap, MADV_DONTNEED and exit free the slots (swap_free): SwapFree is back to SwapTotal")
    void zapFreesSlots() {
        AddressSpace parent = written(16);
        AddressSpace child = parent.fork();
        assertThat(machine.reclaim(0, 16)).isEqualTo(16);
        assertThat(parent.madvise(VA, 4 * P, Advice.DONTNEED)).isZero();
        assertThat(parent.counters().swapPages()).isEqualTo(12);
        parent.munmap(VA + 4 * P, 4 * P);
        assertThat(swapFreeKb()).as("the child still names every slot").isEqualTo((SWAP_PAGES - 16) * 4);
        child.close();
        assertThat(swapFreeKb()).isEqualTo((SWAP_PAGES - 8) * 4);
        cpu.switchTo(parent);
        assertThat(cpu.load(VA, 8)).as("DONTNEED: zero-fill").isZero();
        assertThat(cpu.load(VA + 8 * P, 8)).isEqualTo(0x1111_0008L);
        parent.close();
        assertThat(swapFreeKb()).isEqualTo(SWAP_PAGES * 4);
    }

    @Test
    @DisplayName("a full swap device stops reclaim; nothing is lost")
    void fullDevice() {
        machine.close();
        try (Machine small = Machine.builder().node(GIB).swap(9 * P).checkInvariantsAfterEveryOperation(true).build()) {
            Cpu c = small.cpu(0);
            AddressSpace mm = small.createAddressSpace();
            mm.mmap(VA, 20 * P, Protection.READ_WRITE, ANON);
            c.switchTo(mm);
            for (int i = 0; i < 20; i++) {
                c.store(VA + i * P, 8, 100 + i);
            }
            assertThat(small.reclaim(0, 20)).isEqualTo(8);
            assertThat(small.reclaim(0, 20)).isZero();
            assertThat(small.stats().meminfo().get("SwapFree")).isZero();
            assertThat(mm.counters().anonPages()).isEqualTo(12);
            for (int i = 0; i < 20; i++) {
                assertThat(c.load(VA + i * P, 8)).isEqualTo(100 + i);
            }
            assertThat(small.checkInvariants()).isEmpty();
        }
    }

    @Test
    @DisplayName("a notifier that refuses the invalidation stops reclaim there: the exception reaches the caller, no data is lost, invariants hold")
    void throwingNotifier() {
        AddressSpace mm = written(8);
        AtomicInteger calls = new AtomicInteger();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (calls.incrementAndGet() == 4) {
                    throw new IllegalStateException("device busy");
                }
            }
        });
        assertThatThrownBy(() -> machine.reclaim(0, 8)).isInstanceOf(IllegalStateException.class).hasMessage("device busy");
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(mm.counters().swapPages()).isEqualTo(3);
        assertContents(mm, 8);
        assertThat(machine.reclaim(0, 8)).isEqualTo(8);
        assertContents(mm, 8);
    }

    @Test
    @DisplayName("a notifier that refuses MADV_PAGEOUT's swap-out: the isolated pages are put back (reclaim takes them later), nothing is lost")
    void throwingNotifierDuringPageout() {
        AddressSpace mm = written(8);
        AtomicInteger calls = new AtomicInteger();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (range.end() - range.start() == P && calls.incrementAndGet() == 3) {
                    throw new IllegalStateException("device busy");
                }
            }
        });
        assertThatThrownBy(() -> mm.madvise(VA, 8 * P, Advice.PAGEOUT)).hasMessage("device busy");
        assertThat(mm.counters().swapPages()).isEqualTo(2);
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.reclaim(0, 8)).as("no page was left isolated").isEqualTo(6);
        assertContents(mm, 8);
    }

    @Test
    @DisplayName("a notifier that closes the machine during reclaim: the close happens when reclaim ends, and frees everything")
    void closeFromANotifier() {
        AddressSpace mm = written(4);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                machine.close();
            }
        });
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        assertThat(machine.toString()).contains("closed");
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("a notifier whose secondary-TLB callback throws does not stop the swap-out: it completes and the exception reaches the caller")
    void throwingSecondaryTlbCallback() {
        AddressSpace mm = written(4);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
                throw new IllegalArgumentException("iommu gone");
            }
        });
        assertThatThrownBy(() -> machine.reclaim(0, 4)).isInstanceOf(IllegalArgumentException.class);
        assertThat(mm.counters().swapPages()).isEqualTo(4);
        assertThat(machine.checkInvariants()).isEmpty();
        assertContents(mm, 4);
    }

    @Test
    @DisplayName("reclaim passes a recently used page over once (folio_referenced), so MADV_COLD pages go first")
    void coldPagesGoFirst() {
        AddressSpace mm = written(8);
        assertThat(mm.madvise(VA + 4 * P, 4 * P, Advice.COLD)).isZero();
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        assertThat(mm.counters().swapPages()).isEqualTo(4);
        for (int i = 0; i < 4; i++) {
            assertThat(mm.translate(VA + i * P)).as("hot page %d stays", i).isNotEqualTo(-1);
            assertThat(mm.translate(VA + (4 + i) * P)).as("cold page %d went", 4 + i).isEqualTo(-1);
        }
    }

    @Test
    @DisplayName("MADV_PAGEOUT swaps out the pages only this mapping maps and keeps those shared with a child")
    void pageoutSwapsOwnPages() {
        AddressSpace mm = written(8);
        AddressSpace child = mm.fork();
        cpu.switchTo(mm);
        for (int i = 0; i < 4; i++) {
            cpu.store(VA + i * P, 8, 0x1111_0000L + i); // COW: the parent's own copies now
        }
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(mm.madvise(VA, 8 * P, Advice.PAGEOUT)).isZero();
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPOUT)).isEqualTo(4);
        assertThat(mm.counters().swapPages()).isEqualTo(4);
        assertThat(mm.counters().anonPages()).isEqualTo(4);
        assertContents(mm, 8);
        assertContents(child, 8);
    }

    @Test
    @DisplayName("MADV_WILLNEED reads swapped pages into the swap cache (pswpin) without mapping them; the faults are then minor")
    void willneedReadsAhead() {
        AddressSpace mm = written(4);
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(mm.madvise(VA, 4 * P, Advice.WILLNEED)).isZero();
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPIN)).isEqualTo(4);
        assertThat(machine.stats().meminfo().get("SwapCached")).isEqualTo(16);
        assertThat(mm.counters().swapPages()).as("not mapped").isEqualTo(4);
        assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_CACHE);
        assertContents(mm, 4);
        assertThat(mm.counters().majorFaults()).isZero();
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPIN)).isEqualTo(4);
        assertThat(machine.stats().meminfo().get("SwapCached")).as("mapped now, and still cached").isEqualTo(16);
        assertThat(mm.counters().swapPages()).isZero();
    }

    @Test
    @DisplayName("a clean lazy-free page is dropped by reclaim, not swapped (pglazyfreed, no pswpout)")
    void lazyFreeIsDropped() {
        AddressSpace mm = written(4);
        assertThat(mm.madvise(VA, 4 * P, Advice.FREE)).isZero();
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PGLAZYFREED)).isEqualTo(4);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PSWPOUT)).isZero();
        cpu.switchTo(mm);
        assertThat(cpu.load(VA, 8)).isZero();
    }

    @Test
    @DisplayName("move_pages: a swapped-out address is -ENOENT; a swap-cache page migrates with its slot (folio_migrate_mapping)")
    void migrationOfSwapCachePages() {
        machine.close();
        try (Machine two = Machine.builder().node(GIB).node(GIB).swap(65 * P).checkInvariantsAfterEveryOperation(true).build()) {
            Cpu c = two.cpu(0);
            AddressSpace parent = two.createAddressSpace();
            parent.mmap(VA, 2 * P, Protection.READ_WRITE, ANON);
            c.switchTo(parent);
            c.store(VA, 8, 5);
            c.store(VA + P, 8, 6);
            AddressSpace child = parent.fork();
            assertThat(two.reclaim(0, 2)).isEqualTo(2);
            var moved = two.migration().movePages(parent, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            assertThat(moved.status(0)).as("nothing mapped there").isEqualTo(-Errno.ENOENT);
            assertThat(parent.fault(VA, Access.READ)).isEqualTo(FaultResult.SWAP_IN); // in the cache: the child's entry names it
            long old = parent.pageAt(VA);
            moved = two.migration().movePages(parent, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
            assertThat(moved.status(0)).isEqualTo(1);
            assertThat(parent.pageAt(VA)).isNotEqualTo(old);
            assertThat(two.checkInvariants()).isEmpty();
            assertThat(child.fault(VA, Access.READ)).as("the child finds the new page in the cache").isEqualTo(FaultResult.SWAP_CACHE);
            assertThat(child.pageAt(VA)).isEqualTo(parent.pageAt(VA));
            c.switchTo(child);
            assertThat(c.load(VA, 8)).isEqualTo(5);
            assertThat(c.load(VA + P, 8)).isEqualTo(6);
            assertThat(two.stats().meminfo().get("SwapFree")).as("the first page still cached, the parent's second still out")
                    .isEqualTo(62 * 4);
            assertThat(two.checkInvariants()).isEmpty();
        }
    }

    @Test
    @DisplayName("MADV_FREE discards swapped-out pages (madvise_free_pte_range: free_swap_and_cache)")
    void freeDiscardsSwappedPages() {
        AddressSpace mm = written(4);
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        assertThat(mm.madvise(VA, 4 * P, Advice.FREE)).isZero();
        assertThat(mm.counters().swapPages()).isZero();
        assertThat(swapFreeKb()).isEqualTo(SWAP_PAGES * 4);
        cpu.switchTo(mm);
        assertThat(cpu.load(VA + P, 8)).isZero();
    }

    @Test
    @DisplayName("a CPU access that swaps in is charged the cost table's major fault")
    void cpuAccessCostsAMajorFault() {
        AddressSpace mm = written(1);
        assertThat(machine.reclaim(0, 1)).isEqualTo(1);
        cpu.costModel(CostTable.DEFAULT);
        cpu.resetCycles();
        cpu.load(VA, 8);
        assertThat(cpu.cycles()).isGreaterThanOrEqualTo(CostTable.DEFAULT.majorFault());
        assertThat(CostTable.DEFAULT.fault(FaultResult.SWAP_IN, PageSize.SIZE_4K)).isEqualTo(30_000);
        assertThat(CostTable.DEFAULT.fault(FaultResult.SWAP_CACHE, PageSize.SIZE_4K))
                .isEqualTo(CostTable.DEFAULT.minorFault());
    }

    @Test
    @DisplayName("mremap moves swap entries with the mapping; mprotect leaves them; the pages come back at the new address")
    void mremapAndMprotect() {
        AddressSpace mm = written(4);
        assertThat(machine.reclaim(0, 4)).isEqualTo(4);
        mm.mprotect(VA, 4 * P, Protection.READ);
        mm.mprotect(VA, 4 * P, Protection.READ_WRITE);
        long to = mm.mremap(VA, 4 * P, 4 * P, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, VA + (1L << 30));
        cpu.switchTo(mm);
        for (int i = 0; i < 4; i++) {
            assertThat(cpu.load(to + i * P, 8)).isEqualTo(0x1111_0000L + i);
        }
        assertThat(mm.counters().swapPages()).isZero();
    }
}
