package org.vmcore.impl.hostile;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import org.vmcore.api.Access;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.PageSize;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageReference;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;
import org.vmcore.impl.race.ThreadStates;

/**
 * Second hostile review of issue 19: per-CPU page lists, GUP-fast, hugetlb truncate and mmap
 * pinning, unshareable VMAs, fork of hugetlb entries, callbacks trying address-space locks,
 * PercpuRwSem, fault and zap shortcuts. Public API only. It found four defects, all fixed: B1
 * page tables freed under a GUP-fast walk (now freed after the lockless-walker barrier), B2
 * private reservations leaked or given back twice when truncate raced munmap, B3 a read hold
 * taken inside a write hold outliving it uncounted, and (in vmcore-x86) P1 an allocation failing
 * while free frames sat on other threads' per-CPU lists.
 */
class Hostile19bTest {
    static final long MIB = 1L << 20;
    static final long GIB = 1L << 30;
    static final int PRIV = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    static final Duration WAIT = Duration.ofSeconds(10);

    private Machine machine;

    @AfterEach
    void closeMachine() {
        if (machine != null) {
            machine.close();
            assertThat(machine.offHeapBytes()).isZero();
        }
    }

    @FunctionalInterface
    interface Body {
        void run() throws Throwable;
    }

    static final class Worker {
        final Thread thread;
        final AtomicReference<Throwable> failure = new AtomicReference<>();

        Worker(String name, Body body) {
            thread = Thread.ofPlatform().daemon().name(name).unstarted(() -> {
                try {
                    body.run();
                } catch (Throwable t) {
                    failure.set(t);
                }
            });
            thread.start();
        }

        boolean join(Duration d) throws InterruptedException {
            thread.join(d.toMillis());
            return !thread.isAlive();
        }
    }

    /** True when t stays WAITING for the settle time; false when it finishes first (shared with the race tests). */
    static boolean blockedOrDone(Thread t) throws InterruptedException {
        return ThreadStates.blockedOrDone(t, WAIT);
    }

    // ------------------------------------------------------------------ GUP-fast

    /**
     * B1: munmap's free_pgtables frees the PMD and PTE tables without waiting for lockless
     * walkers (only huge_pmd_unshare calls the barrier). A GUP-fast walk that has read the PUD
     * entry then reads the freed table, which B's next fault reuses: A pins B's private page.
     */
    @Test
    void b1GupFastVsMunmapFreePgtables() throws Exception {
        machine = Machine.builder().node(2 * GIB).build();
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        long baseA = 4 * GIB;
        long baseB = 8 * GIB;
        long off = 6 * MIB;
        a.mmap(baseA, GIB, Protection.READ_WRITE, PRIV);
        a.fault(baseA + off, Access.WRITE);
        long aPfn = a.pageAt(baseA + off);

        RacePause pause = RacePause.arm(machine, RacePoint.GUP_FAST_AFTER_PUD);
        AtomicReference<PageReference> got = new AtomicReference<>();
        Worker gup = new Worker("gup-fast", () -> got.set(a.getUserPageFast(baseA + off, true)));
        pause.awaitArrival(WAIT);
        Worker unmap = new Worker("munmap-a", () -> a.munmap(baseA, GIB));
        boolean waited = blockedOrDone(unmap.thread);
        long bPfn = -1;
        if (!waited) {
            b.mmap(baseB, GIB, Protection.READ_WRITE, PRIV);
            b.fault(baseB + off, Access.WRITE); // new PMD and PTE tables for B: the frames A freed
            bPfn = b.pageAt(baseB + off);
        }
        pause.release();
        assertThat(gup.join(WAIT)).isTrue();
        assertThat(unmap.join(WAIT)).isTrue();
        pause.disarm();
        assertThat(gup.failure.get()).isNull();
        assertThat(unmap.failure.get()).isNull();
        PageReference ref = got.get();
        long gotPfn = ref == null ? -1 : ref.pfn();
        if (ref != null) {
            ref.close();
        }
        System.out.println("B1: munmap waited=" + waited + " got=" + gotPfn + " a=" + aPfn + " b=" + bPfn);
        assertThat(gotPfn).as("GUP-fast of A pinned B's private page 0x%x", bPfn)
                .isNotEqualTo(bPfn > 0 ? bPfn : Long.MIN_VALUE);
        assertThat(waited).as("munmap waits for the lockless walk before freeing its tables").isTrue();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    // ------------------------------------------------------------------ hugetlb truncate

    /** A fault that may find the file truncated under it (SIGBUS past EOF) or nothing mapped. */
    static void faultPastEofAllowed(AddressSpace mm, long va, Access access) {
        try {
            mm.fault(va, access);
        } catch (org.vmcore.api.SegmentationFaultException e) {
            // past the end of the truncated file, or unmapped by a split
        }
    }

    /**
     * Private owners of a hugetlb file fault, fork, split (munmap of a piece) and unmap on
     * several threads while the file is truncated step by step; afterwards the reservations add
     * up (invariants), and once everything is closed and the file unlinked the pool is whole.
     */
    @Test
    void truncateWhilePrivateOwnersFaultForkSplitAndUnmap() throws Exception {
        long seed = System.nanoTime();
        System.out.println("truncateWhilePrivateOwners seed=" + seed);
        Random seeds = new Random(seed);
        for (int round = 0; round < 6; round++) {
            long roundSeed = seeds.nextLong();
            Machine m = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 96).build();
            machine = m;
            int pages = 16;
            HugetlbFile file = m.hugetlbfs().create("f" + round, pages * 2 * MIB, PageSize.SIZE_2M);
            List<AddressSpace> owners = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                AddressSpace mm = m.createAddressSpace();
                mm.mmap(file, 0, 4 * GIB, pages * 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
                owners.add(mm);
            }
            AddressSpace shared = m.createAddressSpace();
            shared.mmap(file, 0, 4 * GIB, pages * 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            CountDownLatch go = new CountDownLatch(1);
            List<Worker> workers = new ArrayList<>();
            List<AddressSpace> children = java.util.Collections.synchronizedList(new ArrayList<>());
            for (int i = 0; i < owners.size(); i++) {
                AddressSpace mm = owners.get(i);
                Random r = new Random(roundSeed + i);
                workers.add(new Worker("owner-" + i, () -> {
                    go.await();
                    for (int k = 0; k < 40; k++) {
                        long va = 4 * GIB + r.nextInt(pages) * 2 * MIB;
                        switch (r.nextInt(6)) {
                            case 0, 1, 2 -> faultPastEofAllowed(mm, va, r.nextBoolean() ? Access.WRITE : Access.READ);
                            case 3 -> {
                                if (k % 10 == 3) {
                                    children.add(mm.fork());
                                }
                            }
                            case 4 -> mm.munmap(va, 2 * MIB); // splits the VMA
                            default -> faultPastEofAllowed(shared, va, Access.WRITE);
                        }
                    }
                }));
            }
            workers.add(new Worker("truncate", () -> {
                go.await();
                for (int p = pages - 4; p >= 0; p -= 4) {
                    file.truncate(p * 2 * MIB);
                    Thread.yield();
                }
            }));
            go.countDown();
            for (Worker w : workers) {
                assertThat(w.join(WAIT)).as("%s finished, round %d", w.thread.getName(), round).isTrue();
            }
            for (Worker w : workers) {
                if (w.failure.get() != null) {
                    w.failure.get().printStackTrace();
                }
                assertThat(w.failure.get()).as("%s, round %d seed %d", w.thread.getName(), round, seed).isNull();
            }
            assertThat(m.checkInvariants()).as("round %d seed %d", round, seed).isEmpty();
            for (AddressSpace c : children) {
                c.close();
            }
            for (AddressSpace o : owners) {
                o.close();
            }
            shared.close();
            m.hugetlbfs().unlink(file.name());
            HugetlbPoolState pool = m.hugetlbfs().pool(0, PageSize.SIZE_2M);
            assertThat(pool.reserved()).as("round %d seed %d", round, seed).isZero();
            assertThat(pool.free()).as("round %d seed %d", round, seed).isEqualTo(pool.total());
            assertThat(m.checkInvariants()).isEmpty();
            m.close();
            assertThat(m.offHeapBytes()).isZero();
            machine = null;
        }
    }

    /**
     * B2: munmap of pieces of a private owner's hugetlb mapping races a truncate of the file.
     * The zap gives back the piece's reservations counted up to the file's size at that moment;
     * truncate has already shrunk the size (or not yet) and gives back, per VMA still in i_mmap,
     * the reservations from the new end: a piece unmapped in between is counted by neither
     * (a leak: "pool reserves N pages but files and private mappings hold 0") or by both
     * (IllegalStateException "unreserving 1 of 2M with only 0 reserved" from truncate).
     */
    @Test
    void b2TruncateRacingMunmapOfPrivateOwnerKeepsReservationsExact() throws Exception {
        long seed = System.nanoTime();
        System.out.println("B2 seed=" + seed);
        Random seeds = new Random(seed);
        for (int round = 0; round < 30; round++) {
            Machine m = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 64).build();
            machine = m;
            int pages = 16;
            HugetlbFile file = m.hugetlbfs().create("f", pages * 2 * MIB, PageSize.SIZE_2M);
            List<AddressSpace> owners = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                AddressSpace mm = m.createAddressSpace();
                mm.mmap(file, 0, 4 * GIB, pages * 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
                owners.add(mm);
            }
            CountDownLatch go = new CountDownLatch(1);
            List<Worker> workers = new ArrayList<>();
            for (int i = 0; i < owners.size(); i++) {
                AddressSpace mm = owners.get(i);
                Random r = new Random(seeds.nextLong());
                workers.add(new Worker("munmap-" + i, () -> {
                    go.await();
                    for (int k = 0; k < 40; k++) {
                        mm.munmap(4 * GIB + r.nextInt(pages) * 2 * MIB, 2 * MIB);
                    }
                }));
            }
            workers.add(new Worker("truncate", () -> {
                go.await();
                for (int p = pages - 4; p >= 0; p -= 4) {
                    file.truncate(p * 2 * MIB);
                    Thread.yield();
                }
            }));
            go.countDown();
            for (Worker w : workers) {
                assertThat(w.join(WAIT)).isTrue();
            }
            for (Worker w : workers) {
                assertThat(w.failure.get()).as("%s, round %d seed %d", w.thread.getName(), round, seed).isNull();
            }
            assertThat(m.checkInvariants()).as("round %d seed %d", round, seed).isEmpty();
            m.close();
            machine = null;
        }
    }

    // ------------------------------------------------------------------ PercpuRwSem

    /** Read inside read while a writer is queued does not deadlock; read inside write; an interrupt during downWrite is kept. */
    @Test
    void percpuRwSemReentrancyHolds() throws Exception {
        org.vmcore.impl.lock.PercpuRwSem sem = new org.vmcore.impl.lock.PercpuRwSem();
        sem.downRead();
        Worker writer = new Worker("writer", () -> {
            Thread.currentThread().interrupt();
            sem.downWrite();
            boolean kept = Thread.interrupted();
            sem.upWrite();
            assertThat(kept).as("interrupt flag kept").isTrue();
        });
        assertThat(blockedOrDone(writer.thread)).as("the writer waits for the reader").isTrue();
        sem.downRead(); // nested read with a writer queued: must not wait for it
        sem.upRead();
        sem.upRead();
        assertThat(writer.join(WAIT)).isTrue();
        assertThat(writer.failure.get()).isNull();
        sem.downWrite();
        sem.downRead();
        assertThat(sem.tryDownWrite()).isTrue(); // reentrant
        sem.upWrite();
        sem.upRead();
        sem.upWrite();
        assertThat(sem.isWriteLockedByCurrentThread()).isFalse();
        assertThat(sem.readHoldCount()).isZero();
    }

    /**
     * B3: a read hold taken inside the thread's own write hold is not counted; when the write
     * hold is released first (a downgrade: write, read, upWrite) the thread still believes it
     * holds the semaphore for read, yet another thread's downWrite gets in at once. Either the
     * release must refuse, or it must count the remaining read hold before letting writers in.
     */
    @Test
    void b3PercpuRwSemDowngradeKeepsReadersOut() throws Exception {
        org.vmcore.impl.lock.PercpuRwSem sem = new org.vmcore.impl.lock.PercpuRwSem();
        sem.downWrite();
        sem.downRead();
        Throwable refused = null;
        try {
            sem.upWrite();
        } catch (IllegalMonitorStateException e) {
            refused = e; // acceptable: downgrade refused
        }
        if (refused != null) {
            return;
        }
        assertThat(sem.readHoldCount()).isEqualTo(1);
        Worker writer = new Worker("writer", () -> {
            sem.downWrite();
            sem.upWrite();
        });
        assertThat(blockedOrDone(writer.thread)).as("a writer waits while this thread holds the semaphore for read").isTrue();
        sem.upRead();
        assertThat(writer.join(WAIT)).isTrue();
    }
}
