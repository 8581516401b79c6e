package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;

/** Hostile tests of the per-CPU page lists (PerCpuPages) through PhysicalMemory's public API. */
class PerCpuPagesHostileTest {
    private static final long FRAMES = 256;

    /**
     * P1: frames freed by consumer threads sit on their lists; a producer whose list is empty
     * drains all lists and retakes, but another producer refills a whole batch from the buddy
     * allocator in between: the allocation fails although free frames exist. The test never
     * has more than FRAMES frames out, so no allocation may fail.
     */
    @Test
    void allocationNeverFailsWhileFramesAreFree() throws Exception {
        try (PhysicalMemory memory = new PhysicalMemory(FRAMES * 4096)) {
            assertThat(memory.freeFrames()).isEqualTo(FRAMES);
            Semaphore permits = new Semaphore((int) FRAMES);
            BlockingQueue<Long> queue = new ArrayBlockingQueue<>((int) FRAMES);
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong failures = new AtomicLong();
            AtomicLong allocations = new AtomicLong();
            AtomicReference<Throwable> error = new AtomicReference<>();
            List<Thread> threads = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                threads.add(Thread.ofPlatform().daemon().start(() -> {
                    try {
                        while (!stop.get()) {
                            if (!permits.tryAcquire(10, TimeUnit.MILLISECONDS)) {
                                continue;
                            }
                            long pfn = memory.tryAllocate(0, 0, false);
                            if (pfn < 0) {
                                failures.incrementAndGet();
                                permits.release();
                                continue;
                            }
                            allocations.incrementAndGet();
                            queue.put(pfn);
                        }
                    } catch (Throwable t) {
                        error.compareAndSet(null, t);
                    }
                }));
                threads.add(Thread.ofPlatform().daemon().start(() -> {
                    try {
                        while (!stop.get()) {
                            Long pfn = queue.poll(10, TimeUnit.MILLISECONDS);
                            if (pfn != null) {
                                memory.free(pfn);
                                permits.release();
                            }
                        }
                    } catch (Throwable t) {
                        error.compareAndSet(null, t);
                    }
                }));
            }
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(2);
            while (System.nanoTime() < deadline && failures.get() == 0) {
                Thread.sleep(10);
            }
            stop.set(true);
            for (Thread t : threads) {
                t.join(5000);
            }
            Long pfn;
            while ((pfn = queue.poll()) != null) {
                memory.free(pfn);
            }
            assertThat(error.get()).isNull();
            System.out.println("P1: allocations=" + allocations.get() + " failures=" + failures.get());
            assertThat(memory.freeFrames()).isEqualTo(FRAMES);
            assertThat(failures.get()).as("allocations that failed with at most %d frames out", FRAMES).isZero();
        }
    }

    /** freeFrames counts frames on the lists; allocator(node) sees every free frame; double free through the list is refused. */
    @Test
    void freeFramesExactAndDoubleFreeRefused() throws Exception {
        try (PhysicalMemory memory = new PhysicalMemory(FRAMES * 4096)) {
            long[] pfns = new long[100];
            Thread t = Thread.ofPlatform().start(() -> {
                for (int i = 0; i < pfns.length; i++) {
                    pfns[i] = memory.allocate(0, 0, false);
                }
            });
            t.join();
            assertThat(memory.freeFrames()).isEqualTo(FRAMES - 100);
            for (long pfn : pfns) {
                memory.free(pfn); // onto this thread's list
            }
            assertThat(memory.freeFrames()).isEqualTo(FRAMES);
            assertThat(catchThrowable(() -> memory.free(pfns[7]))).isInstanceOf(InvalidArgumentException.class);
            assertThat(memory.allocator(0).freeFrames()).isEqualTo(FRAMES);
            assertThat(memory.allocator(0).canAllocate(8)).isTrue();
            long big = memory.allocate(0, 8, false); // the whole node, after a drain
            assertThat(memory.tryAllocate(0, 0, false)).isEqualTo(-1);
            memory.free(big);
            assertThat(memory.freeFrames()).isEqualTo(FRAMES);
        }
    }

    /** Frames cached on a list of a thread that ended are still reachable: the node's last frame can be allocated. */
    @Test
    void framesOfADeadThreadAreReused() throws Exception {
        try (PhysicalMemory memory = new PhysicalMemory(FRAMES * 4096)) {
            Thread t = Thread.ofPlatform().start(() -> memory.free(memory.allocate(0, 0, false)));
            t.join();
            List<Long> all = new ArrayList<>();
            long pfn;
            while ((pfn = memory.tryAllocate(0, 0, false)) >= 0) {
                all.add(pfn);
            }
            assertThat(all).hasSize((int) FRAMES).doesNotHaveDuplicates();
            all.forEach(memory::free);
            assertThat(memory.freeFrames()).isEqualTo(FRAMES);
        }
    }
}
