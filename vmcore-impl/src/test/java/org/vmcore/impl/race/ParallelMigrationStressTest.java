package org.vmcore.impl.race;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.race.ThreadStates.start;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;

/**
 * Migrations in parallel with everything that meets their entries: two CPUs write and read back
 * words in private anonymous, shmem and shared hugetlb pages of a process and its forked child,
 * while one thread migrates those pages between the nodes (move_pages, migrate_pages) and another
 * forks the process and lets the child go, and maps, protects and unmaps a scratch range of it.
 * Every store must be read back where it was written, and in memory at the end: a migration
 * that copied a page while a CPU could still write the old one (the founding bug, 017b1660df89),
 * or a fault that mapped a page-cache page during its copy, loses it; with
 * {@link Regression#PRE_017B1660} writes are lost, and the test asserts that they are. Seeded: the seed is printed
 * and named by a failure ({@code -Dvmcore.seed=S} replays one).
 */
class ParallelMigrationStressTest {
    private static final long K4 = 4096;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final long ANON_BASE = 0x10_0000_0000L;
    private static final long SHM_BASE = 0x20_0000_0000L;
    private static final long HUGE_BASE = 8 * GIB; // PUD aligned: parent and child share its PMD table
    private static final long SCRATCH = 0x30_0000_0000L;
    private static final int PAGES = 32;
    private static final int HUGE_PAGES = 4;
    private static final int WRITES = 20_000;
    /** move_pages calls the writers wait for before they stop (at most {@link #MAX_WRITES} writes). */
    private static final int MIN_MOVE_PAGES_CALLS = 200;
    private static final int MAX_WRITES = 5_000_000;

    @ParameterizedTest(name = "seed {0}, PRE_017B1660 {1}")
    @CsvSource({"1, false", "2, false", "3, false", "1, true"})
    void writesSurviveParallelMigrations(long defaultSeed, boolean regression) throws Exception {
        long seed = Long.getLong("vmcore.seed", defaultSeed);
        try {
            if (!regression) {
                run(seed, false);
            } else {
                // the harm needs a CPU write to meet a migration at the wrong moment: nearly every
                // run shows it (12 of 13 measured); three runs make a miss of all three unlikely
                long harm = 0;
                for (int attempt = 0; attempt < 3 && harm == 0; attempt++) {
                    harm = run(seed + 100L * attempt, true);
                }
                assertThat(harm).as("lost writes or stale accesses in one of three runs with PRE_017B1660").isPositive();
            }
        } catch (Throwable e) {
            throw new AssertionError("ParallelMigrationStressTest failed with seed " + seed + " (-Dvmcore.seed=" + seed + "): " + e, e);
        }
    }

    /** One run; returns the writes lost plus the stale accesses seen (asserted to be 0 without the regression). */
    private long run(long seed, boolean regression) throws Exception {
        Machine.Builder builder = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 520)
                .hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true);
        if (regression) {
            builder.enable(Regression.PRE_017B1660); // migration unmaps a shared-table page in one sharer only
        }
        try (Machine machine = builder.build()) {
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(ANON_BASE, PAGES * K4, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
            parent.mmap(SHM_BASE, PAGES * K4, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            HugetlbFile file = machine.hugetlbfs().create("window", GIB, PageSize.SIZE_2M);
            parent.mmap(file, 0, HUGE_BASE, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            AddressSpace child = parent.fork();
            List<AddressSpace> spaces = List.of(parent, child);

            ConcurrentLinkedQueue<Throwable> failures = new ConcurrentLinkedQueue<>();
            AtomicBoolean writing = new AtomicBoolean(true);
            AtomicInteger movePagesCalls = new AtomicInteger();
            List<Writer> writers = new ArrayList<>();
            List<Thread> threads = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                Writer w = new Writer(machine.cpu(i), spaces.get(i), new Random(seed * 31 + i), 0x40 + 0x40L * i, movePagesCalls);
                writers.add(w);
                threads.add(start("writer" + i, failures, w::run));
            }
            Random migratorRandom = new Random(seed * 31 + 2);
            int[] migrated = {0};
            threads.add(start("migrator", failures, () -> {
                while (writing.get() && failures.isEmpty()) {
                    migrateSome(machine, spaces.get(migratorRandom.nextInt(2)), migratorRandom, migrated);
                    movePagesCalls.incrementAndGet();
                }
            }));
            Random forkerRandom = new Random(seed * 31 + 3);
            threads.add(start("forker", failures, () -> {
                while (writing.get() && failures.isEmpty()) {
                    mutate(parent, forkerRandom);
                }
            }));
            for (Thread t : threads.subList(0, 2)) {
                t.join(120_000);
            }
            writing.set(false);
            for (Thread t : threads) {
                t.join(120_000);
                assertThat(t.isAlive()).as(t.getName() + " finished").isFalse();
            }
            assertThat(failures).isEmpty();
            long lost = 0;
            for (Writer w : writers) {
                lost += w.mismatches + w.lostAtTheEnd();
            }
            String report = "seed " + seed + ", PRE_017B1660 " + regression + ": " + migrated[0] + " pages moved by move_pages, "
                    + lost + " writes lost, " + machine.staleAccessCount() + " stale accesses, " + machine.migration().stats();
            System.out.println("ParallelMigrationStressTest " + report);
            assertThat(migrated[0]).as(report).isPositive();
            if (regression) {
                return lost + machine.staleAccessCount(); // the sharer left with the table writes into the old page
            }
            assertThat(lost).as(report).isZero();
            assertThat(machine.staleAccessCount()).as(report).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
            return 0;
        }
    }

    /** A random address the writers use: a private, a shmem or a hugetlb page. */
    private static long randomPage(Random r) {
        return switch (r.nextInt(3)) {
            case 0 -> ANON_BASE + r.nextInt(PAGES) * K4;
            case 1 -> SHM_BASE + r.nextInt(PAGES) * K4;
            default -> HUGE_BASE + r.nextInt(HUGE_PAGES) * 2 * MIB;
        };
    }

    /** move_pages of a few pages to random nodes, now and then migrate_pages of the whole process. */
    private static void migrateSome(Machine machine, AddressSpace mm, Random r, int[] migrated) {
        if (r.nextInt(16) == 0) {
            int from = r.nextInt(2);
            machine.migration().migratePages(mm, new int[] {from}, new int[] {1 - from}, MigrationService.MPOL_MF_MOVE_ALL);
            return;
        }
        int n = 1 + r.nextInt(4);
        long[] addresses = new long[n];
        int[] nodes = new int[n];
        for (int i = 0; i < n; i++) {
            addresses[i] = randomPage(r);
            nodes[i] = r.nextInt(2);
        }
        var result = machine.migration().movePages(mm, addresses, nodes, MigrationService.MPOL_MF_MOVE_ALL);
        for (int i = 0; i < n; i++) {
            if (result.status(i) == nodes[i]) {
                migrated[0]++;
            }
        }
    }

    /** fork meets migration entries; the child faults a little and exits; a scratch range comes and goes. */
    private static void mutate(AddressSpace parent, Random r) {
        switch (r.nextInt(3)) {
            case 0 -> {
                AddressSpace c = parent.fork();
                c.fault(ANON_BASE + r.nextInt(PAGES) * K4, Access.WRITE);
                c.fault(HUGE_BASE + r.nextInt(HUGE_PAGES) * 2 * MIB, Access.READ);
                c.close();
            }
            case 1 -> {
                parent.mmap(SCRATCH, 16 * K4, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
                parent.mprotect(SCRATCH + 4 * K4, 4 * K4, Protection.READ);
            }
            default -> parent.munmap(SCRATCH, 16 * K4);
        }
    }

    /** One CPU writing its own word of each page and reading it back, with a model of what it wrote. */
    private static final class Writer {
        private final Cpu cpu;
        private final AddressSpace mm;
        private final Random random;
        private final long word;
        private final LongLongHashMap model = new LongLongHashMap();
        private long mismatches;
        private final AtomicInteger migratorCalls;

        Writer(Cpu cpu, AddressSpace mm, Random random, long word, AtomicInteger migratorCalls) {
            this.migratorCalls = migratorCalls;
            this.cpu = cpu;
            this.mm = mm;
            this.random = random;
            this.word = word;
        }

        void run() {
            cpu.switchTo(mm);
            for (int i = 1; i <= MAX_WRITES && (i <= WRITES || migratorCalls.get() < MIN_MOVE_PAGES_CALLS); i++) {
                long va = randomPage(random) + word;
                long value = ((long) i << 16) ^ random.nextInt(1 << 16);
                cpu.store(va, 8, value);
                model.put(va, value);
                if (cpu.load(va, 8) != value) {
                    mismatches++; // read back from another page than the store went to
                }
            }
        }

        /** The words whose last store is not what a load finds now. */
        long lostAtTheEnd() {
            long[] lost = {0};
            model.forEachKeyValue((va, value) -> {
                if (cpu.load(va, 8) != value) {
                    lost[0]++;
                }
            });
            cpu.switchTo(null);
            return lost[0];
        }
    }
}
