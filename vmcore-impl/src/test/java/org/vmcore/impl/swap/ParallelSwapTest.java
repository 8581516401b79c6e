package org.vmcore.impl.swap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.Queue;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.race.ThreadStates;

/**
 * Reclaim beside the rest of the machine (the locking of shrink_folio_list and do_swap_page):
 * two CPUs write and read back their processes' private pages, a parent and its forked child
 * sharing them until written, while one thread reclaims and pages out and another migrates and
 * forks. Every read returns the thread's last write, and at the end the invariants hold and the
 * machine closes with nothing left. Seeded; prints its seed.
 */
class ParallelSwapTest {
    private static final long P = 4096;
    private static final long VA = 0x5000_0000_0000L;
    private static final int PAGES = 96;

    @Test
    void reclaimBesideCpusForksAndMigrations() throws Exception {
        long seed = Long.getLong("vmcore.seed", System.nanoTime());
        System.out.println("ParallelSwapTest seed " + seed);
        Machine machine = Machine.builder().node(GIB).node(GIB).cpus(2).swap(129 * P).detectStaleTranslations(true).build();
        AddressSpace parent = machine.createAddressSpace();
        parent.mmap(VA, PAGES * P, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        Cpu boot = machine.cpu(0);
        boot.switchTo(parent);
        for (int i = 0; i < PAGES; i++) {
            boot.store(VA + i * P, 8, i);
        }
        AddressSpace child = parent.fork();
        Queue<Throwable> failures = new ConcurrentLinkedQueue<>();
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong rounds = new AtomicLong(); // the CPUs go on until reclaim has run this often beside them
        Thread[] cpus = new Thread[2];
        AddressSpace[] owners = {parent, child};
        for (int c = 0; c < 2; c++) {
            int id = c;
            cpus[c] = ThreadStates.start("cpu" + c, failures, () -> {
                Cpu cpu = machine.cpu(id);
                cpu.switchTo(owners[id]);
                long[] words = new long[PAGES];
                for (int i = 0; i < PAGES; i++) {
                    words[i] = i;
                }
                Random r = new Random(seed + id);
                long deadline = System.nanoTime() + 20_000_000_000L;
                for (int n = 0; (n < 20_000 || rounds.get() < 2_000) && failures.isEmpty() && System.nanoTime() < deadline; n++) {
                    int page = r.nextInt(PAGES);
                    if (r.nextBoolean()) {
                        words[page] = ((long) id << 32) | n;
                        cpu.store(VA + page * P, 8, words[page]);
                    } else if (cpu.load(VA + page * P, 8) != words[page]) {
                        throw new AssertionError("cpu" + id + " page " + page + " reads " + cpu.load(VA + page * P, 8)
                                + ", wrote " + words[page]);
                    }
                }
            });
        }
        Thread reclaimer = ThreadStates.start("reclaim", failures, () -> {
            Random r = new Random(seed + 2);
            while (!stop.get()) {
                rounds.incrementAndGet();
                if (r.nextInt(4) == 0) {
                    owners[r.nextInt(2)].madvise(VA + r.nextInt(PAGES / 2) * P, PAGES / 2 * P,
                            r.nextBoolean() ? Advice.PAGEOUT : Advice.WILLNEED);
                } else {
                    machine.reclaim(r.nextInt(2), 1 + r.nextInt(32));
                }
            }
        });
        Thread other = ThreadStates.start("migrate+fork", failures, () -> {
            Random r = new Random(seed + 3);
            while (!stop.get()) {
                AddressSpace mm = owners[r.nextInt(2)];
                if (r.nextInt(8) == 0) {
                    mm.fork().close(); // duplicates and frees swap entries beside the rest
                } else {
                    machine.migration().movePages(mm, new long[] {VA + r.nextInt(PAGES) * P}, new int[] {r.nextInt(2)},
                            MigrationService.MPOL_MF_MOVE_ALL);
                }
            }
        });
        try {
            for (Thread t : cpus) {
                ThreadStates.join(t);
            }
        } finally {
            stop.set(true);
            ThreadStates.join(reclaimer);
            ThreadStates.join(other);
        }
        assertThat(failures).as("seed " + seed).isEmpty();
        assertThat(machine.checkInvariants()).as("seed " + seed).isEmpty();
        assertThat(machine.vmstat().get("pswpout")).as("pages were swapped out").isPositive();
        assertThat(machine.vmstat().get("pswpin")).as("and read back beside the reclaims").isPositive();
        System.out.println("ParallelSwapTest: " + rounds.get() + " reclaim rounds, " + machine.vmstat().get("pswpout") + " pages out, "
                + machine.vmstat().get("pswpin") + " in");
        parent.close();
        child.close();
        machine.reclaim(0, PAGES); // swap-cache pages a COW left unmapped go as reclaim finds them, as in Linux
        machine.reclaim(1, PAGES);
        assertThat(machine.stats().meminfo().get("SwapFree")).isEqualTo(machine.stats().meminfo().get("SwapTotal"));
        Fixtures.closeChecked(machine);
    }
}
