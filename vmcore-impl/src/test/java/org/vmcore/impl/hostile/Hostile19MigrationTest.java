package org.vmcore.impl.hostile;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageFlag;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.VmException;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/**
 * Hostile tests of page migration beside other operations (f8edc2e: the machine lock shared, the
 * folio lock, rmap and page-table locks per walk). Public API only; the randomised tests print
 * their seed ({@code -Dvmcore.seed=S} replays one).
 *
 * <p>Defects found, each kept as the test that showed it, all fixed:
 * <ul>
 *   <li>M1 {@link #observerFaultWhileTruncateWaitsForTheFolio}: a truncation waited for the folio
 *       lock of a migrating page while holding its hugetlb fault mutex; the migration's observer
 *       faulted the page and waited for that mutex: deadlock.
 *   <li>M2 {@link #observerTruncateWhileAnotherTruncateWaitsForTheFolio}: the same wait inside the
 *       file's truncation monitor; the observer's own truncation waited for the monitor.
 *   <li>M3 {@link #softOfflineWithAReferenceHeldAcrossTheMigration}: a PFN walker's reference held
 *       across a soft offline's migration let the poisoned frame go back to the allocator.
 *   <li>M4 {@link #offlineRangeLeavesNoPageInUseBehind}: offlineRange reported the range offline
 *       while pages allocated during its migrations were still in use there.
 *   <li>M5 {@link #closeWhileMigrationsRunAndCpusWait}: a CPU waiting on a migration entry read
 *       the frame descriptors after close freed them (IllegalStateException "Already closed").
 *   <li>M6 {@link #exitsRacingOverEntriesOfAnRmapMigrationFreeThePage}: two exits clearing the
 *       last migration entries of an RmapWalker.tryToMigrate page could both leave it: a leak.
 *   <li>M7 {@link #secondaryTlbNotifierOfAMigrationCallsBack},
 *       {@link #secondaryTlbNotifierOfACowFaultCallsBack},
 *       {@link #secondaryTlbNotifierOfUnmapRefPrivateCallsBack}: try_to_migrate_one, the COW fault
 *       and unmap_ref_private told the secondary TLBs under the page-table lock; a notifier that faulted or migrated
 *       there took a page-table lock inside it (LockOrderViolation; an ABBA deadlock without lockdep).
 *   <li>M8 {@link #truncationNotifierFaultsWhileAFaultWaitsForIMmap}: a truncation's notifier,
 *       called under i_mmap_rwsem, faulted a hugetlb page and waited for its fault mutex, held by
 *       a fault waiting for that i_mmap_rwsem (LockOrderViolation; a deadlock without lockdep).
 *   <li>M9 {@link #theOldPageOfAMigrationHeldByAWalkerIsNotMigratedAgain}: the old page of a
 *       migrated page-cache page kept its mapping; held by a PFN walker, soft offline migrated it
 *       again and met the slot its successor holds (IllegalStateException, leaking the isolation
 *       reference and the new target page).
 *   <li>M10 {@link #movePagesNeverMovesAnotherProcesssPage}: move_pages (and migrate_pages) looked
 *       pages up without isolating them; a queued page unmapped before its turn was freed,
 *       reused by another process, and that process's page was migrated.
 *   <li>M11 {@link #anInterruptedCpuMeetsAMigrationEntry}: a CPU thread with its interrupt status
 *       set returned from migration_entry_wait at once and retried until "still faults after 1000
 *       retries" (IllegalStateException); it now ends with MigrationWaitException, the status kept.
 *   <li>M12 {@link #twoThreadsMigrateTheSamePagesWhileCpusWrite} (seeded, not every run): move_pages
 *       looked a page up twice; when another thread's migration replaced its entry in between, it
 *       queued pfn -1 and the call failed with InvalidArgumentException (pfn=-1).
 * </ul>
 *
 * <p>Open, outside migration: {@link #openCowNotifierUnmapsAnotherHugetlbMapping} (run with
 * {@code -Dvmcore.hostile.open=true}): notifiers called under a hugetlb VMA lock (hugetlb_wp,
 * truncation, a hugetlb split) may unmap another process's hugetlb mapping, whose VMA lock (and
 * i_mmap_rwsem) is then taken inside it; two truncations whose notifiers unmap each other's
 * mappings deadlock.
 *
 * <p>What holds up: observers and notifiers that throw at every phase (the page goes back or the
 * migration completes, the caller gets the exception), observers that unmap, close, fork,
 * truncate, migrate, access or close the machine, another thread's exit, munmap, fork, mprotect
 * or truncate at every phase, two threads migrating the same pages under CPU writes, a CPU whose
 * page migrates without pause, and everything at once.
 */
class Hostile19MigrationTest {
    static final long MIB = 1L << 20;
    static final long GIB = 1L << 30;
    static final long K4 = 4096;
    static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    static final Duration WAIT = Duration.ofSeconds(10);

    static final int POOL = 520;

    private Machine machine;
    /** Set when a thread stayed stuck: the machine cannot be closed then (close would wait for it). */
    private boolean stuck;

    @AfterEach
    void closeMachine() {
        if (machine != null && !stuck) {
            machine.close(); // a hostile observer may still be set: close calls none
            assertThat(machine.offHeapBytes()).isZero();
        }
    }

    @FunctionalInterface
    interface Body {
        void run() throws Throwable;
    }

    /** A started daemon thread whose failure is kept. */
    final class Worker {
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

        void joinOrDump() throws InterruptedException {
            thread.join(WAIT.toMillis());
            if (thread.isAlive()) {
                stuck = true;
                throw new AssertionError(thread.getName() + " did not finish within " + WAIT + "\n" + threadDump());
            }
        }

        /** Whether it is still running after {@code ms}: it waits for something. */
        boolean stillRunningAfter(long ms) throws InterruptedException {
            thread.join(ms);
            return thread.isAlive();
        }
    }

    static String threadDump() {
        StringBuilder sb = new StringBuilder();
        for (var e : Thread.getAllStackTraces().entrySet()) {
            sb.append('"').append(e.getKey().getName()).append("\" ").append(e.getKey().getState()).append('\n');
            for (StackTraceElement f : e.getValue()) {
                sb.append("    at ").append(f).append('\n');
            }
        }
        return sb.toString();
    }

    static void await(CountDownLatch latch) {
        try {
            if (!latch.await(WAIT.toMillis(), TimeUnit.MILLISECONDS)) {
                throw new AssertionError("latch not opened within " + WAIT);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new AssertionError(e);
        }
    }

    private Machine twoNodes() {
        machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, POOL)
                .hugePages(1, PageSize.SIZE_2M, POOL).detectStaleTranslations(true).build();
        return machine;
    }

    /**
     * remove_inode_hugepages waits for the folio lock of a page under migration while it holds the
     * page's hugetlb fault mutex. The migration's observer then faults the page (in the migrating
     * process): hugetlb_fault takes that fault mutex first. The access from the observer must
     * end (MigrationWaitException, a SIGBUS past the new end) rather than wait for a truncation
     * that waits for the observer's own migration.
     */
    @Test
    void observerFaultWhileTruncateWaitsForTheFolio() throws Exception {
        twoNodes();
        HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(file, 0, 8 * GIB, 4 * MIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        AtomicReference<Object> seen = new AtomicReference<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                arrived.countDown();
                await(go);
                try {
                    seen.set(a.fault(va, Access.READ));
                } catch (RuntimeException ex) {
                    seen.set(ex);
                }
            }
        });
        AtomicReference<MovePagesResult> moved = new AtomicReference<>();
        Worker migrate = new Worker("migrate", () -> moved.set(machine.migration().movePages(a, new long[] {va}, new int[] {1},
                MigrationService.MPOL_MF_MOVE)));
        await(arrived);
        Worker truncate = new Worker("truncate", () -> file.truncate(0));
        assertThat(truncate.stillRunningAfter(300)).as("truncate waits for the folio lock").isTrue();
        go.countDown();
        migrate.joinOrDump();
        truncate.joinOrDump();
        System.out.println("observer fault saw " + seen.get());
        assertThat(migrate.failure.get()).isNull();
        assertThat(truncate.failure.get()).isNull();
        assertThat(file.cachedPages()).isZero();
        machine.migration().setObserver(null);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * As above, but the observer truncates the same file: the truncation in progress holds the
     * file's truncation lock while it waits for the folio lock of the migrating page.
     */
    @Test
    void observerTruncateWhileAnotherTruncateWaitsForTheFolio() throws Exception {
        twoNodes();
        HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(file, 0, 8 * GIB, 4 * MIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        AtomicReference<Object> seen = new AtomicReference<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                arrived.countDown();
                await(go);
                try {
                    file.truncate(0);
                    seen.set("truncated");
                } catch (RuntimeException ex) {
                    seen.set(ex);
                }
            }
        });
        Worker migrate = new Worker("migrate", () -> machine.migration().movePages(a, new long[] {va}, new int[] {1},
                MigrationService.MPOL_MF_MOVE));
        await(arrived);
        Worker truncate = new Worker("truncate", () -> file.truncate(0));
        assertThat(truncate.stillRunningAfter(300)).as("truncate waits for the folio lock").isTrue();
        go.countDown();
        migrate.joinOrDump();
        truncate.joinOrDump();
        System.out.println("observer truncate saw " + seen.get());
        assertThat(migrate.failure.get()).isNull();
        assertThat(truncate.failure.get()).isNull();
        machine.migration().setObserver(null);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    // ---------------------------------------------------------------- fixtures of three kinds of page

    enum Kind { ANON, SHMEM, HUGE }

    static final long ANON_BASE = 0x10_0000_0000L;
    static final long SHM_BASE = 0x20_0000_0000L;
    static final long HUGE_BASE = 8 * GIB; // PUD aligned: sharers share the PMD table
    static final int MOVE_ALL = MigrationService.MPOL_MF_MOVE_ALL;

    /** A page of {@code kind} holding {@code value} at va, mapped by a and b. */
    record Setup(Kind kind, AddressSpace a, AddressSpace b, long va, HugetlbFile file) {
        /** The page now (a's walk of a shared hugetlb page unshares a's table: the file knows it). */
        long pfn() {
            return file != null ? file.pageAt(0) : a.pageAt(va);
        }
    }

    /**
     * ANON: a private page, COW-shared with a forked child b. SHMEM: a MAP_SHARED|MAP_ANONYMOUS
     * page, shared with a forked child b. HUGE: a shared hugetlb page of a file that a and b map at
     * the same PUD-aligned address, so they share its PMD table (huge_pmd_share).
     */
    Setup setup(Kind kind, long value) {
        AddressSpace a = machine.createAddressSpace();
        long va;
        HugetlbFile file = null;
        switch (kind) {
            case ANON -> {
                va = ANON_BASE;
                a.mmap(va, 4 * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            }
            case SHMEM -> {
                va = SHM_BASE;
                a.mmap(va, 4 * K4, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            }
            default -> {
                va = HUGE_BASE;
                file = machine.hugetlbfs().create("h" + System.nanoTime(), GIB, PageSize.SIZE_2M);
                a.mmap(file, 0, va, GIB, Protection.READ_WRITE, SHARED_FIXED);
            }
        }
        store(a, va, value);
        AddressSpace b;
        if (kind == Kind.HUGE) {
            b = machine.createAddressSpace();
            b.mmap(file, 0, va, GIB, Protection.READ_WRITE, SHARED_FIXED);
            assertThat(b.fault(va, Access.READ)).isEqualTo(org.vmcore.api.FaultResult.SHARED_TABLE);
        } else {
            b = a.fork();
            b.fault(va, Access.READ);
        }
        return new Setup(kind, a, b, va, file);
    }

    /** A store by CPU 0 of the calling thread. */
    void store(AddressSpace mm, long va, long value) {
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        cpu.store(va, 8, value);
        cpu.switchTo(null);
    }

    long load(AddressSpace mm, long va) {
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        try {
            return cpu.load(va, 8);
        } finally {
            cpu.switchTo(null);
        }
    }

    MovePagesResult move(AddressSpace mm, long va, int node) {
        return machine.migration().movePages(mm, new long[] {va}, new int[] {node}, MOVE_ALL);
    }

    void assertUnlocked(long pfn) {
        assertThat(machine.page(pfn).flags()).as("page 0x%x left locked", pfn).doesNotContain(PageFlag.LOCKED);
    }

    static Stream<Arguments> kindsAndPhases() {
        List<Arguments> out = new ArrayList<>();
        for (Kind k : Kind.values()) {
            for (MigrationPhase p : MigrationPhase.values()) {
                out.add(Arguments.of(k, p));
            }
        }
        return out.stream();
    }

    // ---------------------------------------------------------------- callbacks that throw

    /**
     * unmap_and_move: an observer that throws at a phase before the copy makes the migration put
     * the page back (remove_migration_ptes(src, src)), one after it lets it complete; either way
     * the caller gets exactly what the observer threw, the data is where it was, no lock is left,
     * and a second migration then succeeds.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("kindsAndPhases")
    void observerThrowingAtEachPhase(Kind kind, MigrationPhase phase) {
        twoNodes();
        Setup s = setup(kind, 0x5151_0000L + phase.ordinal());
        long old = s.pfn();
        RuntimeException boom = new IllegalStateException("observer at " + phase);
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                throw boom;
            }
        });
        Throwable thrown = null;
        try {
            move(s.a(), s.va(), 1);
        } catch (Throwable t) {
            thrown = t;
        }
        machine.migration().setObserver(null);
        assertThat(thrown).as("the observer's exception reaches the caller").isSameAs(boom);
        boolean copied = phase == MigrationPhase.AFTER_COPY || phase == MigrationPhase.AFTER_REMAP;
        assertThat(machine.page(s.pfn()).node()).as("node after a throw at %s", phase).isEqualTo(copied ? 1 : 0);
        assertThat(s.pfn() == old).isEqualTo(!copied);
        assertUnlocked(s.pfn());
        assertThat(load(s.a(), s.va())).isEqualTo(0x5151_0000L + phase.ordinal());
        assertThat(load(s.b(), s.va())).isEqualTo(0x5151_0000L + phase.ordinal());
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(move(s.a(), s.va(), copied ? 0 : 1).status(0)).isEqualTo(copied ? 0 : 1);
        assertThat(load(s.b(), s.va())).isEqualTo(0x5151_0000L + phase.ordinal());
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * try_to_migrate_one calls the notifiers of each mapping: one of the second mapper that
     * refuses at invalidate_range_start (or throws at its end) fails the migration after the first
     * mapping already has its migration entry; the page goes back in both, and the caller gets it.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void notifierOfTheSecondMapperThrows(Kind kind) {
        twoNodes();
        Setup s = setup(kind, 77);
        long old = s.pfn();
        for (boolean atEnd : new boolean[] {false, true}) {
            RuntimeException boom = new IllegalStateException("notifier " + (atEnd ? "end" : "start"));
            AtomicInteger calls = new AtomicInteger();
            MmuNotifier n = new MmuNotifier() {
                @Override
                public void invalidateRangeStart(NotifierRange range) {
                    if (!atEnd && calls.getAndIncrement() == 0) {
                        throw boom;
                    }
                }

                @Override
                public void invalidateRangeEnd(NotifierRange range) {
                    if (atEnd && calls.getAndIncrement() == 0) {
                        throw boom;
                    }
                }
            };
            s.b().registerNotifier(n);
            Throwable thrown = null;
            try {
                move(s.a(), s.va(), 1);
            } catch (Throwable t) {
                thrown = t;
            }
            s.b().unregisterNotifier(n);
            assertThat(thrown).isSameAs(boom);
            assertThat(s.pfn()).isEqualTo(old);
            assertUnlocked(old);
            assertThat(load(s.a(), s.va())).isEqualTo(77);
            assertThat(load(s.b(), s.va())).isEqualTo(77);
            assertThat(machine.checkInvariants()).isEmpty();
        }
        assertThat(move(s.a(), s.va(), 1).status(0)).isEqualTo(1);
        assertThat(load(s.b(), s.va())).isEqualTo(77);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    // ---------------------------------------------------------------- callbacks that call back

    /**
     * A migration observer that unmaps the page being migrated from both processes after the
     * unmap (munmap zaps the migration entries: zap_nonpresent_ptes): the migration completes or
     * fails, but nothing leaks, nothing stays locked, and every frame comes back.
     */
    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("kindsAndPhases")
    void observerUnmapsThePageItMigrates(Kind kind, MigrationPhase phase) {
        twoNodes();
        long free0 = machine.freeFrames();
        Setup s = setup(kind, 5);
        long old = s.pfn();
        AtomicReference<Throwable> inObserver = new AtomicReference<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                try {
                    s.a().munmap(s.va(), kind == Kind.HUGE ? 2 * MIB : K4);
                    s.b().munmap(s.va(), kind == Kind.HUGE ? 2 * MIB : K4);
                } catch (Throwable t) {
                    inObserver.set(t);
                }
            }
        });
        MovePagesResult r = move(s.a(), s.va(), 1);
        machine.migration().setObserver(null);
        assertThat(inObserver.get()).isNull();
        assertThat(r.status(0)).isIn(1, -Errno.EBUSY, -Errno.ENOENT);
        assertThat(s.a().translate(s.va())).isEqualTo(-1);
        assertThat(s.b().translate(s.va())).isEqualTo(-1);
        assertThat(machine.checkInvariants()).isEmpty();
        s.a().close();
        s.b().close();
        if (s.file() != null) {
            machine.hugetlbfs().unlink(s.file().name());
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(POOL);
            assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free()).isEqualTo(POOL);
        }
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.freeFrames()).as("every frame back (old page 0x%x)", old).isEqualTo(free0);
    }

    /**
     * The observer closes both processes (deferred to the end of the migration, as a close from a
     * callback is), forks the first, or closes the machine: the migration ends, the closes happen,
     * and nothing leaks.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void observerClosesForksAndClosesTheMachine(Kind kind) {
        twoNodes();
        long free0 = machine.freeFrames();
        Setup s = setup(kind, 9);
        List<AddressSpace> children = new ArrayList<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                children.add(s.a().fork()); // copy_nonpresent_pte copies the migration entry
            }
        });
        assertThat(move(s.a(), s.va(), 1).status(0)).isEqualTo(1);
        AddressSpace child = children.get(0);
        assertThat(load(child, s.va())).isEqualTo(9);
        assertThat(machine.page(child.pageAt(s.va())).node()).isEqualTo(1);
        store(child, s.va(), 10);
        assertThat(load(s.a(), s.va())).isEqualTo(kind == Kind.ANON ? 9 : 10);
        assertThat(machine.checkInvariants()).isEmpty();

        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                s.a().close();
                s.b().close();
                child.close();
            }
        });
        assertThat(move(s.a(), s.va(), 0).status(0)).isEqualTo(0);
        assertThat(s.a().isClosed() && s.b().isClosed() && child.isClosed()).isTrue();
        if (s.file() != null) {
            machine.hugetlbfs().unlink(s.file().name());
        }
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.freeFrames()).isEqualTo(free0);

        Setup t = setup(kind, 11);
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                machine.close();
            }
        });
        Throwable thrown = null;
        try {
            machine.migration().movePages(t.a(), new long[] {t.va(), t.va() + (kind == Kind.HUGE ? 2 * MIB : K4)},
                    new int[] {1, 1}, MOVE_ALL);
        } catch (Throwable e) {
            thrown = e;
        }
        assertThat(thrown).as("the close happens between pages").isNull();
        assertThat(t.a().isClosed()).isTrue();
        assertThat(machine.offHeapBytes()).isZero();
    }

    /**
     * What the observer may not do waits for nothing: an access to the page it migrates throws
     * MigrationWaitException, a machine-wide call IllegalStateException, a nested migration of
     * the same page fails; the migration itself still completes.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void observerReentersTheEngine(Kind kind) {
        twoNodes();
        Setup s = setup(kind, 21);
        List<Object> seen = new ArrayList<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP || e.phase() == MigrationPhase.AFTER_COPY) {
                Cpu cpu = machine.cpu(1);
                cpu.switchTo(s.b());
                try {
                    seen.add(cpu.load(s.va(), 8));
                } catch (RuntimeException ex) {
                    seen.add(ex.getClass());
                } finally {
                    cpu.switchTo(null);
                }
                try {
                    seen.add(s.b().fault(s.va(), Access.WRITE));
                } catch (RuntimeException ex) {
                    seen.add(ex.getClass());
                }
                try {
                    machine.checkInvariants();
                    seen.add("checked");
                } catch (RuntimeException ex) {
                    seen.add(ex.getClass());
                }
                MovePagesResult nested = move(s.b(), s.va(), 0);
                seen.add(nested.status(0));
            }
        });
        assertThat(move(s.a(), s.va(), 1).status(0)).isEqualTo(1);
        machine.migration().setObserver(null);
        System.out.println(kind + " observer saw " + seen);
        assertThat(seen).hasSize(8);
        assertThat(seen.get(0)).isEqualTo(MigrationWaitException.class);
        assertThat(seen.get(1)).isEqualTo(org.vmcore.api.FaultResult.MIGRATION_WAIT);
        assertThat(seen.get(2)).isEqualTo(IllegalStateException.class);
        assertThat(seen.get(3)).isIn(-Errno.ENOENT, -Errno.EBUSY);
        assertThat(load(s.a(), s.va())).isEqualTo(21);
        assertThat(load(s.b(), s.va())).isEqualTo(21);
        assertThat(machine.page(s.pfn()).node()).isEqualTo(1);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * The observer truncates the hugetlb file of the page it migrates (the truncation removes the
     * page the migration holds: remove_inode_single_folio): the migration ends, the file is empty
     * and every huge page is back in its pool.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(MigrationPhase.class)
    void observerTruncatesTheFile(MigrationPhase phase) {
        twoNodes();
        Setup s = setup(Kind.HUGE, 3);
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                s.file().truncate(0);
            }
        });
        MovePagesResult r = move(s.a(), s.va(), 1);
        machine.migration().setObserver(null);
        assertThat(r.status(0)).isIn(1, -Errno.EBUSY, -Errno.ENOENT);
        assertThat(s.file().cachedPages()).isZero();
        assertThat(s.a().translate(s.va())).isEqualTo(-1);
        assertThat(s.b().translate(s.va())).isEqualTo(-1);
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(POOL);
        assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free()).isEqualTo(POOL);
    }

    // ---------------------------------------------------------------- soft offline and memory offline

    /**
     * soft_offline_in_use_page: after the migration page_handle_poison sets PG_hwpoison on the old
     * page and keeps a reference on it for good, so a PFN walker that held a reference across the
     * migration (folio_try_get, here Machine.tryGetPage from another thread while the migration is
     * after its copy) cannot free it to the allocator when it lets go. The frame must end poisoned.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void softOfflineWithAReferenceHeldAcrossTheMigration(Kind kind) throws Exception {
        twoNodes();
        Setup s = setup(kind, 31);
        long old = s.pfn();
        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                arrived.countDown();
                await(go);
            }
        });
        AtomicInteger rc = new AtomicInteger(1);
        Worker offline = new Worker("soft-offline", () -> rc.set(machine.migration().softOffline(old)));
        await(arrived);
        org.vmcore.api.PageReference ref = machine.tryGetPage(old); // a PFN walker beside the migration
        assertThat(ref).isNotNull();
        go.countDown();
        offline.joinOrDump();
        machine.migration().setObserver(null);
        assertThat(offline.failure.get()).isNull();
        assertThat(rc.get()).isZero();
        ref.close();
        assertThat(machine.page(old).flags()).as("the soft-offlined frame stays poisoned: %s", machine.page(old))
                .contains(PageFlag.HWPOISON);
        assertThat(load(s.a(), s.va())).isEqualTo(31);
        assertThat(machine.page(s.pfn()).node()).as("soft offline tries the home node first").isZero();
        assertThat(machine.checkInvariants()).isEmpty();
        // the poisoned frame is never handed out again
        for (int i = 0; i < 64 && kind != Kind.HUGE; i++) {
            AddressSpace c = machine.createAddressSpace();
            long va = c.mmap(0, 64 * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
            for (long p = 0; p < 64; p++) {
                assertThat(c.pageAt(va + p * K4)).isNotEqualTo(old);
            }
        }
    }

    /**
     * offline_pages isolates the range before it migrates (start_isolate_page_range) and repeats
     * the scan until nothing movable is left, so nothing allocated meanwhile lands in the range.
     * Here a page is faulted in (from the observer, on the migrating thread, whose per-CPU list
     * holds the frame the first migration just freed) while the offline is between its pages:
     * when offlineRange returns, no page in use may be left in the range.
     */
    @Test
    void offlineRangeLeavesNoPageInUseBehind() {
        twoNodes();
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(0, 2 * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
        long p0 = a.pageAt(va);
        long start = p0 & ~511L;
        long end = start + 512;
        AddressSpace c = machine.createAddressSpace();
        long cva = c.mmap(0, 64 * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
        AtomicInteger phases = new AtomicInteger();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP && phases.getAndIncrement() == 1) {
                for (long p = 0; p < 64; p++) {
                    c.fault(cva + p * K4, Access.WRITE);
                }
            }
        });
        org.vmcore.api.OfflineResult r;
        try {
            r = machine.migration().offlineRange(0, start, end);
        } catch (VmException e) {
            r = null; // refusing is allowed (-EBUSY); a success that leaves pages behind is not
        }
        machine.migration().setObserver(null);
        List<Long> inRange = new ArrayList<>();
        for (long p = 0; p < 64; p++) {
            long pfn = c.pageAt(cva + p * K4);
            if (pfn >= start && pfn < end) {
                inRange.add(pfn);
            }
        }
        System.out.println("offline " + r + ", pages faulted into the range meanwhile: " + inRange.size());
        if (r != null) {
            assertThat(inRange).as("pages in use left in the offlined range [0x%x, 0x%x)", start, end).isEmpty();
            assertThat(r.offlinedFrames()).isEqualTo(512);
        }
        assertThat(machine.checkInvariants()).isEmpty();
    }

    // ---------------------------------------------------------------- races between threads

    static long seed(String test) {
        long seed = Long.getLong("vmcore.seed", System.nanoTime());
        System.out.println(test + " seed=" + seed + " (-Dvmcore.seed=" + seed + ")");
        return seed;
    }

    /**
     * Two threads migrate the same pages (each from its own process, to opposite nodes) while a CPU
     * of each process writes and reads back its own words in them: every word reads back, every
     * status is a node, -EBUSY (the folio lock was taken: migrate_pages' -EAGAIN ran out) or
     * -ENOENT (a migration entry where the page was looked up), and the invariants hold after.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void twoThreadsMigrateTheSamePagesWhileCpusWrite(Kind kind) throws Exception {
        long seed = seed("twoThreadsMigrateTheSamePages " + kind);
        twoNodes();
        Setup s = setup(kind, 0);
        long stride = kind == Kind.HUGE ? 2 * MIB : K4;
        int pages = 4;
        for (int p = 0; p < pages; p++) {
            store(s.a(), s.va() + p * stride + 8, p); // present in both (b shares the file or forked before: faults back)
        }
        AtomicBoolean running = new AtomicBoolean(true);
        List<Worker> workers = new ArrayList<>();
        Set<Integer> statuses = java.util.concurrent.ConcurrentHashMap.newKeySet();
        for (int w = 0; w < 2; w++) {
            AddressSpace mm = w == 0 ? s.a() : s.b();
            int node = w;
            Random r = new Random(seed + w);
            workers.add(new Worker("migrate-" + w, () -> {
                for (int i = 0; i < 150; i++) {
                    long va = s.va() + r.nextInt(pages) * stride;
                    statuses.add(move(mm, va, (node + i) & 1).status(0));
                }
            }));
            Cpu cpu = machine.cpu(w);
            workers.add(new Worker("cpu-" + w, () -> {
                cpu.switchTo(mm);
                long n = 0;
                while (running.get()) {
                    for (int p = 0; p < pages; p++) {
                        long va = s.va() + p * stride + 64 + 8 * node; // each CPU its own word
                        long v = (n << 8) | p;
                        cpu.store(va, 8, v);
                        long got = cpu.load(va, 8);
                        if (got != v && kind != Kind.ANON) {
                            throw new AssertionError("cpu" + node + " read 0x" + Long.toHexString(got) + " after storing 0x"
                                    + Long.toHexString(v) + " (seed " + seed + ")");
                        }
                        if (got != v) {
                            throw new AssertionError("private write lost: 0x" + Long.toHexString(got) + " (seed " + seed + ")");
                        }
                    }
                    n++;
                }
                cpu.switchTo(null);
            }));
        }
        workers.get(0).joinOrDump();
        workers.get(2).joinOrDump();
        running.set(false);
        for (Worker w : workers) {
            w.joinOrDump();
        }
        for (Worker w : workers) {
            assertThat(w.failure.get()).as("%s (seed %d)", w.thread.getName(), seed).isNull();
        }
        System.out.println(kind + " statuses " + statuses);
        assertThat(statuses).allMatch(st -> st == 0 || st == 1 || st == -Errno.EBUSY || st == -Errno.ENOENT);
        for (int p = 0; p < pages; p++) {
            assertThat(load(s.a(), s.va() + p * stride + 8)).isEqualTo(p);
            assertUnlocked(kind == Kind.HUGE ? s.file().pageAt(p) : s.a().pageAt(s.va() + p * stride));
        }
        assertThat(machine.checkInvariants()).as("seed %d", seed).isEmpty();
    }

    /**
     * RmapWalker.tryToMigrate leaves migration entries with no migration behind them (refcount 0);
     * the exits of the two processes that hold them then race to free the page
     * (MigrationEntryRefs: the last entry cleared frees it). Whichever order, the page must be
     * freed exactly once: no frame may leak.
     */
    @Test
    void exitsRacingOverEntriesOfAnRmapMigrationFreeThePage() throws Exception {
        long seed = seed("exitsRacingOverEntries");
        Random r = new Random(seed);
        twoNodes();
        long free0 = machine.freeFrames();
        for (int round = 0; round < 300; round++) {
            AddressSpace a = machine.createAddressSpace();
            long va = a.mmap(ANON_BASE, 16 * K4, Protection.READ_WRITE,
                    MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
            List<AddressSpace> family = new ArrayList<>(List.of(a, a.fork(), a.fork()));
            for (long p = 0; p < 16; p++) {
                machine.rmap().tryToMigrate(a.pageAt(va + p * K4));
            }
            CountDownLatch go = new CountDownLatch(1);
            List<Worker> exits = new ArrayList<>();
            java.util.Collections.shuffle(family, r);
            for (AddressSpace mm : family) {
                exits.add(new Worker("exit", () -> {
                    go.await();
                    mm.close();
                }));
            }
            go.countDown();
            for (Worker w : exits) {
                w.joinOrDump();
                assertThat(w.failure.get()).isNull();
            }
            List<String> problems = machine.checkInvariants();
            assertThat(problems).as("round %d seed %d", round, seed).isEmpty();
            assertThat(machine.freeFrames()).as("round %d seed %d", round, seed).isEqualTo(free0);
        }
    }

    /**
     * Machine.close while migrations run and CPUs wait on their migration entries
     * (migration_entry_wait): close waits for the migrations, every CPU's access ends (with its
     * value or ClosedException, nothing else), and all memory is freed.
     */
    @Test
    void closeWhileMigrationsRunAndCpusWait() throws Exception {
        long seed = seed("closeWhileMigrationsRun");
        Random r = new Random(seed);
        for (int round = 0; round < 25; round++) {
            Machine m = Machine.builder().node(GIB).node(GIB).cpus(4).hugePages(0, PageSize.SIZE_2M, 8)
                    .hugePages(1, PageSize.SIZE_2M, 8).build();
            machine = m;
            AddressSpace a = m.createAddressSpace();
            long va = a.mmap(ANON_BASE, 8 * K4, Protection.READ_WRITE,
                    MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
            CountDownLatch inside = new CountDownLatch(1);
            m.migration().setObserver(e -> {
                inside.countDown();
                if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                    java.util.concurrent.locks.LockSupport.parkNanos(r.nextInt(2_000_000));
                }
            });
            List<Worker> workers = new ArrayList<>();
            workers.add(new Worker("migrate", () -> {
                try {
                    for (int i = 0; ; i++) {
                        m.migration().movePages(a, new long[] {va + (i & 7) * K4}, new int[] {i & 1}, MOVE_ALL);
                    }
                } catch (ClosedException expected) {
                    // the machine closed between pages
                }
            }));
            for (int c = 0; c < 4; c++) {
                Cpu cpu = m.cpu(c);
                int id = c;
                workers.add(new Worker("cpu-" + c, () -> {
                    try {
                        cpu.switchTo(a);
                        for (long n = 0; ; n++) {
                            long at = va + (n & 7) * K4 + 8 * id;
                            cpu.store(at, 8, n);
                            long got = cpu.load(at, 8);
                            if (got != n) {
                                throw new AssertionError("read " + got + " after storing " + n);
                            }
                        }
                    } catch (ClosedException expected) {
                        // the machine closed under the access
                    }
                }));
            }
            await(inside);
            Thread.sleep(r.nextInt(5));
            m.close();
            for (Worker w : workers) {
                w.joinOrDump();
            }
            for (Worker w : workers) {
                if (w.failure.get() != null) {
                    w.failure.get().printStackTrace();
                }
                assertThat(w.failure.get()).as("%s round %d seed %d", w.thread.getName(), round, seed).isNull();
            }
            assertThat(m.offHeapBytes()).isZero();
        }
    }

    /**
     * Everything at once, seeded: two CPUs write and read back words in private pages (COW-shared
     * with a child), shmem pages (shared with the child: one CPU writes a counter the other must
     * never see go back) and a shared hugetlb window, while two threads migrate those pages and
     * the pages of a scratch area (move_pages, migrate_pages, the odd soft offline), one thread pins
     * pages with GUP-fast, and one unmaps, remaps, protects, forks and truncates the scratch area.
     * Every word reads back, no page stays locked, the invariants hold after each round, and after
     * the last round closing everything gives every frame back.
     */
    @Test
    void migrationsBesideEveryMutationKeepDataAndInvariants() throws Exception {
        long seed = seed("migrationsBesideEveryMutation");
        Random seeds = new Random(seed);
        machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, POOL)
                .hugePages(1, PageSize.SIZE_2M, POOL).detectStaleTranslations(true).build();
        long free0 = machine.freeFrames();
        int pages = 8;
        long scratch = 0x30_0000_0000L;
        long scratchHuge = 16 * GIB;
        AddressSpace a = machine.createAddressSpace();
        a.mmap(ANON_BASE, pages * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                | MapFlags.MAP_POPULATE);
        a.mmap(SHM_BASE, pages * K4, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED
                | MapFlags.MAP_POPULATE);
        HugetlbFile window = machine.hugetlbfs().create("window", GIB, PageSize.SIZE_2M);
        a.mmap(window, 0, HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED);
        AddressSpace child = a.fork();
        AddressSpace b = machine.createAddressSpace();
        b.mmap(window, 0, HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED);
        long[] stable = new long[3 * pages];
        for (int p = 0; p < pages; p++) {
            stable[p] = ANON_BASE + p * K4;
            stable[pages + p] = SHM_BASE + p * K4;
            stable[2 * pages + p] = HUGE_BASE + p * 2 * MIB;
        }
        int poisoned = 0;
        for (int round = 0; round < 4; round++) {
            long roundSeed = seeds.nextLong();
            AtomicBoolean running = new AtomicBoolean(true);
            AtomicInteger softOffline = new AtomicInteger();
            List<Worker> workers = new ArrayList<>();
            // CPU 0 in a: its own word of every stable page; and the counter the child's CPU writes in shmem
            Cpu cpu0 = machine.cpu(0);
            Cpu cpu1 = machine.cpu(1);
            workers.add(new Worker("cpu-a", () -> {
                cpu0.switchTo(a);
                long[] lastSeen = new long[pages];
                for (long n = 1; running.get(); n++) {
                    for (int i = 0; i < stable.length; i++) {
                        cpu0.store(stable[i], 8, n * 1000 + i);
                        long got = cpu0.load(stable[i], 8);
                        if (got != n * 1000 + i) {
                            throw new AssertionError("a lost its write at 0x" + Long.toHexString(stable[i]) + ": " + got);
                        }
                    }
                    for (int p = 0; p < pages; p++) {
                        long c = cpu0.load(SHM_BASE + p * K4 + 8, 8);
                        if (c < lastSeen[p]) {
                            throw new AssertionError("the child's shmem counter went back from " + lastSeen[p] + " to " + c);
                        }
                        lastSeen[p] = c;
                    }
                }
                cpu0.switchTo(null);
            }));
            long base = (round + 1) * 1_000_000_000L; // the counter goes on rising from round to round
            workers.add(new Worker("cpu-child-b", () -> {
                for (long n = base; running.get(); n++) {
                    cpu1.switchTo(child);
                    for (int p = 0; p < pages; p++) {
                        cpu1.store(ANON_BASE + p * K4 + 8, 8, n); // the child's own copy after COW
                        cpu1.store(SHM_BASE + p * K4 + 8, 8, n);
                        if (cpu1.load(ANON_BASE + p * K4 + 8, 8) != n || cpu1.load(SHM_BASE + p * K4 + 8, 8) != n) {
                            throw new AssertionError("the child lost a write");
                        }
                    }
                    cpu1.switchTo(b);
                    for (int p = 0; p < pages; p++) {
                        cpu1.store(HUGE_BASE + p * 2 * MIB + 8, 8, n);
                        if (cpu1.load(HUGE_BASE + p * 2 * MIB + 8, 8) != n) {
                            throw new AssertionError("b lost a write");
                        }
                    }
                }
                cpu1.switchTo(null);
            }));
            for (int m = 0; m < 2; m++) {
                Random r = new Random(roundSeed + m);
                workers.add(new Worker("migrate-" + m, () -> {
                    AddressSpace[] spaces = {a, child, b};
                    while (running.get()) {
                        AddressSpace mm = spaces[r.nextInt(3)];
                        long va = r.nextInt(3) == 0 ? scratch + r.nextInt(pages) * K4
                                : r.nextInt(4) == 0 ? scratchHuge : stable[r.nextInt(stable.length)];
                        switch (r.nextInt(12)) {
                            case 0 -> machine.migration().migratePages(mm, new int[] {0, 1}, new int[] {1, 0}, MOVE_ALL);
                            case 1 -> {
                                long pfn = mm.pageAt(va);
                                if (pfn >= 0 && softOffline.get() < 3 && softOffline.incrementAndGet() <= 3) {
                                    try {
                                        machine.migration().softOffline(pfn);
                                    } catch (org.vmcore.api.InvalidArgumentException gone) {
                                        // freed or became a page table since pageAt
                                    }
                                }
                            }
                            default -> move(mm, va, r.nextInt(2));
                        }
                    }
                }));
            }
            Random pr = new Random(roundSeed + 7);
            workers.add(new Worker("gup-fast", () -> {
                while (running.get()) {
                    org.vmcore.api.PageReference ref = a.getUserPageFast(stable[pr.nextInt(stable.length)], pr.nextBoolean());
                    Thread.onSpinWait();
                    if (ref != null) {
                        ref.close();
                    }
                }
            }));
            Random mr = new Random(roundSeed + 9);
            workers.add(new Worker("mutate", () -> {
                HugetlbFile f = null;
                while (running.get()) {
                    switch (mr.nextInt(7)) {
                        case 0 -> a.mmap(scratch, pages * K4, Protection.READ_WRITE, (mr.nextBoolean() ? MapFlags.MAP_PRIVATE
                                : MapFlags.MAP_SHARED) | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
                        case 1 -> a.munmap(scratch + mr.nextInt(pages) * K4, K4);
                        case 2 -> {
                            try {
                                a.mprotect(scratch, pages * K4, mr.nextBoolean() ? Protection.READ : Protection.READ_WRITE);
                            } catch (org.vmcore.api.InvalidArgumentException hole) {
                                // a page of the scratch area is unmapped: -ENOMEM
                            }
                        }
                        case 3 -> a.fork().close();
                        case 4 -> {
                            if (f != null) {
                                f.truncate(mr.nextBoolean() ? 0 : Math.min(2 * MIB, f.size()));
                                a.munmap(scratchHuge, 4 * MIB);
                                machine.hugetlbfs().unlink(f.name());
                            }
                            f = machine.hugetlbfs().create("scratch" + mr.nextLong(), 4 * MIB, PageSize.SIZE_2M);
                            a.mmap(f, 0, scratchHuge, 4 * MIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
                        }
                        case 5 -> {
                            try {
                                a.fault(scratch + mr.nextInt(pages) * K4, Access.WRITE);
                            } catch (SegmentationFaultException unmappedOrReadOnly) {
                                // the scratch page is unmapped or read-only now
                            }
                        }
                        default -> {
                            if (f != null) {
                                f.truncate(f.size() > 0 ? f.size() - 2 * MIB : 0);
                            }
                        }
                    }
                }
            }));
            Thread.sleep(400);
            running.set(false);
            for (Worker w : workers) {
                w.joinOrDump();
            }
            for (Worker w : workers) {
                if (w.failure.get() != null) {
                    w.failure.get().printStackTrace();
                }
                assertThat(w.failure.get()).as("%s, round %d, seed %d", w.thread.getName(), round, seed).isNull();
            }
            poisoned += Math.min(3, softOffline.get());
            for (long va : stable) {
                assertUnlocked(a.pageAt(va) >= 0 ? a.pageAt(va) : b.pageAt(va));
            }
            assertThat(machine.checkInvariants()).as("round %d seed %d", round, seed).isEmpty();
            assertThat(machine.staleAccessCount()).as("round %d seed %d", round, seed).isZero();
        }
        for (AddressSpace mm : machine.addressSpaces()) {
            mm.close();
        }
        for (HugetlbFile f : machine.hugetlbfs().files()) {
            machine.hugetlbfs().unlink(f.name());
        }
        assertThat(machine.checkInvariants()).as("seed %d", seed).isEmpty();
        System.out.println("frames: " + free0 + " before, " + machine.freeFrames() + " after, soft offline tries " + poisoned);
        long hugeTotal = machine.hugetlbfs().pool(0, PageSize.SIZE_2M).total() + machine.hugetlbfs().pool(1, PageSize.SIZE_2M).total();
        long hugeFree = machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free() + machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free();
        assertThat(hugeFree).as("seed %d", seed).isEqualTo(hugeTotal);
        assertThat(machine.freeFrames()).as("seed %d", seed).isBetween(free0 - poisoned, free0);
    }

    /**
     * A truncation calls the notifiers of each VMA it zaps holding i_mmap_rwsem for write
     * (hugetlb_vmdelete_list). A fault of another process that shares no table yet holds the
     * page's fault mutex and waits for i_mmap_rwsem (huge_pmd_share); the notifier then faults
     * that page in the other process: it must not wait for the fault mutex the waiting fault holds.
     */
    @Test
    void truncationNotifierFaultsWhileAFaultWaitsForIMmap() throws Exception {
        twoNodes();
        HugetlbFile file = machine.hugetlbfs().create("t", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, 2 * HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED); // no PMD table yet
        a.fault(HUGE_BASE, Access.WRITE);
        CountDownLatch inside = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        AtomicReference<Object> seen = new AtomicReference<>();
        a.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (inside.getCount() == 0) {
                    return;
                }
                inside.countDown();
                await(go);
                try {
                    seen.set(b.fault(2 * HUGE_BASE, Access.READ));
                } catch (RuntimeException e) {
                    seen.set(e);
                }
            }
        });
        Worker truncate = new Worker("truncate", () -> file.truncate(0));
        await(inside);
        Worker fault = new Worker("b-fault", () -> {
            try {
                b.fault(2 * HUGE_BASE, Access.READ);
            } catch (SegmentationFaultException beyondEof) {
                // the truncation went first
            }
        });
        assertThat(fault.stillRunningAfter(300)).as("b's fault waits for i_mmap_rwsem").isTrue();
        go.countDown();
        truncate.joinOrDump();
        fault.joinOrDump();
        System.out.println("notifier fault saw " + seen.get());
        assertThat(truncate.failure.get()).isNull();
        assertThat(fault.failure.get()).isNull();
        assertThat(file.cachedPages()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * try_to_migrate_one flushes under the page-table lock (ptep_clear_flush), and the flush tells
     * the notifiers (mmu_notifier_arch_invalidate_secondary_tlbs). A notifier that faults another
     * process there, or migrates another page, must not take locks in the wrong order (the other
     * table's lock inside this one's, an rmap lock inside a page-table lock).
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void secondaryTlbNotifierOfAMigrationCallsBack(Kind kind) {
        twoNodes();
        Setup s = setup(kind, 41);
        AddressSpace other = machine.createAddressSpace();
        long ov = other.mmap(0x50_0000_0000L, 64 * K4, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        other.fault(ov, Access.WRITE);
        List<Object> seen = new ArrayList<>();
        MmuNotifier n = new MmuNotifier() {
            @Override
            public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
                try {
                    seen.add(other.fault(ov + (seen.size() + 1) * K4, Access.WRITE));
                } catch (RuntimeException e) {
                    seen.add(e);
                }
                try {
                    seen.add(move(other, ov, 1).status(0));
                } catch (RuntimeException e) {
                    seen.add(e);
                }
            }
        };
        s.a().registerNotifier(n);
        s.b().registerNotifier(n);
        Throwable thrown = null;
        try {
            move(s.a(), s.va(), 1);
        } catch (Throwable t) {
            thrown = t;
        }
        System.out.println(kind + " secondary-TLB notifier saw " + seen + ", migration threw " + thrown);
        assertThat(thrown).isNull();
        assertThat(load(s.a(), s.va())).isEqualTo(41);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * wp_page_copy and hugetlb_wp flush the old entry under the page-table lock (and the fault
     * mutex and VMA lock for hugetlb); the secondary-TLB notifier of that flush faults another
     * process's anonymous page and a hugetlb page of another file page: no lock inside the
     * page-table lock, no second fault mutex waited for.
     */
    @Test
    void secondaryTlbNotifierOfACowFaultCallsBack() {
        twoNodes();
        AddressSpace other = machine.createAddressSpace();
        long ov = other.mmap(0x50_0000_0000L, 64 * K4, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        HugetlbFile file = machine.hugetlbfs().create("cow", 8 * MIB, PageSize.SIZE_2M);
        other.mmap(file, 0, HUGE_BASE, 8 * MIB, Protection.READ_WRITE, SHARED_FIXED);
        AddressSpace a = machine.createAddressSpace();
        a.mmap(ANON_BASE, K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        a.mmap(file, 0, 2 * HUGE_BASE, 8 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        store(a, ANON_BASE, 1);
        store(a, 2 * HUGE_BASE, 2);
        AddressSpace child = a.fork();
        List<Object> seen = new ArrayList<>();
        a.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
                try {
                    seen.add(other.fault(ov + seen.size() * K4, Access.WRITE));
                    seen.add(other.fault(HUGE_BASE + 2 * MIB * (1 + seen.size() % 3), Access.WRITE));
                } catch (RuntimeException e) {
                    seen.add(e);
                }
            }
        });
        store(a, ANON_BASE, 3); // do_wp_page copies: the child keeps 1
        store(a, 2 * HUGE_BASE, 4); // hugetlb_wp copies: the child keeps 2
        System.out.println("COW secondary-TLB notifier saw " + seen);
        assertThat(seen).noneMatch(o -> o instanceof Throwable);
        assertThat(load(child, ANON_BASE)).isEqualTo(1);
        assertThat(load(child, 2 * HUGE_BASE)).isEqualTo(2);
        assertThat(load(a, ANON_BASE)).isEqualTo(3);
        assertThat(load(a, 2 * HUGE_BASE)).isEqualTo(4);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    enum Op { EXIT, MUNMAP, FORK, MPROTECT, TRUNCATE }

    static Stream<Arguments> kindsPhasesAndOps() {
        List<Arguments> out = new ArrayList<>();
        for (Kind k : Kind.values()) {
            for (MigrationPhase p : MigrationPhase.values()) {
                for (Op op : Op.values()) {
                    if (op != Op.TRUNCATE || k == Kind.HUGE) {
                        out.add(Arguments.of(k, p, op));
                    }
                }
            }
        }
        return out.stream();
    }

    /**
     * A migration held at each of its phases while another thread exits the first process, unmaps
     * the page there, forks it, write-protects it or truncates the file: the operation either runs
     * beside the migration (zap, fork and mprotect under the page-table locks, meeting the
     * migration entry: zap_nonpresent_ptes, copy_nonpresent_pte, change_pte_range) or waits for
     * its folio lock (truncation, the teardown of the shmem object); afterwards the data is where
     * it must be, the protection is honoured, the invariants hold, and closing everything gives
     * every frame and huge page back.
     */
    @ParameterizedTest(name = "{0} {1} {2}")
    @MethodSource("kindsPhasesAndOps")
    void anOperationOfAnotherThreadAtEachPhase(Kind kind, MigrationPhase phase, Op op) throws Exception {
        twoNodes();
        long free0 = machine.freeFrames();
        Setup s = setup(kind, 0x77);
        long size = kind == Kind.HUGE ? 2 * MIB : K4;
        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                arrived.countDown();
                await(go);
            }
        });
        AtomicReference<MovePagesResult> moved = new AtomicReference<>();
        Worker migrate = new Worker("migrate", () -> moved.set(move(s.a(), s.va(), 1)));
        await(arrived);
        AtomicReference<AddressSpace> forked = new AtomicReference<>();
        Worker other = new Worker("op", () -> {
            switch (op) {
                case EXIT -> s.a().close();
                case MUNMAP -> s.a().munmap(s.va(), size);
                case FORK -> forked.set(s.a().fork());
                case MPROTECT -> s.a().mprotect(s.va(), size, Protection.READ);
                default -> s.file().truncate(0);
            }
        });
        other.stillRunningAfter(150); // it runs beside the migration, or waits for it
        go.countDown();
        migrate.joinOrDump();
        other.joinOrDump();
        machine.migration().setObserver(null);
        assertThat(migrate.failure.get()).isNull();
        assertThat(other.failure.get()).isNull();
        assertThat(moved.get().status(0)).isIn(1, -Errno.EBUSY, -Errno.ENOENT);
        assertThat(machine.checkInvariants()).isEmpty();
        switch (op) {
            case EXIT -> assertThat(load(s.b(), s.va())).isEqualTo(0x77);
            case MUNMAP -> {
                assertThat(s.a().translate(s.va())).isEqualTo(-1);
                assertThat(load(s.b(), s.va())).isEqualTo(0x77);
            }
            case FORK -> {
                AddressSpace c = forked.get();
                assertThat(load(c, s.va())).isEqualTo(0x77);
                store(c, s.va(), 0x78);
                assertThat(load(s.a(), s.va())).isEqualTo(kind == Kind.ANON ? 0x77 : 0x78);
                assertThat(load(s.b(), s.va())).isEqualTo(kind == Kind.ANON ? 0x77 : 0x78);
                c.close();
            }
            case MPROTECT -> {
                assertThat(load(s.a(), s.va())).isEqualTo(0x77);
                Throwable t = null;
                try {
                    store(s.a(), s.va(), 0x79);
                } catch (SegmentationFaultException e) {
                    t = e;
                } finally {
                    machine.cpu(0).switchTo(null);
                }
                assertThat(t).as("a store through a read-only mapping after the migration").isNotNull();
                store(s.b(), s.va(), 0x7a);
                assertThat(load(s.a(), s.va())).isEqualTo(kind == Kind.ANON ? 0x77 : 0x7a);
            }
            default -> {
                assertThat(s.file().cachedPages()).isZero();
                assertThat(s.a().translate(s.va())).isEqualTo(-1);
                assertThat(s.b().translate(s.va())).isEqualTo(-1);
            }
        }
        assertThat(machine.checkInvariants()).isEmpty();
        s.a().close();
        s.b().close();
        if (s.file() != null) {
            machine.hugetlbfs().unlink(s.file().name());
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free() + machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free())
                    .isEqualTo(2 * POOL);
        }
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.freeFrames()).isEqualTo(free0);
    }

    /**
     * After a page-cache page migrated, its old page is no longer in the cache (move_to_new_folio
     * clears src->mapping of a file folio), but a PFN walker may still hold it. Soft offline or
     * memory offline of that old frame must not migrate it a second time into the slot its
     * successor holds: they fail or poison it, and nothing leaks.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void theOldPageOfAMigrationHeldByAWalkerIsNotMigratedAgain(Kind kind) {
        twoNodes();
        Setup s = setup(kind, 51);
        long old = s.pfn();
        List<org.vmcore.api.PageReference> refs = new ArrayList<>();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                refs.add(machine.tryGetPage(e.oldPfn())); // after the reference check: the migration completes
            }
        });
        assertThat(move(s.a(), s.va(), 1).status(0)).isEqualTo(1);
        machine.migration().setObserver(null);
        assertThat(refs).hasSize(1).doesNotContainNull();
        Throwable thrown = null;
        int rc = Integer.MIN_VALUE;
        try {
            rc = machine.migration().softOffline(old);
        } catch (Throwable t) {
            thrown = t;
        }
        System.out.println(kind + " soft offline of the old page: rc " + rc + ", threw " + thrown);
        assertThat(thrown == null || thrown instanceof org.vmcore.api.InvalidArgumentException)
                .as("soft offline of the old page threw %s", thrown).isTrue();
        refs.get(0).close();
        assertThat(load(s.a(), s.va())).isEqualTo(51);
        assertThat(load(s.b(), s.va())).isEqualTo(51);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * A CPU whose page is migrated back and forth without a pause: each access that meets a
     * migration entry waits for it (migration_entry_wait) and retries; it must get through, never
     * give up ("still faults after N retries"), and read what it wrote.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(Kind.class)
    void aCpuGetsThroughAPageMigratedWithoutPause(Kind kind) throws Exception {
        twoNodes();
        Setup s = setup(kind, 0);
        AtomicBoolean running = new AtomicBoolean(true);
        AtomicInteger migrations = new AtomicInteger();
        Worker migrate = new Worker("migrate", () -> {
            for (int i = 0; running.get(); i++) {
                if (move(s.a(), s.va(), i & 1).status(0) == (i & 1)) {
                    migrations.incrementAndGet();
                }
            }
        });
        Cpu cpu = machine.cpu(1);
        Worker access = new Worker("cpu", () -> {
            cpu.switchTo(s.a());
            long deadline = System.nanoTime() + 300_000_000L;
            for (long n = 0; System.nanoTime() < deadline; n++) {
                cpu.store(s.va() + 16, 8, n);
                long got = cpu.load(s.va() + 16, 8);
                if (got != n) {
                    throw new AssertionError("stored " + n + ", read " + got);
                }
            }
            cpu.switchTo(null);
        });
        access.joinOrDump();
        running.set(false);
        migrate.joinOrDump();
        System.out.println(kind + ": " + migrations.get() + " migrations beside the CPU");
        assertThat(access.failure.get()).isNull();
        assertThat(migrate.failure.get()).isNull();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * do_pages_move isolates each page when it looks it up (add_page_for_migration:
     * isolate_folio_to_list takes a reference), so a page of the batch that its process unmaps
     * before its turn is not freed and handed to another process meanwhile: move_pages never
     * moves a page of a process it was not asked about. Here the first page's observer unmaps
     * the second page of the batch and faults a page in another process on the same thread,
     * whose per-CPU list holds the frame just freed.
     */
    @Test
    void movePagesNeverMovesAnotherProcesssPage() {
        twoNodes();
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(ANON_BASE, 2 * K4, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        long second = a.pageAt(va + K4);
        AddressSpace c = machine.createAddressSpace();
        long cva = c.mmap(0x50_0000_0000L, K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS
                | MapFlags.MAP_FIXED);
        AtomicInteger calls = new AtomicInteger();
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP && calls.getAndIncrement() == 0) {
                a.munmap(va + K4, K4);
                c.fault(cva, Access.WRITE);
            }
        });
        MovePagesResult r = machine.migration().movePages(a, new long[] {va, va + K4}, new int[] {1, 1}, MOVE_ALL);
        machine.migration().setObserver(null);
        long cPage = c.pageAt(cva);
        System.out.println("statuses " + java.util.Arrays.toString(r.status()) + "; c got pfn 0x" + Long.toHexString(cPage)
                + " (a's second page was 0x" + Long.toHexString(second) + "), on node " + machine.page(cPage).node());
        assertThat(machine.page(cPage).node()).as("c's page, faulted on its home node, was moved by a's move_pages").isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * The file of the hugetlb page being migrated is unlinked; the observer unmaps its last two
     * mappings, so the inode is evicted (hugetlbfs_evict_inode: remove_inode_hugepages) on the
     * migrating thread, with the page it migrates: the migration ends, and every huge page is
     * back in its pool.
     */
    @ParameterizedTest(name = "{0}")
    @EnumSource(MigrationPhase.class)
    void observerEvictsTheUnlinkedFileOfThePage(MigrationPhase phase) {
        twoNodes();
        Setup s = setup(Kind.HUGE, 13);
        machine.hugetlbfs().unlink(s.file().name());
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                s.a().munmap(s.va(), GIB);
                s.b().munmap(s.va(), GIB);
            }
        });
        MovePagesResult r = move(s.b(), s.va(), 1);
        machine.migration().setObserver(null);
        assertThat(r.status(0)).isIn(1, -Errno.EBUSY, -Errno.ENOENT);
        assertThat(machine.checkInvariants()).isEmpty();
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(POOL);
        assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free()).isEqualTo(POOL);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).isZero();
    }

    /**
     * offline_pages beside faults: while one thread offlines the 2 MiB block that holds a
     * process's pages, a CPU of another process keeps faulting, writing and unmapping pages on the
     * same node, and a CPU of the first keeps writing its own. When the offline returns, no page in
     * use is left in the block, every frame of it is offline, and every word reads back.
     */
    @Test
    void offlineRangeBesideFaults() throws Exception {
        long seed = seed("offlineRangeBesideFaults");
        twoNodes();
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(ANON_BASE, 32 * K4, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        long start = a.pageAt(va) & ~511L;
        AddressSpace c = machine.createAddressSpace();
        long cva = 0x50_0000_0000L;
        AtomicBoolean running = new AtomicBoolean(true);
        Random r = new Random(seed);
        Worker churn = new Worker("churn", () -> {
            Cpu cpu = machine.cpu(1);
            cpu.switchTo(c);
            while (running.get()) {
                c.mmap(cva, 16 * K4, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
                for (long p = 0; p < 16; p++) {
                    cpu.store(cva + p * K4, 8, p);
                }
                c.munmap(cva, (1 + r.nextInt(16)) * K4);
            }
            cpu.switchTo(null);
        });
        Worker writer = new Worker("writer", () -> {
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(a);
            for (long n = 0; running.get(); n++) {
                long at = va + (n & 31) * K4;
                cpu.store(at, 8, n);
                if (cpu.load(at, 8) != n) {
                    throw new AssertionError("lost a write at 0x" + Long.toHexString(at));
                }
            }
            cpu.switchTo(null);
        });
        Thread.sleep(20);
        org.vmcore.api.OfflineResult result = null;
        VmException refused = null;
        try {
            result = machine.migration().offlineRange(0, start, start + 512);
        } catch (VmException e) {
            refused = e; // -EBUSY after its passes: allowed, but then nothing is promised of the block
        }
        List<Long> inUse = new ArrayList<>();
        if (result != null) {
            for (AddressSpace mm : List.of(a, c)) {
                for (long p = 0; p < 32; p++) {
                    long pfn = mm.pageAt((mm == a ? va : cva) + p * K4);
                    if (pfn >= start && pfn < start + 512) {
                        inUse.add(pfn);
                    }
                }
            }
        }
        running.set(false);
        churn.joinOrDump();
        writer.joinOrDump();
        System.out.println("offline " + result + (refused != null ? " refused: " + refused.getMessage() : ""));
        assertThat(churn.failure.get()).isNull();
        assertThat(writer.failure.get()).isNull();
        if (result != null) {
            assertThat(inUse).as("pages in use in the offlined block (seed %d)", seed).isEmpty();
            assertThat(result.offlinedFrames()).isEqualTo(512);
        }
        assertThat(machine.checkInvariants()).as("seed %d", seed).isEmpty();
    }

    /**
     * migration_entry_wait of a CPU thread whose interrupt status is set (a Java thread asked to
     * stop): the access must neither spin through its retries into an IllegalStateException
     * ("still faults after N retries") nor lose the interrupt; it waits for the migration (or
     * ends with a clear exception) and the interrupt status survives.
     */
    @Test
    void anInterruptedCpuMeetsAMigrationEntry() throws Exception {
        twoNodes();
        Setup s = setup(Kind.ANON, 61);
        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch go = new CountDownLatch(1);
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                arrived.countDown();
                await(go);
            }
        });
        Worker migrate = new Worker("migrate", () -> move(s.a(), s.va(), 1));
        await(arrived);
        AtomicReference<Object> outcome = new AtomicReference<>();
        AtomicBoolean stillInterrupted = new AtomicBoolean();
        Worker cpu = new Worker("cpu", () -> {
            Cpu c = machine.cpu(1);
            c.switchTo(s.a());
            Thread.currentThread().interrupt();
            try {
                outcome.set(c.load(s.va(), 8));
            } catch (RuntimeException e) {
                outcome.set(e);
            } finally {
                stillInterrupted.set(Thread.interrupted());
                c.switchTo(null);
            }
        });
        cpu.stillRunningAfter(300);
        go.countDown();
        migrate.joinOrDump();
        cpu.joinOrDump();
        machine.migration().setObserver(null);
        System.out.println("interrupted CPU: " + outcome.get());
        assertThat(outcome.get()).as("an interrupted access").isNotInstanceOf(IllegalStateException.class);
        assertThat(stillInterrupted.get()).as("the interrupt status survives").isTrue();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * Gigantic (1 GiB) hugetlb pages, whose entries live under page_table_lock: a CPU of each of
     * two processes sharing the file writes and reads back while a thread migrates the page back
     * and forth (unmap_and_move_huge_page), and an observer that throws after the copy lets the
     * migration complete.
     */
    @Test
    void giganticPagesMigrateBesideCpus() throws Exception {
        machine = Machine.builder().node(4 * GIB).node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_1G, 2)
                .hugePages(1, PageSize.SIZE_1G, 2).detectStaleTranslations(true).build();
        HugetlbFile file = machine.hugetlbfs().create("giga", GIB, PageSize.SIZE_1G);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, 2 * HUGE_BASE, GIB, Protection.READ_WRITE, SHARED_FIXED);
        store(a, HUGE_BASE, 5);
        AtomicBoolean running = new AtomicBoolean(true);
        List<Worker> cpus = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            AddressSpace mm = i == 0 ? a : b;
            long base = i == 0 ? HUGE_BASE : 2 * HUGE_BASE;
            Cpu cpu = machine.cpu(i);
            long word = 8 * (i + 1);
            cpus.add(new Worker("cpu-" + i, () -> {
                cpu.switchTo(mm);
                for (long n = 0; running.get(); n++) {
                    cpu.store(base + word * 4096, 8, n);
                    if (cpu.load(base + word * 4096, 8) != n) {
                        throw new AssertionError("lost a write");
                    }
                }
                cpu.switchTo(null);
            }));
        }
        int moved = 0;
        for (int i = 0; i < 40; i++) {
            if (move(i % 2 == 0 ? a : b, i % 2 == 0 ? HUGE_BASE : 2 * HUGE_BASE, (i + 1) & 1).status(0) == ((i + 1) & 1)) {
                moved++;
            }
        }
        RuntimeException boom = new IllegalStateException("after the copy");
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                throw boom;
            }
        });
        int to = machine.page(file.pageAt(0)).node() ^ 1;
        Throwable thrown = null;
        try {
            move(a, HUGE_BASE, to);
        } catch (Throwable t) {
            thrown = t;
        }
        machine.migration().setObserver(null);
        running.set(false);
        for (Worker w : cpus) {
            w.joinOrDump();
            assertThat(w.failure.get()).isNull();
        }
        System.out.println("gigantic page moved " + moved + " times");
        assertThat(thrown).isSameAs(boom);
        assertThat(machine.page(file.pageAt(0)).node()).isEqualTo(to);
        assertThat(load(b, 2 * HUGE_BASE)).isEqualTo(5);
        assertThat(machine.staleAccessCount()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * hugetlb_wp of a reservation owner that finds no free page takes the page back from a child
     * (unmap_ref_private: __unmap_hugepage_range under i_mmap_rwsem and the page-table lock); the
     * child's secondary-TLB notifier of that flush faults another process: no page-table lock
     * taken inside another.
     */
    @Test
    void secondaryTlbNotifierOfUnmapRefPrivateCallsBack() {
        machine = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 2).build();
        HugetlbFile file = machine.hugetlbfs().create("priv", 2 * MIB, PageSize.SIZE_2M);
        HugetlbFile filler = machine.hugetlbfs().create("filler", 2 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        a.mmap(file, 0, HUGE_BASE, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        a.fault(HUGE_BASE, Access.WRITE);
        AddressSpace child = a.fork();
        child.fault(HUGE_BASE, Access.READ);
        AddressSpace other = machine.createAddressSpace();
        other.mmap(filler, 0, 2 * HUGE_BASE, 2 * MIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE); // the last page
        long ov = other.mmap(0x50_0000_0000L, 16 * K4, Protection.READ_WRITE,
                MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        List<Object> seen = new ArrayList<>();
        child.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
                try {
                    seen.add(other.fault(ov + seen.size() * K4, Access.WRITE));
                } catch (RuntimeException e) {
                    seen.add(e);
                }
            }
        });
        Throwable thrown = null;
        try {
            assertThat(a.fault(HUGE_BASE, Access.WRITE)).isEqualTo(org.vmcore.api.FaultResult.COW_REUSE);
        } catch (Throwable t) {
            thrown = t;
        }
        System.out.println("unmap_ref_private notifier saw " + seen + ", fault threw " + thrown);
        assertThat(thrown).isNull();
        assertThat(child.translate(HUGE_BASE)).as("the child lost its page").isEqualTo(-1);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    /**
     * OPEN (not migration's; run with {@code -Dvmcore.hostile.open=true}): hugetlb_wp calls the
     * notifiers with the page's fault mutex and the VMA lock held (hugetlb_fault), and a notifier
     * may change other address spaces. One that unmaps another process's hugetlb mapping takes
     * that VMA's lock (split_vma, __unmap_hugepage_range) inside the first: LockOrderViolation
     * ("recursive locking"), and an ABBA deadlock with the same the other way round. The locks
     * are taken mid-operation, where trying them and giving up (as a callback does with an
     * mmap_lock) would leave the unmap half done; Linux's notifiers cannot do this at all.
     */
    @Test
    @org.junit.jupiter.api.condition.EnabledIfSystemProperty(named = "vmcore.hostile.open", matches = "true")
    void openCowNotifierUnmapsAnotherHugetlbMapping() {
        twoNodes();
        HugetlbFile file = machine.hugetlbfs().create("p", 4 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        a.mmap(file, 0, HUGE_BASE, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
        store(a, HUGE_BASE, 1);
        AddressSpace child = a.fork();
        AddressSpace b = machine.createAddressSpace();
        b.mmap(file, 0, 2 * HUGE_BASE, 4 * MIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        List<Object> seen = new ArrayList<>();
        a.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                try {
                    b.munmap(2 * HUGE_BASE, 2 * MIB);
                    seen.add("unmapped");
                } catch (VmException e) {
                    seen.add(e); // a refusal is fine
                }
            }
        });
        Throwable thrown = null;
        try {
            store(a, HUGE_BASE, 2); // hugetlb_wp: the child keeps 1
        } catch (Throwable t) {
            thrown = t;
        }
        assertThat(thrown).isNull();
        assertThat(seen).hasSize(1);
        assertThat(load(child, HUGE_BASE)).isEqualTo(1);
        assertThat(machine.checkInvariants()).isEmpty();
    }
}
