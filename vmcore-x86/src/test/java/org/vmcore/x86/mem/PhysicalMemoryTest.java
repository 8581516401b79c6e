package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;

class PhysicalMemoryTest {
    private static final long TIB = 1L << 40;
    private static final long LIMIT = 64L << 20;

    @Test
    @SuppressWarnings("try") // closes the memory inside the block to measure what close gives back
    void aOneTebibyteMachineOnTwoNodesStartsFastAndSmall() {
        long heapBefore = usedHeap();
        long start = System.nanoTime();
        try (PhysicalMemory memory = new PhysicalMemory(TIB / 2, TIB / 2)) {
            long elapsed = System.nanoTime() - start;
            long heap = usedHeap() - heapBefore;
            assertThat(memory.offHeapBytes()).as("off-heap bytes reserved by creation").isZero();
            assertThat(elapsed).as("creation time in ns").isLessThan(1_000_000_000L);
            assertThat(memory.frameCount()).isEqualTo(TIB >>> 12);
            assertThat(memory.node(1).startPfn()).isEqualTo((TIB / 2) >>> 12);
            assertThat(memory.freeFrames()).isEqualTo(TIB >>> 12);

            // Touch a little of it on both nodes: host memory follows what is touched.
            long a = memory.allocate(0, 18, true);
            long b = memory.allocate(1, 9, true);
            memory.contents().write((a << 12) + 12345, 8, 1);
            memory.contents().write((b << 12) + 4096 * 511, 8, 2);
            long offHeap = memory.offHeapBytes();
            System.out.printf("1 TiB machine: created in %.1f ms; heap for bookkeeping %d bytes;"
                    + " off-heap after touching 2 frames %d bytes%n", elapsed / 1e6, heap, offHeap);
            assertThat(offHeap).as("off-heap bytes after touching two frames")
                    .isEqualTo(2 * 4096 * 40 + (2L << 20)); // two descriptor sections, one shared 2 MiB content slab
            assertThat(heap + offHeap).as("host bytes in all").isLessThan(LIMIT);
            memory.close();
            assertThat(memory.offHeapBytes()).as("close returns every off-heap byte").isZero();
        }
    }

    @Test
    void creationRejectsBadNodeSizesWithClearMessages() {
        assertThatThrownBy(PhysicalMemory::new).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("at least one node");
        assertThatThrownBy(() -> new PhysicalMemory(4096, 100)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("nodeBytes[1]=0x64").hasMessageContaining("multiple of 4096");
        assertThatThrownBy(() -> new PhysicalMemory(0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> new PhysicalMemory(1L << 51, 1L << 51, 4096)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("2^52");
    }

    @Test
    void nodesAreLaidEndToEnd() {
        try (PhysicalMemory memory = new PhysicalMemory(2L << 20, 4L << 20)) {
            assertThat(memory.nodeOf(511)).isZero();
            assertThat(memory.nodeOf(512)).isEqualTo(1);
            assertThat(memory.node(1).endPfn()).isEqualTo(1536);
            assertThatThrownBy(() -> memory.nodeOf(1536)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> memory.node(2)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("node=2");
        }
    }

    @Test
    void useAfterCloseFailsClearly() {
        PhysicalMemory memory = new PhysicalMemory(1L << 20);
        long pfn = memory.allocate(0, 0, true);
        memory.close();
        assertThatThrownBy(() -> memory.allocate(0, 0, true)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> memory.free(pfn)).isInstanceOf(ClosedException.class);
        memory.close(); // idempotent
    }

    private static long usedHeap() {
        Runtime runtime = Runtime.getRuntime();
        for (int i = 0; i < 3; i++) {
            System.gc();
        }
        return runtime.totalMemory() - runtime.freeMemory();
    }
}
