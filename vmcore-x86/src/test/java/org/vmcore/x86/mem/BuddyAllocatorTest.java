package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.InvalidArgumentException;

class BuddyAllocatorTest {

    @Test
    void aNodeStartsAsMaximalAlignedBlocks() {
        try (PhysicalMemory memory = new PhysicalMemory(3L << 30, (1L << 30) + (6L << 20))) {
            BuddyAllocator first = memory.allocator(0);
            assertThat(first.freeBlocks(18)).isEqualTo(3);
            assertThat(first.freeFrames()).isEqualTo(3L << 18);
            BuddyAllocator second = memory.allocator(1);
            // node 1 starts at pfn 3 GiB: one 1 GiB block, then 4 MiB + 2 MiB
            assertThat(second.freeBlockHeads(18)).containsExactly(3L << 18);
            assertThat(second.freeBlocks(10)).isEqualTo(1);
            assertThat(second.freeBlocks(9)).isEqualTo(1);
            assertThat(second.freeFrames()).isEqualTo((1L << 18) + 1536);
        }
    }

    @Test
    void allocationsAreNaturallyAlignedLowestFirstAndDescribed() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 30)) {
            BuddyAllocator allocator = memory.allocator(0);
            long a = allocator.allocate(0);
            long b = allocator.allocate(9);
            long c = allocator.allocate(0);
            assertThat(a).isZero();
            assertThat(b % 512).isZero();
            assertThat(c).isEqualTo(1);
            FrameDescriptors d = memory.descriptors();
            assertThat(d.refcount(b)).isEqualTo(1);
            assertThat(d.order(b)).isEqualTo(9);
            assertThat(d.test(b, FrameFlags.HEAD | FrameFlags.ALLOCATED)).isTrue();
            assertThat(d.test(a, FrameFlags.HEAD)).isFalse();
            assertThat(allocator.freeFrames()).isEqualTo((1L << 18) - 514);
        }
    }

    @ParameterizedTest
    @ValueSource(longs = {1, 2, 3, 42, 0xC0FFEE})
    void randomAllocAndFreeNeverHandsOutAFrameTwiceAndCoalescesBack(long seed) {
        try (PhysicalMemory memory = new PhysicalMemory(64L << 20, 32L << 20)) {
            Random random = new Random(seed);
            List<long[]> initial = freeLists(memory);
            BitSet inUse = new BitSet();
            List<Long> live = new ArrayList<>();
            for (int step = 0; step < 20_000; step++) {
                if (live.isEmpty() || random.nextInt(100) < 55) {
                    int node = random.nextInt(2);
                    int order = random.nextInt(100) < 80 ? random.nextInt(3) : random.nextInt(13);
                    long pfn = memory.tryAllocate(node, order, false);
                    if (pfn < 0) {
                        continue;
                    }
                    int frames = 1 << order;
                    assertThat(pfn % frames).as("seed %d step %d: alignment", seed, step).isZero();
                    assertThat(memory.node(node).contains(pfn)).as("seed %d step %d: node", seed, step).isTrue();
                    assertThat(inUse.get((int) pfn, (int) pfn + frames).isEmpty())
                            .as("seed %d step %d: pfn 0x%x order %d handed out twice", seed, step, pfn, order).isTrue();
                    inUse.set((int) pfn, (int) pfn + frames);
                    live.add(pfn);
                } else {
                    long pfn = live.remove(random.nextInt(live.size()));
                    int frames = 1 << memory.descriptors().order(pfn);
                    memory.free(pfn);
                    inUse.clear((int) pfn, (int) pfn + frames);
                }
                assertThat(memory.freeFrames()).as("seed %d step %d: free count", seed, step)
                        .isEqualTo(memory.frameCount() - inUse.cardinality());
            }
            for (long pfn : live) {
                memory.free(pfn);
            }
            assertThat(freeLists(memory)).as("seed %d: coalescing restores the initial free lists", seed)
                    .usingRecursiveFieldByFieldElementComparator().isEqualTo(initial);
            for (int node = 0; node < 2; node++) {
                for (int order = 0; order <= BuddyAllocator.MAX_ORDER; order++) {
                    assertThat(memory.allocator(node).freeBlockHeads(order))
                            .as("seed %d node %d order %d", seed, node, order)
                            .containsExactly(initial.get(node * 19 + order));
                }
            }
        }
    }

    @Test
    void doubleFreeAndTailFreeAreRejectedWithStateUnchanged() {
        try (PhysicalMemory memory = new PhysicalMemory(16L << 20)) {
            long pfn = memory.allocate(0, 4, false);
            long free = memory.freeFrames();
            assertThatThrownBy(() -> memory.free(pfn + 1)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("pfn=0x" + Long.toHexString(pfn + 1)).hasMessageContaining("allocated block");
            assertThat(memory.freeFrames()).isEqualTo(free);
            memory.free(pfn);
            long afterFree = memory.freeFrames();
            assertThatThrownBy(() -> memory.free(pfn)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("double free");
            assertThat(memory.freeFrames()).isEqualTo(afterFree);
            assertThatThrownBy(() -> memory.free(1L << 40)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("frame count");
            assertThatThrownBy(() -> memory.allocator(0).allocate(19)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("order=19");
            assertThatThrownBy(() -> memory.allocate(1, 0, false)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("node=1");
        }
    }

    @Test
    void exhaustionReturnsMinusOneAndAllocateThrows() {
        try (PhysicalMemory memory = new PhysicalMemory(8L << 12)) {
            assertThat(memory.tryAllocate(0, 3, false)).isZero();
            assertThat(memory.tryAllocate(0, 0, false)).isEqualTo(-1);
            assertThatThrownBy(() -> memory.allocate(0, 0, false))
                    .isInstanceOf(org.vmcore.api.OutOfMemoryException.class).hasMessageContaining("node 0");
        }
    }

    private static List<long[]> freeLists(PhysicalMemory memory) {
        List<long[]> lists = new ArrayList<>();
        for (int node = 0; node < memory.nodes().size(); node++) {
            for (int order = 0; order <= BuddyAllocator.MAX_ORDER; order++) {
                lists.add(memory.allocator(node).freeBlockHeads(order));
            }
        }
        return lists;
    }
}
