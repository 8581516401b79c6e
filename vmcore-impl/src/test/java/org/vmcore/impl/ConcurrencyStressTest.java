package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;

/**
 * Everything at once for a bounded time: writer threads drive CPUs that increment counters in
 * private memory and in a shared hugetlb window, while a mutator thread maps, unmaps and
 * write-protects scratch ranges, forks the writers' processes and lets the children write and
 * exit, and migrates the writers' pages between nodes. Afterwards every counter equals the
 * increments made, the invariants hold and the detector saw nothing stale. A watchdog turns a
 * deadlock into a failure with a thread dump.
 */
class ConcurrencyStressTest {
    private static final int WRITERS = 2;
    private static final long RUN_NANOS = 1_500_000_000L;
    private static final long PRIVATE = 0x10_0000_0000L;
    private static final long SCRATCH = 0x30_0000_0000L;
    private static final long WINDOW = 256 * GIB;

    @Test
    void writersMutatorsAndMigrationsTogether() throws Exception {
        long seed = new Random().nextLong();
        System.out.println("ConcurrencyStressTest seed " + seed);
        try (Machine machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(WRITERS + 1).hugePages(0, PageSize.SIZE_2M, 560)
                .hugePages(1, PageSize.SIZE_2M, 100).detectStaleTranslations(true).build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            List<AddressSpace> procs = new ArrayList<>();
            for (int i = 0; i < WRITERS; i++) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(PRIVATE, 64 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
                mm.mmap(file, 0, WINDOW, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
                procs.add(mm);
            }
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            long[] privateIncrements = new long[WRITERS];
            long[] sharedIncrements = new long[WRITERS];
            List<Thread> threads = new ArrayList<>();
            for (int i = 0; i < WRITERS; i++) {
                int w = i;
                threads.add(new Thread(() -> {
                    try {
                        Cpu cpu = machine.cpu(w);
                        cpu.switchTo(procs.get(w));
                        long priv = PRIVATE + 8 * 4096 * w;
                        long shared = WINDOW + 4 * MIB + 64L * w;
                        while (!stop.get()) {
                            cpu.store(priv, 8, cpu.load(priv, 8) + 1);
                            privateIncrements[w]++;
                            cpu.store(shared, 8, cpu.load(shared, 8) + 1);
                            sharedIncrements[w]++;
                            try {
                                cpu.store(SCRATCH + 4096L * (privateIncrements[w] % 16), 8, w);
                            } catch (SegmentationFaultException e) {
                                // the mutator unmapped or write-protected the scratch range: expected
                            }
                        }
                    } catch (Throwable e) {
                        failure.compareAndSet(null, e);
                    }
                }, "writer-" + i));
            }
            threads.add(new Thread(() -> {
                Random random = new Random(seed);
                Cpu cpu = machine.cpu(WRITERS);
                try {
                    while (!stop.get()) {
                        AddressSpace mm = procs.get(random.nextInt(WRITERS));
                        switch (random.nextInt(6)) {
                            case 0 -> mm.mmap(SCRATCH, 16 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS
                                    | MapFlags.MAP_FIXED);
                            case 1 -> mm.munmap(SCRATCH, 16 * 4096);
                            case 2 -> {
                                if (mm.findVma(SCRATCH).isPresent()) {
                                    mm.mprotect(SCRATCH, 16 * 4096, random.nextBoolean() ? Protection.READ : Protection.READ_WRITE);
                                }
                            }
                            case 3 -> {
                                AddressSpace child = mm.fork();
                                cpu.switchTo(child);
                                cpu.store(PRIVATE + 4096L * random.nextInt(64), 8, -1); // COW in the child only
                                cpu.store(WINDOW + 6 * MIB, 8, 7);
                                cpu.switchTo(null);
                                child.close();
                            }
                            case 4 -> machine.migration().movePages(mm, new long[] {PRIVATE, WINDOW + 4 * MIB},
                                    new int[] {random.nextInt(2), random.nextInt(2)}, MigrationService.MPOL_MF_MOVE_ALL);
                            default -> machine.migration().migratePages(mm, new int[] {0}, new int[] {1},
                                    MigrationService.MPOL_MF_MOVE);
                        }
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            }, "mutator"));
            threads.forEach(Thread::start);
            Thread.sleep(RUN_NANOS / 1_000_000);
            stop.set(true);
            for (Thread t : threads) {
                t.join(60_000);
                if (t.isAlive()) {
                    throw new AssertionError("seed " + seed + ": deadlock, " + t.getName() + " did not stop\n" + threadDump());
                }
            }
            if (failure.get() != null) {
                throw new AssertionError("seed " + seed + ": a thread failed", failure.get());
            }
            assertThat(machine.checkInvariants()).as("seed %d", seed).isEmpty();
            Cpu cpu = machine.cpu(0);
            for (int w = 0; w < WRITERS; w++) {
                cpu.switchTo(procs.get(w));
                assertThat(cpu.load(PRIVATE + 8 * 4096 * w, 8)).as("seed %d: writer %d's private counter", seed, w)
                        .isEqualTo(privateIncrements[w]);
                assertThat(cpu.load(WINDOW + 4 * MIB + 64L * w, 8)).as("seed %d: writer %d's shared counter", seed, w)
                        .isEqualTo(sharedIncrements[w]);
            }
            assertThat(privateIncrements[0] + privateIncrements[1]).as("the writers ran").isGreaterThan(1000);
            assertThat(machine.vmstat().get("pgmigrate_success")).as("migrations ran").isPositive();
            assertThat(machine.staleAccessCount()).as("seed %d: stale uses", seed).isZero();
        }
    }

    private static String threadDump() {
        StringBuilder sb = new StringBuilder();
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            sb.append('"').append(e.getKey().getName()).append("\" ").append(e.getKey().getState()).append('\n');
            for (StackTraceElement f : e.getValue()) {
                sb.append("    at ").append(f).append('\n');
            }
        }
        return sb.toString();
    }
}
