package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.LongUnaryOperator;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableView;
import org.vmcore.api.Protection;
import org.vmcore.api.RmapWalker;

/** close() is best effort, always completes, and leaves nothing usable behind. */
class CloseTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    static final class Boom extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Boom(String m) {
            super(m);
        }
    }

    private static MmuNotifier releaseThrows(String name) {
        return new MmuNotifier() {
            @Override
            public void release(AddressSpace mm) {
                throw new Boom(name);
            }
        };
    }

    /** Methods that stay usable after close: close itself, the off-heap count that proves it, identities. */
    private static final Set<String> USABLE_AFTER_CLOSE = Set.of("close", "offHeapBytes", "isClosed", "id", "name", "pageSize",
            "homeNode", "pcid");

    private static final ThreadLocal<AddressSpace> MM = new ThreadLocal<>();

    private static void check(Class<?> type, Object target, List<String> wrong) throws IllegalAccessException {
        for (Method m : type.getMethods()) {
            if (Modifier.isStatic(m.getModifiers()) || m.getDeclaringClass() == Object.class || USABLE_AFTER_CLOSE.contains(m.getName())) {
                continue;
            }
            Object[] args = new Object[m.getParameterCount()];
            Class<?>[] types = m.getParameterTypes();
            for (int i = 0; i < args.length; i++) {
                args[i] = simpleValue(types[i], target, i);
            }
            try {
                m.invoke(target, args);
                wrong.add(type.getSimpleName() + "." + m.getName() + " returned");
            } catch (InvocationTargetException e) {
                if (!(e.getCause() instanceof ClosedException)) {
                    wrong.add(type.getSimpleName() + "." + m.getName() + " threw " + e.getCause());
                }
            }
        }
    }

    /** A simple valid argument of each type: the closed check must come before any other. */
    private static Object simpleValue(Class<?> t, Object target, int position) {
        if (t == int.class) {
            return target instanceof Cpu && position != 2 ? 8 : 0; // a width of 8; read/write at offset 0 of 8 bytes
        }
        if (t == long.class) {
            return 0L;
        }
        if (t == boolean.class) {
            return false;
        }
        if (t == int[].class) {
            return new int[] {0};
        }
        if (t == AddressSpace.class) {
            return target instanceof AddressSpace ? target : MM.get();
        }
        if (t == long[].class) {
            return new long[] {VA};
        }
        if (t == byte[].class) {
            return new byte[8];
        }
        if (t == Protection.class) {
            return Protection.READ;
        }
        if (t == PageSize.class) {
            return PageSize.SIZE_2M;
        }
        if (t == String.class) {
            return "x";
        }
        if (t == List.class) {
            return List.of();
        }
        if (t.isEnum()) {
            return t.getEnumConstants()[0];
        }
        return null;
    }

    /**
     * On a new thread, cpu switches to mm and stores i at vaOf(i) for i from 0 below count; once
     * store closeAfter is done, this thread closes mm. Returns what ended the stores (null: they
     * all ran) after the thread has finished.
     */
    private static Throwable closeWhileStoring(AddressSpace mm, Cpu cpu, LongUnaryOperator vaOf, long count, long closeAfter)
            throws InterruptedException {
        AtomicReference<Throwable> ended = new AtomicReference<>();
        CountDownLatch running = new CountDownLatch(1);
        Thread t = new Thread(() -> {
            try {
                cpu.switchTo(mm);
                for (long i = 0; i < count; i++) {
                    cpu.store(vaOf.applyAsLong(i), 8, i);
                    if (i == closeAfter) {
                        running.countDown();
                    }
                }
            } catch (Throwable e) {
                ended.set(e);
            } finally {
                running.countDown();
            }
        });
        t.start();
        running.await();
        mm.close();
        t.join(10_000);
        assertThat(t.isAlive()).as("the storing thread ended").isFalse();
        return ended.get();
    }

    @Nested
    @DisplayName("a release notifier that throws: close frees everything, then rethrows")
    class ReleaseThrows {
        @Test
        @DisplayName("AddressSpace.close frees everything when release throws, then rethrows the first with the second suppressed")
        void addressSpaceCloseWithThrowingRelease() {
            try (Machine machine = Machine.builder().checkInvariantsAfterEveryOperation(true).build()) {
                long free = machine.freeFrames();
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, 64 * 4096, Protection.READ_WRITE, ANON);
                mm.registerNotifier(releaseThrows("first"));
                mm.registerNotifier(releaseThrows("second"));
                assertThatThrownBy(mm::close).isInstanceOf(Boom.class).hasMessage("first")
                        .satisfies(e -> assertThat(e.getSuppressed()).extracting(Throwable::getMessage).containsExactly("second"));
                assertThat(mm.isClosed()).isTrue();
                assertThat(machine.freeFrames()).as("frames and tables freed").isEqualTo(free);
                assertThat(machine.addressSpaces()).isEmpty();
                assertThat(machine.checkInvariants()).isEmpty();
                mm.close(); // idempotent, nothing more to throw
            }
        }

        @Test
        @DisplayName("Machine.close frees all off-heap memory when release throws, then rethrows")
        void machineCloseWithThrowingRelease() {
            Machine machine = Machine.builder().build();
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            a.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            b.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            a.registerNotifier(releaseThrows("a"));
            b.registerNotifier(releaseThrows("b"));
            assertThatThrownBy(machine::close).isInstanceOf(Boom.class).hasMessage("a")
                    .satisfies(e -> assertThat(e.getSuppressed()).extracting(Throwable::getMessage).containsExactly("b"));
            assertThat(machine.offHeapBytes()).isZero();
            assertThat(a.isClosed()).isTrue();
            assertThat(b.isClosed()).isTrue();
            assertThatThrownBy(machine::vmstat).isInstanceOf(ClosedException.class);
            machine.close();
        }
    }

    @Nested
    @DisplayName("nothing usable after close")
    class AfterClose {
        @Test
        @DisplayName("every public method of a closed machine and of what it handed out throws ClosedException")
        void everyPublicMethodAfterCloseThrowsClosedException() throws Exception {
            Machine machine = Machine.builder().node(GIB).node(GIB).hugePages(0, PageSize.SIZE_2M, 4).build();
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            HugetlbFile file = machine.hugetlbfs().create("f", 2 << 20, PageSize.SIZE_2M);
            RmapWalker rmap = machine.rmap();
            MigrationService migration = machine.migration();
            HugetlbFs fs = machine.hugetlbfs();
            PageTableView view = mm.pageTableView();
            machine.close();
            MM.set(mm);
            List<String> wrong = new ArrayList<>();
            check(Machine.class, machine, wrong);
            check(AddressSpace.class, mm, wrong);
            check(Cpu.class, cpu, wrong);
            check(RmapWalker.class, rmap, wrong);
            check(MigrationService.class, migration, wrong);
            check(HugetlbFs.class, fs, wrong);
            check(HugetlbFile.class, file, wrong);
            check(PageTableView.class, view, wrong);
            assertThat(wrong).isEmpty();
            assertThat(machine.offHeapBytes()).isZero();
        }
    }

    @Nested
    @DisplayName("close racing CPU and physical accesses on other threads")
    class Races {
        @ParameterizedTest(name = "seed {0}")
        @ValueSource(longs = {1, 2, 3})
        @DisplayName("CPU threads and readPhysical/writePhysical racing Machine.close see only ClosedException")
        void closeRacesAccesses(long seed) throws Exception {
            Random random = new Random(seed);
            Machine machine = Machine.builder().cpus(2).build();
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON);
            AtomicReference<Throwable> bad = new AtomicReference<>();
            CountDownLatch started = new CountDownLatch(2);
            Cpu cpu = machine.cpu(1);
            Thread accesses = new Thread(() -> {
                try {
                    cpu.switchTo(mm);
                    Random r = new Random(seed);
                    for (long i = 0; ; i++) {
                        long va = VA + r.nextInt(16) * 4096L + 8 * r.nextInt(512);
                        cpu.store(va, 8, i);
                        cpu.load(va, 8);
                        if (i == 100) {
                            started.countDown();
                        }
                    }
                } catch (ClosedException expected) {
                    // the only way out
                } catch (Throwable t) {
                    bad.set(t);
                } finally {
                    started.countDown();
                }
            });
            long page = mm.translate(VA); // a data page: writing elsewhere could hit page tables
            Thread physical = new Thread(() -> {
                try {
                    Random r = new Random(seed + 1);
                    for (long i = 0; ; i++) {
                        long pa = page + r.nextInt(512) * 8L;
                        machine.writePhysical(pa, 8, i);
                        machine.readPhysical(pa, 8);
                        if (i == 100) {
                            started.countDown();
                        }
                    }
                } catch (ClosedException expected) {
                    // the only way out
                } catch (Throwable t) {
                    bad.set(t);
                } finally {
                    started.countDown();
                }
            });
            accesses.start();
            physical.start();
            started.await();
            Thread.sleep(random.nextInt(5));
            machine.close();
            accesses.join(10_000);
            physical.join(10_000);
            assertThat(accesses.isAlive()).isFalse();
            assertThat(physical.isAlive()).isFalse();
            assertThat(bad.get()).as("seed %d", seed).isNull();
            assertThat(machine.offHeapBytes()).isZero();
        }

        @Test
        @DisplayName("closing an address space a CPU runs in on another thread flushes that CPU first; its next access throws ClosedException")
        void closeKicksTheCpuRunningInTheAddressSpace() throws Exception {
            try (Machine machine = Machine.builder().cpus(2).detectStaleTranslations(true).build()) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON);
                Cpu cpu = machine.cpu(1);
                Throwable ended = closeWhileStoring(mm, cpu, i -> VA + (i & 15) * 4096, Long.MAX_VALUE, 1000);
                assertThat(ended).isInstanceOf(ClosedException.class);
                assertThat(cpu.tlbEntries()).as("no entry of the closed address space survives").isEmpty();
                assertThat(cpu.current()).isNull();
                assertThat(machine.staleAccessCount()).as("no access through a freed frame").isZero();
                assertThat(machine.checkInvariants()).isEmpty();
            }
        }

        @ParameterizedTest(name = "round {0}")
        @ValueSource(ints = {1, 2, 3, 4, 5, 6, 7, 8})
        @DisplayName("a CPU whose every access faults, racing the close of its address space, sees only ClosedException")
        void closeRacesFaultingAccesses(int round) throws Exception {
            try (Machine machine = Machine.builder().cpus(2).build()) {
                AddressSpace mm = machine.createAddressSpace();
                int pages = 4096;
                mm.mmap(VA, pages * 4096L, Protection.READ_WRITE, ANON);
                // a fresh page each time: every store faults
                Throwable ended = closeWhileStoring(mm, machine.cpu(1), i -> VA + i * 4096L, pages, 8 * round);
                assertThat(ended).as("the only way out of the loop early").satisfiesAnyOf(
                        e -> assertThat(e).isNull(), e -> assertThat(e).isInstanceOf(ClosedException.class));
                assertThat(machine.checkInvariants()).isEmpty();
            }
        }
    }
}
