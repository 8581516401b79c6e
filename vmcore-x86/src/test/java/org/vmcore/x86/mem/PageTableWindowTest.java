package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.internal.PageTableFrames;
import org.vmcore.x86.internal.PageTableWindow;

class PageTableWindowTest {
    private static final long MIB = 1L << 20;

    @Test
    void theWindowIsAFiveHundredTwelfthOfTheNodeAPowerOfTwoAtMostSixteenMebibytes() {
        assertThat(PageTableFrames.windowFrames((8L << 30) >>> 12)).isEqualTo(4096);
        assertThat(PageTableFrames.windowFrames((1L << 40) >>> 12)).as("capped at 16 MiB").isEqualTo(4096);
        assertThat(PageTableFrames.windowFrames((1L << 30) >>> 12)).isEqualTo(512);
        assertThat(PageTableFrames.windowFrames((24 * MIB) >>> 12)).as("rounded down to a power of two").isEqualTo(8);
        assertThat(PageTableFrames.windowFrames((8 * MIB) >>> 12)).as("none for a small node").isZero();
    }

    @Test
    void tablesComeFromTheWindowUntilItIsFullThenFromTheBuddyAllocator() {
        try (PhysicalMemory memory = new PhysicalMemory(32 * MIB, 32 * MIB)) {
            long free = memory.freeFrames();
            assertThat(SharedSecrets.pageTableFrames(memory).windows()).as("claimed at the first table, not before").isEmpty();
            long first = SharedSecrets.pageTableFrames(memory).tryAllocate(1);
            PageTableWindow window = SharedSecrets.pageTableFrames(memory).windowOf(first);
            assertThat(window).isNotNull();
            assertThat(window.node()).isEqualTo(1);
            assertThat(window.frames()).isEqualTo(16);
            assertThat(memory.nodeOf(window.base())).isEqualTo(1);
            assertThat(window.base() % window.frames()).as("naturally aligned").isZero();
            assertThat(memory.freeFrames()).as("a claimed window's free frames are free memory").isEqualTo(free - 1);
            assertThat(memory.descriptors().flags(first) & FrameFlags.ALLOCATED).isNotZero();
            long[] tables = new long[(int) window.frames() + 2];
            tables[0] = first;
            for (int i = 1; i < tables.length; i++) {
                tables[i] = SharedSecrets.pageTableFrames(memory).tryAllocate(1);
            }
            for (int i = 0; i < window.frames(); i++) {
                assertThat(window.contains(tables[i])).as("table %d", i).isTrue();
            }
            assertThat(window.contains(tables[tables.length - 1])).as("a full window falls back").isFalse();
            assertThat(memory.nodeOf(tables[tables.length - 1])).isEqualTo(1);
            assertThat(memory.freeFrames()).isEqualTo(free - tables.length);
            for (long pfn : tables) {
                memory.free(pfn);
            }
            assertThat(memory.freeFrames()).as("every frame came back").isEqualTo(free);
            assertThat(window.freeFrames()).isEqualTo(window.frames());
            assertThatThrownBy(() -> memory.free(first)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("double free");
            assertThat(window.freeFrames()).as("a refused free changes nothing").isEqualTo(window.frames());
            assertThat(SharedSecrets.pageTableFrames(memory).tryAllocate(1)).as("the most recently freed window frame first, as the buddy allocator does")
                    .isEqualTo(tables[(int) window.frames() - 1]);
        }
    }

    @Test
    void theWindowAvoidsFramesThatAlreadyHoldBytesSoNoFrameEverChangesItsPage() {
        try (PhysicalMemory memory = new PhysicalMemory(32 * MIB)) {
            long data = memory.allocate(0, 0, false);
            memory.contents().write(data << 12, 8, 0x1234);
            var page = SharedSecrets.directMap(memory).pageOrNull(data);
            memory.free(data); // free, but it keeps its bytes and its page
            long table = SharedSecrets.pageTableFrames(memory).tryAllocate(0);
            PageTableWindow window = SharedSecrets.pageTableFrames(memory).windowOf(table);
            assertThat(window.contains(data)).as("the block with a written frame was passed over").isFalse();
            assertThat(SharedSecrets.directMap(memory).pageOrNull(data)).isSameAs(page);
            assertThat(memory.contents().read(data << 12, 8)).isEqualTo(0x1234);
            assertThat(memory.allocator(0).isFree(data)).as("the passed-over block went back").isTrue();
        }
    }

    @Test
    void adoptingRefusesAFrameThatHasAPage() {
        try (PhysicalMemory memory = new PhysicalMemory(32 * MIB)) {
            memory.contents().write(5L << 12, 1, 1);
            var segment = java.lang.foreign.Arena.ofAuto().allocate(8 * 4096);
            assertThatThrownBy(() -> SharedSecrets.directMap(memory).adopt(0, 8, segment)).isInstanceOf(IllegalStateException.class)
                    .hasMessageContaining("0x5");
            assertThat(SharedSecrets.directMap(memory).pageOrNull(0)).as("nothing adopted").isNull();
        }
    }

    @Test
    void aOneTebibyteMachineWithATableOnEachNodeStaysUnderSixtyFourMebibytes() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 39, 1L << 39)) {
            new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
            new PageTable(memory, PagingMode.FOUR_LEVEL, 1);
            assertThat(SharedSecrets.pageTableFrames(memory).windows()).hasSize(2);
            assertThat(memory.offHeapBytes()).as("two 16 MiB windows and the descriptors of their frames")
                    .isLessThan(64 * MIB);
        }
    }

    /**
     * Seeded: tables in a tiny window and outside it (it overflows) translate alike; every walk
     * agrees with a map of what was mapped.
     */
    @Test
    void walksAgreeInsideAndOutsideTheWindow() {
        long seed = Long.getLong("vmcore.seed", 4242L);
        Random random = new Random(seed);
        try (PhysicalMemory memory = new PhysicalMemory(64 * MIB)) {
            PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
            Walker walker = new Walker(memory);
            WalkResult out = new WalkResult();
            Map<Long, Long> mapped = new HashMap<>();
            long base = 0x7000_0000_0000L;
            for (int step = 0; step < 4000; step++) {
                long va = base + ((long) random.nextInt(64) << 30) + ((long) random.nextInt(8) << 21) + ((long) random.nextInt(4) << 12);
                if (mapped.containsKey(va) && random.nextInt(3) == 0) {
                    table.unmap(va, PageSize.SIZE_4K);
                    mapped.remove(va);
                } else if (!mapped.containsKey(va)) {
                    long pfn = 1 + random.nextInt(1000);
                    table.map(va, pfn, PageSize.SIZE_4K, Pte.PRESENT | Pte.RW | Pte.USER);
                    mapped.put(va, pfn);
                }
                long probe = random.nextBoolean() ? va : base + ((long) random.nextInt(64) << 30);
                boolean ok = walker.walk(table, probe + 8, PageFaultCode.USER, out);
                Long want = mapped.get(probe);
                assertThat(ok).as("seed %d step %d: walk of 0x%x", seed, step, probe).isEqualTo(want != null);
                if (ok) {
                    assertThat(out.pagePfn()).as("seed %d step %d", seed, step).isEqualTo(want);
                    assertThat(out.physicalAddress()).isEqualTo((want << 12) + 8);
                }
            }
            PageTableWindow window = SharedSecrets.pageTableFrames(memory).windows()[0];
            assertThat(window.freeFrames()).as("the run filled the window").isZero();
        }
    }
}
