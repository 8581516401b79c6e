package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.x86.mem.FrameContents;

/**
 * Real threads drive CPUs that store to a page as fast as they can while the test thread
 * unmaps or write-protects it. Once munmap or mprotect returns, the old frame must never change
 * again: a store through a stale TLB entry after the shootdown would change it. One CPU stores
 * one value at a time, one in batches ({@code storeAll}), one with byte-array writes, so each
 * access path meets the shootdowns.
 */
class ShootdownStressTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ROUNDS = 300;

    @Test
    void noStoreLandsAfterTheFlushReturns() {
        Assertions.assertTimeoutPreemptively(Duration.ofSeconds(120), this::run);
    }

    private void run() {
        try (Machine machine = Machine.builder().node(GIB).cpus(4).detectStaleTranslations(true).build()) {
            FrameContents contents = ((SimMachine) machine).memory().contents();
            AddressSpace mm = machine.createAddressSpace();
            AtomicBoolean stop = new AtomicBoolean();
            AtomicLong stores = new AtomicLong();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> writers = new ArrayList<>();
            for (int c = 1; c <= 3; c++) {
                Cpu cpu = machine.cpu(c);
                long tag = (long) c << 56;
                int path = c;
                Thread t = new Thread(() -> {
                    try {
                        cpu.switchTo(mm);
                        long n = 0;
                        long[] vas = new long[16];
                        long[] values = new long[16];
                        byte[] bytes = new byte[8];
                        Arrays.fill(vas, VA);
                        while (!stop.get()) {
                            try {
                                n++;
                                if (path == 1) {
                                    cpu.store(VA, 8, tag | n);
                                } else if (path == 2) {
                                    for (int i = 0; i < values.length; i++) {
                                        values[i] = tag | (n << 4) | i;
                                    }
                                    cpu.storeAll(vas, 8, values);
                                } else {
                                    bytes[7] = (byte) path;
                                    bytes[0] = (byte) n;
                                    cpu.write(VA, bytes, 0, 8);
                                }
                                stores.incrementAndGet();
                            } catch (SegmentationFaultException e) {
                                Thread.onSpinWait(); // unmapped or read-only right now
                            }
                        }
                    } catch (Throwable e) {
                        failure.set(e);
                    }
                }, "cpu" + c);
                t.setDaemon(true);
                writers.add(t);
            }
            writers.forEach(Thread::start);
            for (int round = 0; round < ROUNDS && failure.get() == null; round++) {
                mm.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                        | MapFlags.MAP_POPULATE);
                long pa = mm.translate(VA);
                long before = stores.get();
                long deadline = System.nanoTime() + 2_000_000;
                while (stores.get() - before < 20 && System.nanoTime() < deadline) {
                    Thread.onSpinWait();
                }
                if (round % 2 == 0) {
                    mm.mprotect(VA, 4096, Protection.READ);
                } else {
                    mm.munmap(VA, 4096);
                }
                long v1 = contents.read(pa, 8);
                long settle = System.nanoTime() + 200_000;
                while (System.nanoTime() < settle) {
                    Thread.onSpinWait();
                }
                long v2 = contents.read(pa, 8);
                assertThat(v2).as("round %d: the frame changed after the flush returned", round).isEqualTo(v1);
                if (round % 2 == 0) {
                    mm.munmap(VA, 4096);
                }
            }
            stop.set(true);
            for (Thread t : writers) {
                t.join();
            }
            assertThat(failure.get()).isNull();
            assertThat(stores.get()).as("the writers really ran").isGreaterThan(ROUNDS);
            assertThat(machine.staleAccesses()).as("no stale use outside an open invalidation").isEmpty();
        } catch (InterruptedException e) {
            throw new AssertionError(e);
        }
    }
}
