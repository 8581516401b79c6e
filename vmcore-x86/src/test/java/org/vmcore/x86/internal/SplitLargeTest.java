package org.vmcore.x86.internal;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * split_page of a transparent huge page ({@link MemMap#splitLarge}): each 4 KiB page becomes a
 * frame of its own already carrying the flags it is given, as __split_folio_to_order copies
 * PG_locked from the head, so that a thread waiting on the lock of the folio a page belongs to
 * (migration_entry_wait on a page of a huge page being split) never finds it unlocked midway.
 */
class SplitLargeTest {
    private static final int NR = 1 << MemMap.LARGE_ORDER;

    @Test
    void aPageIsNeverSeenUnlockedWhileItsHugePageIsSplit() throws InterruptedException {
        try (PhysicalMemory memory = new PhysicalMemory(64L << 20)) {
            MemMap d = SharedSecrets.memMap(memory);
            for (int round = 0; round < 200; round++) {
                long head = memory.tryAllocate(0, MemMap.LARGE_ORDER, false);
                assertThat(head).isNotNegative();
                d.setFlags(head, FrameFlags.ANON | FrameFlags.LARGE_RMAPPABLE | FrameFlags.LOCKED);
                AtomicBoolean done = new AtomicBoolean();
                AtomicLong unlocked = new AtomicLong();
                AtomicLong looks = new AtomicLong();
                Thread waiter = new Thread(() -> {
                    while (!done.get()) {
                        for (int i = NR - 1; i > 0; i -= 7) { // from the end: the split reaches those last
                            long folio = d.folio(head + i);
                            looks.incrementAndGet();
                            if ((d.flags(folio) & FrameFlags.LOCKED) == 0) {
                                unlocked.incrementAndGet();
                            }
                        }
                    }
                });
                waiter.start();
                while (looks.get() == 0) {
                    Thread.onSpinWait();
                }
                d.splitLarge(head, FrameFlags.ANON | FrameFlags.LOCKED);
                done.set(true);
                waiter.join();
                assertThat(unlocked.get()).as("round %d: looks at an unlocked page of the huge page being split", round).isZero();
                for (int i = 0; i < NR; i++) {
                    assertThat(d.order(head + i)).isZero();
                    assertThat(d.refcount(head + i)).isEqualTo(1);
                    assertThat(d.flags(head + i) & (FrameFlags.ALLOCATED | FrameFlags.LOCKED | FrameFlags.ANON))
                            .isEqualTo(FrameFlags.ALLOCATED | FrameFlags.LOCKED | FrameFlags.ANON);
                    assertThat(d.folio(head + i)).isEqualTo(head + i);
                }
                for (int i = 0; i < NR; i++) {
                    d.clearFlags(head + i, FrameFlags.LOCKED | FrameFlags.ANON);
                    memory.free(head + i);
                }
            }
            assertThat(memory.freeFrames()).isEqualTo(memory.frameCount());
        }
    }
}
