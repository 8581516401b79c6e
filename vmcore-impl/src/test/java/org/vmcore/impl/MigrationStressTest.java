package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Assertions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.Regression;

/**
 * S1 with real threads: k writers, each on its own CPU and address space, increment their own
 * counter in one huge page of a shared 1 GiB window while another thread migrates that page
 * back and forth between the two nodes. With the fix every increment is in memory at the end;
 * with the pre-017b1660 behaviour increments are lost and the detector sees the stale writes.
 */
class MigrationStressTest {
    private static final int WRITERS = 2;
    private static final long H = 6 * MIB;
    private static final long RUN_NANOS = 400_000_000L;

    @ParameterizedTest(name = "regression={0}")
    @ValueSource(booleans = {false, true})
    void writersRacingMigrations(boolean regression) {
        Assertions.assertTimeoutPreemptively(Duration.ofSeconds(120), () -> run(regression));
    }

    private void run(boolean regression) throws InterruptedException {
        Machine.Builder b = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(WRITERS)
                .hugePages(0, PageSize.SIZE_2M, 520).hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true);
        if (regression) {
            b.enable(Regression.PRE_017B1660);
        }
        try (Machine machine = b.build()) {
            Fixtures.Sharers window = Fixtures.sharers(machine, true, Fixtures.windowBases(8 * GIB, WRITERS));
            HugetlbFile file = window.file();
            List<AddressSpace> sharers = window.mms();
            long[] increments = new long[WRITERS];
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> failure = new AtomicReference<>();
            List<Thread> writers = new ArrayList<>();
            for (int i = 0; i < WRITERS; i++) {
                int w = i;
                Cpu cpu = machine.cpu(i);
                long counter = (8L + 2 * i) * GIB + H + 64L * i;
                Thread t = new Thread(() -> {
                    try {
                        cpu.switchTo(sharers.get(w));
                        long n = 0;
                        while (!stop.get()) {
                            cpu.store(counter, 8, cpu.load(counter, 8) + 1);
                            n++;
                        }
                        increments[w] = n;
                    } catch (Throwable e) {
                        failure.set(e);
                    }
                }, "writer" + i);
                writers.add(t);
            }
            writers.forEach(Thread::start);
            int migrations = 0;
            long deadline = System.nanoTime() + RUN_NANOS;
            // move_pages through whichever sharer maps the page now: an unshared sharer reports -ENOENT
            // until it faults again
            for (int turn = 0; System.nanoTime() < deadline && failure.get() == null; turn++) {
                int target = 1 - machine.page(file.pageAt(3)).node();
                int who = turn % WRITERS;
                var r = machine.migration().movePages(sharers.get(who), new long[] {(8L + 2 * who) * GIB + H}, new int[] {target},
                        MigrationService.MPOL_MF_MOVE);
                if (r.status(0) == target) {
                    migrations++;
                }
            }
            stop.set(true);
            for (Thread t : writers) {
                t.join();
            }
            assertThat(failure.get()).isNull();
            long page = file.pageAt(3);
            long lost = 0;
            long writes = 0;
            for (int i = 0; i < WRITERS; i++) {
                long inMemory = machine.readPhysical((page << 12) + (H & (2 * MIB - 1)) + 64L * i, 8);
                writes += increments[i];
                lost += increments[i] - inMemory;
            }
            String report = "regression=" + regression + " migrations=" + migrations + " writes=" + writes + " lost=" + lost
                    + " stale=" + machine.staleAccessCount();
            System.out.println(report);
            assertThat(migrations).as(report).isGreaterThan(10);
            assertThat(writes).as(report).isGreaterThan(1000);
            if (regression) {
                assertThat(lost).as(report).isPositive();
                assertThat(machine.staleAccessCount()).as(report).isPositive();
            } else {
                assertThat(lost).as(report).isZero();
                assertThat(machine.staleAccessCount()).as(report).isZero();
            }
        }
    }
}
