package org.vmcore.impl.race;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.race.ThreadStates.join;
import static org.vmcore.impl.race.ThreadStates.start;

import java.time.Duration;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.RacePoint;

/**
 * Migration takes the folio lock and the rmap and page-table locks, not the world (mm/migrate.c:
 * migrate_folio_unmap locks the folio, try_to_migrate walks the rmap under its lock). A migration
 * held at one of its phases by its observer leaves every other address space free to run; an
 * access to the page under migration waits for it (migration_entry_wait) and then sees the new
 * page; a truncation of its file waits for its folio lock (remove_inode_single_folio); and a
 * hugetlb migration whose walk meets a VMA lock held by a sibling's fault backs off, as
 * try_to_migrate_one's hugetlb_vma_trylock_write does, and succeeds once the fault is done.
 * Each test would time out if migration still stopped the world.
 */
class ParallelMigrationTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final long K4 = 4096;
    private static final Duration WAIT = Duration.ofSeconds(20);
    /** How long a thread that must wait is watched to be still waiting. */
    private static final long STILL_WAITING_MS = 300;

    private final Machine machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2)
            .hugePages(0, PageSize.SIZE_2M, 520).hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true).build();

    @AfterEach
    void close() {
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    private static void assertStillWaiting(Thread t) throws InterruptedException {
        t.join(STILL_WAITING_MS);
        assertThat(t.isAlive()).as(t.getName() + " must wait for the migration in progress").isTrue();
    }

    /** An observer that parks the migrating thread at {@code phase} until {@code release} opens. */
    private void holdMigrationAt(MigrationPhase phase, CountDownLatch arrived, CountDownLatch release) {
        machine.migration().setObserver(e -> {
            if (e.phase() == phase) {
                arrived.countDown();
                try {
                    release.await(WAIT.toMillis(), TimeUnit.MILLISECONDS);
                } catch (InterruptedException ex) {
                    Thread.currentThread().interrupt();
                }
            }
        });
    }

    @Test
    @DisplayName("a migration held after its unmap: other address spaces run; an access to the page waits, then reads it on the new node")
    void otherAddressSpacesRunWhileAMigrationIsHeld() throws Exception {
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(0, 4 * K4, Protection.READ_WRITE, ANON);
        Cpu cpu0 = machine.cpu(0);
        cpu0.switchTo(a);
        cpu0.store(va, 8, 0x1234_5678L);
        long oldPfn = a.pageAt(va);
        AddressSpace other = machine.createAddressSpace();

        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        holdMigrationAt(MigrationPhase.AFTER_UNMAP, arrived, release);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        MovePagesResult[] result = new MovePagesResult[1];
        Thread migrating = start("migrate", failures, () -> result[0] = machine.migration().movePages(a, new long[] {va},
                new int[] {1}, MigrationService.MPOL_MF_MOVE));
        assertThat(arrived.await(WAIT.toMillis(), TimeUnit.MILLISECONDS)).as("the migration reached AFTER_UNMAP").isTrue();

        assertTimeoutPreemptively(WAIT, () -> {
            long o = other.mmap(0, 16 * K4, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
            assertThat(other.fault(o, Access.WRITE)).isEqualTo(FaultResult.ALREADY_MAPPED);
            other.mprotect(o, 4 * K4, Protection.READ);
            other.fork().close();
            Cpu cpu1 = machine.cpu(1);
            cpu1.switchTo(other);
            cpu1.store(o + 8 * K4, 8, 7);
            assertThat(cpu1.load(o + 8 * K4, 8)).isEqualTo(7);
            cpu1.switchTo(null);
            other.munmap(o, 16 * K4);
            // the migrated address space itself: another page faults in beside the migration entry
            assertThat(a.fault(va + K4, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        }, "operations beside the held migration waited for it");

        AtomicLong read = new AtomicLong(-1);
        Thread reader = start("reader", failures, () -> read.set(cpu0.load(va, 8)));
        assertStillWaiting(reader); // migration_entry_wait: until the folio lock goes
        release.countDown();
        join(migrating);
        join(reader);
        machine.migration().setObserver(null);
        assertThat(failures).isEmpty();
        assertThat(result[0].status(0)).isEqualTo(1);
        assertThat(read.get()).as("the access waited for the copy and read the new page").isEqualTo(0x1234_5678L);
        assertThat(a.pageAt(va)).isNotEqualTo(oldPfn);
        assertThat(machine.page(a.pageAt(va)).node()).isEqualTo(1);
        assertThat(machine.staleAccessCount()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("two migrations of different pages are inside their observers at the same time")
    void twoMigrationsRunTogether() throws Exception {
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        long va = a.mmap(0, K4, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        long vb = b.mmap(0, K4, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        CountDownLatch bothInside = new CountDownLatch(2);
        machine.migration().setObserver(e -> {
            if (e.phase() == MigrationPhase.AFTER_COPY) {
                bothInside.countDown();
                try { // times out if the migrations were serialised
                    assertThat(bothInside.await(WAIT.toMillis(), TimeUnit.MILLISECONDS)).isTrue();
                } catch (InterruptedException ex) {
                    throw new AssertionError(ex);
                }
            }
        });
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        Thread ta = start("migrate-a", failures, () -> machine.migration().movePages(a, new long[] {va}, new int[] {1},
                MigrationService.MPOL_MF_MOVE));
        Thread tb = start("migrate-b", failures, () -> machine.migration().movePages(b, new long[] {vb}, new int[] {1},
                MigrationService.MPOL_MF_MOVE));
        join(ta);
        join(tb);
        machine.migration().setObserver(null);
        assertThat(failures).isEmpty();
        assertThat(machine.page(a.pageAt(va)).node()).isEqualTo(1);
        assertThat(machine.page(b.pageAt(vb)).node()).isEqualTo(1);
        assertThat(machine.migration().stats().get("pgmigrate_success")).isEqualTo(2);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("a truncation of the file waits for the migration of its page (the folio lock), then frees the new page")
    void truncateWaitsForTheMigrationOfItsPage() throws Exception {
        HugetlbFile file = machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        long va = a.mmap(file, 0, 0, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_POPULATE);
        long free0 = machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free();
        long free1 = machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free();

        CountDownLatch arrived = new CountDownLatch(1);
        CountDownLatch release = new CountDownLatch(1);
        holdMigrationAt(MigrationPhase.AFTER_COPY, arrived, release);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        MovePagesResult[] result = new MovePagesResult[1];
        Thread migrating = start("migrate", failures, () -> result[0] = machine.migration().movePages(a, new long[] {va},
                new int[] {1}, MigrationService.MPOL_MF_MOVE));
        assertThat(arrived.await(WAIT.toMillis(), TimeUnit.MILLISECONDS)).isTrue();
        Thread truncating = start("truncate", failures, () -> file.truncate(0));
        assertStillWaiting(truncating);
        release.countDown();
        join(migrating);
        join(truncating);
        machine.migration().setObserver(null);
        assertThat(failures).isEmpty();
        assertThat(result[0].status(0)).as("the migration completed before the page went").isEqualTo(1);
        assertThat(file.cachedPages()).isZero();
        assertThat(a.translate(va)).as("the truncation zapped the mapping").isEqualTo(-1);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("the old page went back to node 0").isEqualTo(free0 + 1);
        assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_2M).free()).as("and the new one, truncated, to node 1").isEqualTo(free1);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    @DisplayName("hugetlb_vma_trylock_write fails while a sibling's fault holds its VMA lock: the migration backs off, then succeeds")
    void hugetlbMigrationBacksOffFromABusyVmaLock() throws Exception {
        HugetlbFile file = machine.hugetlbfs().create("shared", 1 * GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        long base = 8 * GIB; // PUD aligned: a and b share the window's PMD table
        a.mmap(file, 0, base, 1 * GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
        b.mmap(file, 0, base, 1 * GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
        Cpu cpu0 = machine.cpu(0);
        cpu0.switchTo(a);
        cpu0.store(base, 8, 99);
        assertThat(b.fault(base, Access.READ)).isEqualTo(FaultResult.SHARED_TABLE);

        // b faults another page of the window and is held with its VMA lock taken for read
        RacePause pause = RacePause.arm(machine, RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC);
        ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
        Thread faulting = start("b-fault", failures, () -> b.fault(base + 2 * MIB, Access.WRITE));
        pause.awaitArrival(WAIT);

        MovePagesResult busy = assertTimeoutPreemptively(WAIT, () -> machine.migration().movePages(a, new long[] {base},
                new int[] {1}, MigrationService.MPOL_MF_MOVE));
        assertThat(busy.status(0)).as("every pass met b's VMA lock busy: -EBUSY").isEqualTo(-org.vmcore.api.Errno.EBUSY);
        assertThat(machine.page(file.pageAt(0)).node()).isZero();

        pause.release();
        join(faulting);
        assertThat(failures).isEmpty();
        a.fault(base, Access.READ); // a's walk unshared it from the table: it maps the page again
        MovePagesResult moved = machine.migration().movePages(a, new long[] {base}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
        assertThat(moved.status(0)).isEqualTo(1);
        assertThat(machine.page(file.pageAt(0)).node()).isEqualTo(1);
        assertThat(cpu0.load(base, 8)).isEqualTo(99);
        assertThat(machine.staleAccessCount()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }
}
