package org.vmcore.examples;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
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
 * The founding case of vmcore: "mm: migration: fix migration of huge PMD shared pages"
 * (017b1660df89). N processes map one 1 GiB hugetlb file at 1 GiB-aligned addresses, so they
 * share one PMD table and every huge page has mapcount 1. Writer threads, one per process and
 * CPU, increment counters in a few hot huge pages while a migrator thread moves those pages
 * between two NUMA nodes with move_pages(2). With the fix every increment survives; with
 * {@code --regression=pre-017b1660} migration flushes only the first process it visits and the
 * others keep writing into the old page: lost writes.
 *
 * <p>Run: {@code ./run-example [--regression=pre-017b1660] [--sharers=4] [--seconds=2] [--seed=1]}
 */
public final class PmdShareMigration {
    private static final long GIB = 1L << 30;
    private static final long HUGE = 2L << 20;
    private static final int HOT_PAGES = 4;

    private PmdShareMigration() {
    }

    /** The parsed command line. */
    record Options(boolean regression, int sharers, double seconds, long seed) {
        static Options parse(String[] args) {
            boolean regression = false;
            int sharers = 4;
            double seconds = 2;
            long seed = 1;
            for (String arg : args) {
                String[] kv = arg.split("=", 2);
                String value = kv.length == 2 ? kv[1] : "";
                try {
                    switch (kv[0]) {
                        case "--regression" -> {
                            if (!value.equals("pre-017b1660") && !value.equals("none")) {
                                throw new IllegalArgumentException("--regression must be pre-017b1660 or none, not '" + value + "'");
                            }
                            regression = value.equals("pre-017b1660");
                        }
                        case "--sharers" -> sharers = Integer.parseInt(value);
                        case "--seconds" -> seconds = Double.parseDouble(value);
                        case "--seed" -> seed = Long.parseLong(value);
                        default -> throw new IllegalArgumentException("unknown option '" + arg
                                + "' (known: --regression=pre-017b1660, --sharers=N, --seconds=S, --seed=X)");
                    }
                } catch (NumberFormatException e) {
                    throw new IllegalArgumentException(kv[0] + " needs a number, not '" + value + "'");
                }
            }
            if (sharers < 2 || sharers > 64) {
                throw new IllegalArgumentException("--sharers must be between 2 and 64, not " + sharers);
            }
            if (!(seconds > 0 && seconds <= 600)) {
                throw new IllegalArgumentException("--seconds must be above 0 and at most 600, not " + seconds);
            }
            return new Options(regression, sharers, seconds, seed);
        }
    }

    /** What a run measured. */
    record Outcome(String mode, int sharers, long migrations, long writes, long lostWrites, long staleUses) {
        String lastLine() {
            return "mode=" + mode + " sharers=" + sharers + " migrations=" + migrations + " writes=" + writes + " lost_writes="
                    + lostWrites;
        }
    }

    public static void main(String[] args) throws InterruptedException {
        Options options;
        try {
            options = Options.parse(args);
        } catch (IllegalArgumentException e) {
            System.err.println("PmdShareMigration: " + e.getMessage());
            System.exit(2);
            return;
        }
        Outcome outcome = run(options);
        System.out.println(outcome.lastLine());
    }

    static Outcome run(Options o) throws InterruptedException {
        Machine.Builder builder = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(o.sharers())
                .hugePages(0, PageSize.SIZE_2M, 520).hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true);
        if (o.regression()) {
            builder.enable(Regression.PRE_017B1660);
        }
        String mode = o.regression() ? "pre-017b1660" : "fixed";
        try (Machine machine = builder.build()) {
            HugetlbFile file = machine.hugetlbfs().create("sga", GIB, PageSize.SIZE_2M);
            List<AddressSpace> processes = new ArrayList<>();
            for (int i = 0; i < o.sharers(); i++) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(file, 0, base(i), GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED
                        | (i == 0 ? MapFlags.MAP_POPULATE : 0));
                processes.add(mm);
            }
            for (int i = 1; i < o.sharers(); i++) {
                processes.get(i).fault(base(i), Access.READ); // shares the first process's PMD table
            }
            System.out.printf(Locale.ROOT, "vmcore PmdShareMigration (%s)%n", mode);
            System.out.printf(Locale.ROOT, "machine: 2 NUMA nodes of 2 GiB, 520 free 2 MiB huge pages each, %d CPUs%n", o.sharers());
            System.out.printf(Locale.ROOT, "file: 1 GiB hugetlbfs file (512 x 2 MiB) mapped MAP_SHARED by %d processes at"
                    + " 1 GiB-aligned addresses%n", o.sharers());
            System.out.printf(Locale.ROOT, "PMD sharing: every process has nr_pmds=%d; page 0 has mapcount %d for %d mappers%n",
                    processes.getLast().counters().pmdTables(), machine.page(file.pageAt(0)).mapcount(),
                    machine.rmap().mappings(file.pageAt(0)).size());

            Random random = new Random(o.seed());
            long[] offsets = new long[o.sharers()];
            for (int i = 0; i < o.sharers(); i++) { // each writer: a 64-byte line of its own, in one of the hot pages
                offsets[i] = (i % HOT_PAGES) * HUGE + 4096L * random.nextInt(8) + 64L * i;
            }
            long[] increments = new long[o.sharers()];
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> writers = new ArrayList<>();
            for (int i = 0; i < o.sharers(); i++) {
                int w = i;
                Cpu cpu = machine.cpu(i);
                Thread t = new Thread(() -> {
                    try {
                        cpu.switchTo(processes.get(w));
                        long va = base(w) + offsets[w];
                        long n = 0;
                        while (!stop.get()) {
                            cpu.store(va, 8, cpu.load(va, 8) + 1); // counter[w]++
                            n++;
                        }
                        increments[w] = n;
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }, "writer-" + i);
                writers.add(t);
            }
            System.out.printf(Locale.ROOT, "running %d writer threads and 1 migrator thread for %.1f s (seed %d)%n", o.sharers(),
                    o.seconds(), o.seed());
            writers.forEach(Thread::start);
            long migrations = 0;
            long deadline = System.nanoTime() + (long) (o.seconds() * 1e9);
            for (int turn = 0; System.nanoTime() < deadline && failure.get() == null; turn++) {
                int page = random.nextInt(HOT_PAGES);
                int target = 1 - machine.page(file.pageAt(page)).node();
                int who = turn % o.sharers(); // move_pages(2) through a process that maps the page now
                var r = machine.migration().movePages(processes.get(who), new long[] {base(who) + page * HUGE}, new int[] {target},
                        MigrationService.MPOL_MF_MOVE);
                if (r.status(0) == target) {
                    migrations++;
                }
            }
            stop.set(true);
            for (Thread t : writers) {
                t.join();
            }
            if (failure.get() != null) {
                throw new IllegalStateException("a writer failed", failure.get());
            }
            long writes = 0;
            long lost = 0;
            for (int i = 0; i < o.sharers(); i++) {
                long pfn = file.pageAt(offsets[i] / HUGE);
                long inMemory = machine.readPhysical((pfn << 12) + offsets[i] % HUGE, 8);
                writes += increments[i];
                // a stale writer can also clobber a reused page: count every increment missing or wrong
                lost += Math.abs(increments[i] - inMemory);
            }
            var vmstat = machine.vmstat();
            System.out.printf(Locale.ROOT, "migrations: %d, moving %d hot huge pages between the nodes (pgmigrate_success=%d base"
                    + " pages, TLB shootdowns received=%d)%n", migrations, HOT_PAGES, vmstat.get("pgmigrate_success"),
                    vmstat.get("nr_tlb_remote_flush_received"));
            System.out.printf(Locale.ROOT, "writes: %d increments performed, %d found in memory%n", writes, writes - lost);
            System.out.printf(Locale.ROOT, "stale-translation detector: %d uses of stale translations%n", machine.staleAccessCount());
            machine.staleAccesses().stream().limit(3).forEach(s -> System.out.println("  e.g. " + s));
            if (o.regression()) {
                System.out.println("without the fix, migration unmapped and flushed only the first process it visited; the"
                        + " others kept writing to the old page through their TLBs");
            } else {
                System.out.println("with the fix, each sharer's PMD table was unshared and its whole 1 GiB window flushed"
                        + " before the copy");
            }
            return new Outcome(mode, o.sharers(), migrations, writes, lost, machine.staleAccessCount());
        }
    }

    private static long base(int process) {
        return (16L + 2 * process) * GIB;
    }
}
