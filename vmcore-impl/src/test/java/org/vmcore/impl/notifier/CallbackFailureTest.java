package org.vmcore.impl.notifier;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageFlag;
import org.vmcore.api.Protection;
import org.vmcore.api.Vma;
import org.vmcore.impl.Fixtures;

/**
 * User callbacks that throw: MMU notifiers at each callback during each operation, the
 * migration observer at each phase, an rmap visitor. The exception reaches the caller; the
 * engine stays consistent, loses no data, keeps working and closes to zero off-heap bytes.
 */
class CallbackFailureTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int PAGES = 4;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    private final Machine machine = Machine.builder().node(GIB).node(GIB).cpus(2).detectStaleTranslations(true)
            .checkInvariantsAfterEveryOperation(true).build();

    @AfterEach
    void close() {
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    static final class Boom extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Boom(String where) {
            super("boom in " + where);
        }
    }

    enum Callback { START, END, SECONDARY, CLEAR_FLUSH_YOUNG, CLEAR_YOUNG, TEST_YOUNG, RELEASE }

    enum Operation { MOVE_PAGES, MPROTECT, MUNMAP, FORK, CLEAR_FLUSH_YOUNG, CLEAR_YOUNG, TEST_YOUNG, CLOSE }

    /** Throws at one callback while armed; counts starts and ends so their pairing can be checked. */
    static final class Thrower implements MmuNotifier {
        final Callback at;
        boolean armed = true;
        int fired;

        Thrower(Callback at) {
            this.at = at;
        }

        private void maybeThrow(Callback c) {
            if (armed && c == at) {
                fired++;
                throw new Boom(c.name());
            }
        }

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            maybeThrow(Callback.START);
        }

        @Override
        public void invalidateRangeEnd(NotifierRange range) {
            maybeThrow(Callback.END);
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
            maybeThrow(Callback.SECONDARY);
        }

        @Override
        public boolean clearFlushYoung(AddressSpace mm, long start, long end) {
            maybeThrow(Callback.CLEAR_FLUSH_YOUNG);
            return false;
        }

        @Override
        public boolean clearYoung(AddressSpace mm, long start, long end) {
            maybeThrow(Callback.CLEAR_YOUNG);
            return false;
        }

        @Override
        public boolean testYoung(AddressSpace mm, long address) {
            maybeThrow(Callback.TEST_YOUNG);
            return false;
        }

        @Override
        public void release(AddressSpace mm) {
            maybeThrow(Callback.RELEASE);
        }
    }

    /** A well-behaved device registered after the thrower: it must hear every call, starts and ends paired. */
    static final class Counter implements MmuNotifier {
        int starts;
        int ends;
        int secondaries;
        int releases;

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            starts++;
        }

        @Override
        public void invalidateRangeEnd(NotifierRange range) {
            ends++;
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace mm, long start, long end) {
            secondaries++;
        }

        @Override
        public void release(AddressSpace mm) {
            releases++;
        }
    }

    @Nested
    @DisplayName("MMU notifiers that throw, at each callback of each operation")
    class Notifiers {
        static Stream<Arguments> cases() {
            List<Arguments> out = new ArrayList<>();
            for (Operation op : Operation.values()) {
                for (Callback c : Callback.values()) {
                    out.add(Arguments.of(op, c));
                }
            }
            return out.stream();
        }

        /** Whether the operation calls the callback at all (the others must simply succeed). */
        private static boolean reaches(Operation op, Callback c) {
            return switch (op) {
                case MOVE_PAGES, MPROTECT, MUNMAP, FORK -> c == Callback.START || c == Callback.END || c == Callback.SECONDARY;
                case CLEAR_FLUSH_YOUNG -> c == Callback.CLEAR_FLUSH_YOUNG || c == Callback.SECONDARY;
                case CLEAR_YOUNG -> c == Callback.CLEAR_YOUNG;
                case TEST_YOUNG -> c == Callback.TEST_YOUNG;
                case CLOSE -> c == Callback.RELEASE;
            };
        }

        @ParameterizedTest(name = "{0} with a notifier throwing at {1}")
        @MethodSource("cases")
        @DisplayName("a notifier that throws: the caller sees it, nothing is lost, the machine keeps working")
        void notifierThrows(Operation op, Callback at) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, PAGES * 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            for (int i = 0; i < PAGES; i++) {
                cpu.store(VA + i * 4096L, 8, 0xC0DE_0000L + i);
            }
            Thrower thrower = new Thrower(at);
            Counter counter = new Counter();
            mm.registerNotifier(thrower);
            mm.registerNotifier(counter);
            List<Vma> vmasBefore = mm.vmas();

            Throwable thrown = catchThrowable(() -> run(op, mm));

            assertThat(thrower.fired > 0).as("the callback was reached").isEqualTo(reaches(op, at));
            if (thrower.fired > 0) {
                assertThat(thrown).as("the exception reaches the caller").isInstanceOf(Boom.class);
            } else {
                assertThat(thrown).as("nothing threw").isNull();
            }
            assertThat(counter.ends).as("every range opened was closed for the other notifier").isEqualTo(counter.starts);
            boolean ranged = op == Operation.MOVE_PAGES || op == Operation.MPROTECT || op == Operation.MUNMAP || op == Operation.FORK;
            if (ranged && thrower.fired > 0 && (at == Callback.SECONDARY || at == Callback.END)) {
                assertThat(counter.ends).as("the other notifier still heard the end").isPositive();
            }
            thrower.armed = false;
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.staleAccessCount()).isZero();
            if (op == Operation.CLOSE) {
                assertThat(mm.isClosed()).isTrue();
                assertThat(counter.releases).as("the other notifier heard release").isEqualTo(1);
                return;
            }
            if (op == Operation.MPROTECT && at == Callback.START) {
                assertThat(mm.vmas()).as("an mprotect refused at start leaves VMAs and protection as they were").isEqualTo(vmasBefore);
                cpu.store(VA + 4096, 8, 0xC0DE_0001L); // still writable
            }
            if (op == Operation.MUNMAP && at == Callback.START) {
                assertThat(mm.vmas()).as("a munmap refused at start leaves the VMAs as they were").isEqualTo(vmasBefore);
            }
            boolean unmapped = op == Operation.MUNMAP && at != Callback.START;
            for (int i = 0; i < PAGES; i++) {
                if (unmapped && i == 1) {
                    continue;
                }
                assertThat(cpu.load(VA + i * 4096L, 8)).as("page %d after %s", i, op).isEqualTo(0xC0DE_0000L + i);
            }
            // the machine keeps working: another migration succeeds and the data comes along
            MovePagesResult r = machine.migration().movePages(mm, new long[] {VA + 3 * 4096}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            assertThat(r.status()).containsExactly(1);
            assertThat(cpu.load(VA + 3 * 4096, 8)).isEqualTo(0xC0DE_0003L);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.staleAccessCount()).isZero();
        }

        private void run(Operation op, AddressSpace mm) {
            switch (op) {
                case MOVE_PAGES -> machine.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
                case MPROTECT -> mm.mprotect(VA + 4096, 4096, Protection.READ);
                case MUNMAP -> mm.munmap(VA + 4096, 4096);
                case FORK -> mm.fork().close();
                case CLEAR_FLUSH_YOUNG -> mm.clearFlushYoung(VA);
                case CLEAR_YOUNG -> mm.clearYoung(VA);
                case TEST_YOUNG -> mm.testYoung(VA);
                case CLOSE -> mm.close();
            }
        }

        private static Throwable catchThrowable(Runnable r) {
            try {
                r.run();
                return null;
            } catch (Throwable t) {
                return t;
            }
        }

        @Test
        @DisplayName("a notifier refusing at start in the middle of try_to_migrate: the earlier mappings get their page back")
        void notifierRefusesInTheSecondMappingOfAMigration() {
            AddressSpace parent = machine.createAddressSpace();
            parent.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(parent);
            cpu.store(VA, 8, 42);
            AddressSpace child = parent.fork(); // the page is now mapped by both, read-only
            Thrower thrower = new Thrower(Callback.START);
            child.registerNotifier(thrower);
            long pfn = parent.pageAt(VA);

            assertThatThrownBy(() -> machine.migration().movePages(parent, new long[] {VA}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE_ALL)).isInstanceOf(Boom.class);

            assertThat(parent.pageAt(VA)).as("put back to the old page").isEqualTo(pfn);
            assertThat(child.pageAt(VA)).isEqualTo(pfn);
            assertThat(machine.page(pfn).mapcount()).isEqualTo(2);
            assertThat(machine.page(pfn).flags()).doesNotContain(PageFlag.LOCKED);
            assertThat(machine.vmstat().get("pgmigrate_fail")).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(cpu.load(VA, 8)).isEqualTo(42);
            thrower.armed = false;
            assertThat(machine.migration().movePages(parent, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL)
                    .status()).containsExactly(1);
            assertThat(cpu.load(VA, 8)).isEqualTo(42);
            assertThat(machine.staleAccessCount()).isZero();
        }
    }

    @Nested
    @DisplayName("a migration observer that throws, at each phase")
    class MigrationObserver {
        @ParameterizedTest(name = "observer throws at {0}")
        @EnumSource(MigrationPhase.class)
        @DisplayName("an observer that throws: before the copy the migration is rolled back, after it completes; either way it is rethrown")
        void observerThrows(MigrationPhase phase) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(VA, 8, 0xFEED);
            long pfn = mm.pageAt(VA);
            long free = machine.freeFrames();
            machine.migration().setObserver(e -> {
                if (e.phase() == phase) {
                    throw new Boom(phase.name());
                }
            });

            assertThatThrownBy(() -> machine.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE))
                    .isInstanceOf(Boom.class);
            machine.migration().setObserver(null);

            boolean completes = phase == MigrationPhase.AFTER_COPY || phase == MigrationPhase.AFTER_REMAP;
            long now = mm.pageAt(VA);
            assertThat(machine.page(now).node()).as("node after a throw at %s", phase).isEqualTo(completes ? 1 : 0);
            if (!completes) {
                assertThat(now).isEqualTo(pfn);
            }
            assertThat(machine.page(now).flags()).doesNotContain(PageFlag.LOCKED);
            assertThat(machine.page(now).refcount()).isEqualTo(1);
            assertThat(machine.freeFrames()).as("no frame leaked").isEqualTo(free);
            assertThat(machine.vmstat().get(completes ? "pgmigrate_success" : "pgmigrate_fail")).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(cpu.load(VA, 8)).isEqualTo(0xFEED);
            int back = completes ? 0 : 1;
            assertThat(machine.migration().movePages(mm, new long[] {VA}, new int[] {back}, MigrationService.MPOL_MF_MOVE).status())
                    .containsExactly(back);
            assertThat(cpu.load(VA, 8)).isEqualTo(0xFEED);
            assertThat(machine.staleAccessCount()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Nested
    @DisplayName("an rmap visitor that throws")
    class RmapVisitor {
        @Test
        @DisplayName("an rmap visitor that throws stops the walk and changes nothing")
        void visitorThrows() {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            AddressSpace child = mm.fork();
            long pfn = mm.pageAt(VA);
            String before = Fixtures.state(machine);
            int[] visits = new int[1];
            assertThatThrownBy(() -> machine.rmap().walk(pfn, (a, va) -> {
                visits[0]++;
                throw new Boom("visitor");
            })).isInstanceOf(Boom.class);
            assertThat(visits[0]).as("the walk stopped at the first visit").isEqualTo(1);
            assertThat(Fixtures.state(machine)).isEqualTo(before);
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.rmap().walk(pfn, (a, va) -> true)).isEqualTo(2);
            child.close();
        }
    }
}
