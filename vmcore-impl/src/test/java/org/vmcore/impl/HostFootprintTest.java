package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/**
 * The design's host-memory budget: at most 80 bytes per mapped 4 KiB page, contents excluded
 * (Linux spends an 8-byte PTE and a 64-byte struct page).
 */
class HostFootprintTest {
    private static final int PAGES = 1 << 16;

    @Test
    void aMappedAnonymousPageCostsAtMostEightyHostBytesBesidesItsContents() {
        try (Machine machine = Machine.builder().node(4 * GIB).build()) {
            SimMachine sim = (SimMachine) machine;
            AddressSpace mm = machine.createAddressSpace();
            int flags = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE;
            mm.mmap(0, 4096, Protection.READ_WRITE, flags); // the fixed costs: window, first sections
            long offHeapBefore = sim.offHeapBytes();
            long tablesBefore = mm.counters().pageTablePages();
            long heapBefore = usedHeap();
            mm.mmap(0, (long) PAGES * 4096, Protection.READ_WRITE, flags);
            long heap = usedHeap() - heapBefore;
            // Populated anonymous memory reads as zero and holds no contents; its page tables sit in
            // the page-table window reserved before, so they are counted here by hand.
            long tables = (mm.counters().pageTablePages() - tablesBefore) * 4096;
            long offHeap = sim.offHeapBytes() - offHeapBefore + tables;
            assertThat(mm.counters().anonPages()).as("every page is mapped, the first mapping's one too").isEqualTo(PAGES + 1L);
            assertThat(tables).as("the page tables were counted").isPositive();
            double perPage = (double) (offHeap + Math.max(0, heap)) / PAGES;
            System.out.printf("host bytes per mapped 4 KiB page, contents excluded: %.1f (off-heap %.1f, heap %.1f)%n",
                    perPage, (double) offHeap / PAGES, (double) heap / PAGES);
            assertThat(perPage).isLessThanOrEqualTo(80);
        }
    }

    private static long usedHeap() {
        Runtime rt = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        return rt.totalMemory() - rt.freeMemory();
    }
}
