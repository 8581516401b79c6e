package org.vmcore.impl.hostile;

import static org.vmcore.impl.hostile.ThpHostile.H;
import static org.vmcore.impl.hostile.ThpHostile.K4;
import static org.vmcore.impl.hostile.ThpHostile.MIB;
import static org.vmcore.impl.hostile.ThpHostile.OTHER;
import static org.vmcore.impl.hostile.ThpHostile.PRIV;
import static org.vmcore.impl.hostile.ThpHostile.VA;
import static org.vmcore.impl.hostile.ThpHostile.WAIT;
import static org.vmcore.impl.hostile.ThpHostile.fill;
import static org.vmcore.impl.hostile.ThpHostile.read;
import static org.vmcore.impl.hostile.ThpHostile.value;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmException;
import org.vmcore.impl.Fixtures;

/**
 * Hostile tests of transparent huge pages (c0020a3), through the public API only: notifiers and
 * migration observers that throw or call back into the engine at every point THP code calls them,
 * fault injection at every allocation, parallel CPUs writing in the same huge pages while another
 * thread splits, collapses, forks and remaps them, and bad input. Randomised tests print their
 * seed. Each defect found is kept as a failing test named {@code defect*}.
 */
@SuppressWarnings("try")
class Hostile20ThpTest {
    static final long GIB = 1L << 30;
    static final int SHANON = MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    // ---------------------------------------------------------------- helpers

    static Machine machine(ThpMode mode, int cpus) {
        return Machine.builder().node(GIB).node(GIB).cpus(cpus).thp(mode).hugePages(0, PageSize.SIZE_2M, 2)
                .detectStaleTranslations(true).build();
    }

    /** Each page of [at, at + len) holds what was written at [was, was + len), unless in [dropFrom, dropTo) where 0 or unmapped is fine too. */
    static void assertData(Cpu cpu, AddressSpace mm, long at, long was, long len, long dropFrom, long dropTo, String what) {
        for (long off = 0; off < len; off += K4) {
            long v = read(cpu, mm, at + off);
            if (at + off >= dropFrom && at + off < dropTo) {
                assertThat(v).as("%s: page 0x%x (may be dropped)", what, at + off).isIn(value(was + off), 0L, -1L);
            } else {
                assertThat(v).as("%s: page 0x%x", what, at + off).isEqualTo(value(was + off));
            }
        }
    }

    static void closeAndCheck(Machine machine, long freeAtStart) {
        boolean open;
        try {
            machine.addressSpaces();
            open = true;
        } catch (ClosedException e) {
            open = false;
        }
        if (open) {
            for (AddressSpace mm : machine.addressSpaces()) {
                mm.close();
            }
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.freeFrames()).as("free frames after every address space closed (huge zero page aside)")
                    .isIn(freeAtStart, freeAtStart - 512);
        }
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    /** The marker exception a hostile callback throws. */
    static final class Boom extends RuntimeException {
        private static final long serialVersionUID = 1L;

        Boom(String m) {
            super(m);
        }
    }

    /** Whether {@code t} is only made of Boom / VmException (from callbacks): anything else is an engine failure. */
    static boolean onlyCallbackFailures(Throwable t) {
        if (t == null) {
            return true;
        }
        if (!(t instanceof Boom) && !(t instanceof VmException) && !(t instanceof IllegalStateException && String.valueOf(t.getMessage()).contains("notif"))) {
            return false;
        }
        for (Throwable s : t.getSuppressed()) {
            if (!onlyCallbackFailures(s)) {
                return false;
            }
        }
        return true;
    }

    static String trace(Throwable t) {
        if (t == null) {
            return "null";
        }
        var sw = new java.io.StringWriter();
        t.printStackTrace(new java.io.PrintWriter(sw));
        return sw.toString();
    }

    /** A notifier that runs {@code action} at its {@code k}-th callback (start, end or secondary TLB flush). */
    static final class Hostile implements MmuNotifier {
        final int k;
        final Consumer<String> action;
        final AtomicInteger calls = new AtomicInteger();
        volatile boolean fired;

        Hostile(int k, Consumer<String> action) {
            this.k = k;
            this.action = action;
        }

        private void call(String where) {
            if (calls.incrementAndGet() == k) {
                fired = true;
                action.accept(where);
            }
        }

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            call("start " + range);
        }

        @Override
        public void invalidateRangeEnd(NotifierRange range) {
            call("end " + range);
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
            call("tlbs");
        }
    }

    /** One THP-touching operation, with what it may drop and where the data is afterwards. */
    record Op(String name, Layout layout, OpBody body, long dropFrom, long dropTo, long movedTo) {
    }

    enum Layout { HUGE, SMALL_ADVISED, ZERO }

    @FunctionalInterface
    interface OpBody {
        void run(Machine machine, AddressSpace mm, Cpu cpu);
    }

    static final long LEN = 2 * H;

    static List<Op> ops() {
        List<Op> ops = new ArrayList<>();
        ops.add(new Op("partial munmap", Layout.HUGE, (m, mm, c) -> mm.munmap(VA + H + 16 * K4, 8 * K4), VA + H + 16 * K4, VA + H + 24 * K4, VA));
        ops.add(new Op("whole munmap", Layout.HUGE, (m, mm, c) -> mm.munmap(VA, H), VA, VA + H, VA));
        ops.add(new Op("partial mprotect", Layout.HUGE, (m, mm, c) -> mm.mprotect(VA + 3 * K4, 5 * K4, Protection.READ), 0, 0, VA));
        ops.add(new Op("whole mprotect", Layout.HUGE, (m, mm, c) -> mm.mprotect(VA, H, Protection.READ), 0, 0, VA));
        ops.add(new Op("partial DONTNEED", Layout.HUGE, (m, mm, c) -> mm.madvise(VA + H - 4 * K4, 8 * K4, Advice.DONTNEED), VA + H - 4 * K4, VA + H + 4 * K4, VA));
        ops.add(new Op("FREE then PAGEOUT", Layout.HUGE, (m, mm, c) -> {
            mm.madvise(VA + 7 * K4, H, Advice.FREE);
            mm.madvise(VA, LEN, Advice.PAGEOUT);
        }, VA + 7 * K4, VA + 7 * K4 + H, VA));
        ops.add(new Op("VMA cut by NOHUGEPAGE", Layout.HUGE, (m, mm, c) -> mm.madvise(VA + 7 * K4, 3 * K4, Advice.NOHUGEPAGE), 0, 0, VA));
        ops.add(new Op("mremap unaligned", Layout.HUGE, (m, mm, c) -> mm.mremap(VA, LEN, LEN, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, OTHER + K4), 0, 0, OTHER + K4));
        ops.add(new Op("mremap aligned", Layout.HUGE, (m, mm, c) -> mm.mremap(VA, LEN, LEN, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, OTHER), 0, 0, OTHER));
        ops.add(new Op("mremap shrink into a huge page", Layout.HUGE, (m, mm, c) -> mm.mremap(VA, LEN, H + 5 * K4, 0, 0), VA + H + 5 * K4, VA + LEN, VA));
        ops.add(new Op("COW after fork", Layout.HUGE, (m, mm, c) -> {
            AddressSpace child = mm.fork();
            c.switchTo(child);
            c.store(VA + 5 * K4, 8, value(VA + 5 * K4));
            c.switchTo(mm);
            c.store(VA + H + 9 * K4, 8, value(VA + H + 9 * K4));
            child.close();
        }, 0, 0, VA));
        ops.add(new Op("fork", Layout.HUGE, (m, mm, c) -> mm.fork(), 0, 0, VA));
        ops.add(new Op("write to the huge zero page", Layout.ZERO, (m, mm, c) -> {
            c.switchTo(mm);
            c.store(VA + H + 3 * K4, 8, value(VA + H + 3 * K4));
        }, 0, 0, VA));
        ops.add(new Op("MADV_COLLAPSE", Layout.SMALL_ADVISED, (m, mm, c) -> mm.madvise(VA, LEN, Advice.COLLAPSE), 0, 0, VA));
        ops.add(new Op("khugepaged scan", Layout.SMALL_ADVISED, (m, mm, c) -> m.khugepaged().scan(8), 0, 0, VA));
        return ops;
    }

    /** A machine in ALWAYS mode with {@code LEN} at VA laid out as {@code layout}, every page written (but the zero page's). */
    static AddressSpace setUp(Machine machine, Layout layout) {
        Cpu cpu = machine.cpu(0);
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, LEN, Protection.READ_WRITE, PRIV);
        switch (layout) {
            case HUGE -> {
                fill(cpu, mm, VA, LEN);
                assertThat(mm.counters().anonHugePages()).isEqualTo(1024);
            }
            case SMALL_ADVISED -> {
                mm.madvise(VA, LEN, Advice.NOHUGEPAGE);
                fill(cpu, mm, VA, LEN);
                mm.madvise(VA, LEN, Advice.HUGEPAGE);
                assertThat(mm.counters().anonHugePages()).isZero();
            }
            case ZERO -> {
                fill(cpu, mm, VA, H);
                cpu.switchTo(mm);
                assertThat(cpu.load(VA + H, 8)).isZero();
                // the second huge range maps the huge zero page; its expected value after the op is written by it
            }
        }
        return mm;
    }

    static void checkData(Machine machine, AddressSpace mm, Op op) {
        Cpu cpu = machine.cpu(0);
        if (op.layout() == Layout.ZERO) {
            assertData(cpu, mm, VA, VA, H, 0, 0, op.name());
            long v = read(cpu, mm, VA + H + 3 * K4);
            assertThat(v).as(op.name() + ": the write to the zero page").isIn(0L, value(VA + H + 3 * K4));
            return;
        }
        long len = op.name().startsWith("mremap shrink") ? H + 5 * K4 : LEN;
        assertData(cpu, mm, op.movedTo(), VA, len, op.dropFrom(), op.dropTo(), op.name());
    }

    // ---------------------------------------------------------------- throwing notifiers

    @Test
    void aNotifierThrowingAtEachCallOfEveryThpPathLosesNothing() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<String> failures = new ArrayList<>();
            for (Op op : ops()) {
                for (int k = 1; k <= 40; k++) {
                    Machine machine = machine(ThpMode.ALWAYS, 2);
                    long free = machine.freeFrames();
                    AddressSpace mm = setUp(machine, op.layout());
                    int kk = k;
                    Hostile n = new Hostile(k, where -> {
                        throw new Boom("boom at call " + kk + " (" + where + ")");
                    });
                    mm.registerNotifier(n);
                    Throwable thrown = null;
                    try {
                        machine.cpu(0).run(() -> op.body().run(machine, mm, machine.cpu(0)));
                    } catch (Throwable t) {
                        thrown = t;
                    }
                    String tag = op.name() + " k=" + k + ": ";
                    try {
                        if (!onlyCallbackFailures(thrown)) {
                            failures.add(tag + "engine failure " + trace(thrown));
                        }
                        if (n.fired && thrown == null) {
                            failures.add(tag + "the callback threw but the caller saw nothing");
                        }
                        List<String> inv = machine.checkInvariants();
                        if (!inv.isEmpty()) {
                            failures.add(tag + "invariants " + inv);
                        }
                        mm.unregisterNotifier(n);
                        try {
                            checkData(machine, mm, op);
                        } catch (AssertionError e) {
                            failures.add(tag + e.getMessage());
                        }
                        if (machine.staleAccessCount() != 0) {
                            failures.add(tag + "stale accesses " + machine.staleAccesses());
                        }
                        closeAndCheck(machine, free);
                    } catch (Throwable t) {
                        failures.add(tag + "after: " + trace(t));
                        machine.close();
                    }
                    if (!n.fired) {
                        break; // the op makes fewer than k calls: every point was tried
                    }
                }
            }
            assertThat(failures).isEmpty();
        });
    }

    // ---------------------------------------------------------------- re-entering notifiers

    enum Reentry { FAULT_OWN, MUNMAP_OTHER, FAULT_OTHER, SCAN, COLLAPSE_OWN, COLLAPSE_OTHER, FORK_OWN, CLOSE_OWN, CLOSE_MACHINE }

    @Test
    void notifiersCallingBackIntoTheEngineAtEveryThpPointNeitherHangNorCorrupt() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<String> failures = new ArrayList<>();
            for (Op op : ops()) {
                for (Reentry r : Reentry.values()) {
                    for (int k = 1; k <= 2; k++) {
                        Machine machine = machine(ThpMode.ALWAYS, 2);
                        long free = machine.freeFrames();
                        AddressSpace mm = setUp(machine, op.layout());
                        AddressSpace other = machine.createAddressSpace();
                        other.mmap(VA, H, Protection.READ_WRITE, PRIV);
                        other.madvise(VA, H, Advice.NOHUGEPAGE);
                        fill(machine.cpu(1), other, VA, 64 * K4);
                        other.madvise(VA, H, Advice.HUGEPAGE);
                        AtomicReference<Throwable> inside = new AtomicReference<>();
                        Hostile n = new Hostile(k, where -> {
                            try {
                                switch (r) {
                                    case FAULT_OWN -> mm.fault(VA + 100 * K4, Access.WRITE);
                                    case MUNMAP_OTHER -> other.munmap(VA + 70 * K4, K4);
                                    case FAULT_OTHER -> other.fault(VA + 200 * K4, Access.WRITE);
                                    case SCAN -> machine.khugepaged().scan(16);
                                    case COLLAPSE_OWN -> mm.madvise(VA, LEN, Advice.COLLAPSE);
                                    case COLLAPSE_OTHER -> other.madvise(VA, H, Advice.COLLAPSE);
                                    case FORK_OWN -> mm.fork();
                                    case CLOSE_OWN -> mm.close();
                                    case CLOSE_MACHINE -> machine.close();
                                }
                            } catch (VmException | IllegalStateException e) {
                                inside.set(e); // refused: fine
                            }
                        });
                        mm.registerNotifier(n);
                        Throwable thrown = null;
                        try {
                            machine.cpu(0).run(() -> op.body().run(machine, mm, machine.cpu(0)));
                        } catch (Throwable t) {
                            thrown = t;
                        }
                        String tag = op.name() + " " + r + " k=" + k + ": ";
                        try {
                            if (!onlyCallbackFailures(thrown) && !(thrown instanceof ClosedException)) {
                                failures.add(tag + "engine failure " + trace(thrown));
                            }
                            if (r == Reentry.CLOSE_MACHINE && n.fired) {
                                machine.close();
                                assertThat(machine.offHeapBytes()).isZero();
                                if (!n.fired) {
                                    break;
                                }
                                continue;
                            }
                            List<String> inv = machine.checkInvariants();
                            if (!inv.isEmpty()) {
                                failures.add(tag + "invariants " + inv);
                            }
                            if (!mm.isClosed()) {
                                mm.unregisterNotifier(n);
                                try {
                                    checkData(machine, mm, op);
                                } catch (AssertionError e) {
                                    failures.add(tag + e.getMessage());
                                }
                            } else if (r != Reentry.CLOSE_OWN) {
                                failures.add(tag + "mm closed by " + r);
                            }
                            assertData(machine.cpu(1), other, VA, VA, 64 * K4, VA + 70 * K4, VA + 71 * K4, tag + "other");
                            closeAndCheck(machine, free);
                        } catch (Throwable t) {
                            failures.add(tag + "after: " + trace(t));
                            machine.close();
                        }
                        if (!n.fired) {
                            break;
                        }
                    }
                }
            }
            assertThat(failures).isEmpty();
        });
    }

    /** A release() that throws while the exit zaps huge PMDs, and one that closes the machine. */
    @Test
    void exitWithHugePagesAndAThrowingOrClosingRelease() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (int variant = 0; variant < 3; variant++) {
                Machine machine = machine(ThpMode.ALWAYS, 2);
                long free = machine.freeFrames();
                AddressSpace mm = setUp(machine, Layout.HUGE);
                AddressSpace child = mm.fork();
                int v = variant;
                mm.registerNotifier(new MmuNotifier() {
                    @Override
                    public void release(AddressSpace addressSpace) {
                        switch (v) {
                            case 0 -> throw new Boom("release");
                            case 1 -> child.close();
                            default -> machine.close();
                        }
                    }
                });
                Throwable t = null;
                try {
                    mm.close();
                } catch (Throwable e) {
                    t = e;
                }
                assertThat(mm.isClosed()).isTrue();
                if (v == 0) {
                    assertThat(t).isInstanceOf(Boom.class);
                }
                if (v < 2) {
                    if (v == 0) {
                        assertData(machine.cpu(0), child, VA, VA, LEN, 0, 0, "child after parent exit");
                    }
                    closeAndCheck(machine, free);
                } else {
                    machine.close();
                    assertThat(machine.offHeapBytes()).isZero();
                }
            }
        });
    }

    // ---------------------------------------------------------------- migration

    @Test
    void movePagesAndMigratePagesOverThpRangesWithAHostileObserver() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<String> failures = new ArrayList<>();
            for (int variant = 0; variant < 8; variant++) {
                for (MigrationPhase phase : MigrationPhase.values()) {
                    Machine machine = machine(ThpMode.ALWAYS, 2);
                    long free = machine.freeFrames();
                    AddressSpace mm = setUp(machine, Layout.HUGE);
                    mm.mprotect(VA + H + 3 * K4, K4, Protection.READ); // the second huge page is PTE-mapped now
                    mm.mprotect(VA + H + 3 * K4, K4, Protection.READ_WRITE);
                    mm.mmap(VA + LEN, H, Protection.READ_WRITE, PRIV);
                    mm.madvise(VA + LEN, H, Advice.NOHUGEPAGE);
                    fill(machine.cpu(0), mm, VA + LEN, 16 * K4); // 4 KiB pages that may migrate
                    int v = variant;
                    AtomicBoolean once = new AtomicBoolean();
                    machine.migration().setObserver(e -> {
                        if (e.phase() != phase || !once.compareAndSet(false, true)) {
                            return;
                        }
                        try {
                            switch (v) {
                                case 0 -> throw new Boom("observer");
                                case 1 -> mm.madvise(VA + LEN, H, Advice.COLLAPSE);
                                case 2 -> machine.khugepaged().scan(8);
                                case 3 -> mm.fault(VA + 5 * K4, Access.WRITE);
                                case 4 -> mm.fork().close();
                                case 5 -> mm.munmap(VA + H, 4 * K4);
                                case 6 -> mm.madvise(VA, H, Advice.DONTNEED);
                                default -> mm.mprotect(VA, LEN, Protection.READ);
                            }
                        } catch (VmException | IllegalStateException ex) {
                            // refused
                        }
                    });
                    String tag = "variant " + v + " " + phase + ": ";
                    Throwable thrown = null;
                    try {
                        long[] addrs = {VA, VA + 9 * K4, VA + H + 3 * K4, VA + H + 100 * K4, VA + LEN, VA + LEN + K4, VA + LEN + 15 * K4};
                        int[] nodes = new int[addrs.length];
                        java.util.Arrays.fill(nodes, 1);
                        var res = machine.migration().movePages(mm, addrs, nodes, MigrationService.MPOL_MF_MOVE);
                        for (int i = 0; i < 4; i++) {
                            if (res.status()[i] == 0 || res.status()[i] == 1) {
                                continue; // an address of a huge page moves it whole, or it stays
                            }
                            if (res.status()[i] != -Errno.EBUSY && res.status()[i] != -Errno.EFAULT && res.status()[i] != -Errno.ENOENT) {
                                failures.add(tag + "a page of a huge page at 0x" + Long.toHexString(addrs[i]) + " gave " + res.status()[i]);
                            }
                        }
                        machine.migration().migratePages(mm, new int[] {0}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
                    } catch (Throwable t) {
                        thrown = t;
                    }
                    try {
                        if (thrown != null && !(thrown instanceof Boom) && !(thrown instanceof org.vmcore.api.MigrationWaitException)) {
                            failures.add(tag + "engine failure " + trace(thrown));
                        }
                        machine.migration().setObserver(null);
                        List<String> inv = machine.checkInvariants();
                        if (!inv.isEmpty()) {
                            failures.add(tag + "invariants " + inv);
                        }
                        long dropFrom = v == 5 ? VA + H : v == 6 ? VA : 0;
                        long dropTo = v == 5 ? VA + H + 4 * K4 : v == 6 ? VA + H : 0;
                        assertData(machine.cpu(0), mm, VA, VA, LEN, dropFrom, dropTo, tag);
                        assertData(machine.cpu(0), mm, VA + LEN, VA + LEN, 16 * K4, 0, 0, tag);
                        closeAndCheck(machine, free);
                    } catch (Throwable t) {
                        failures.add(tag + "after: " + trace(t));
                        machine.close();
                    }
                }
            }
            assertThat(failures).isEmpty();
        });
    }

    // ---------------------------------------------------------------- collapse against CPUs and GUP-fast

    /**
     * A CPU keeps writing, through its TLB, into the 4 KiB page it is on while MADV_COLLAPSE copies
     * the range. khugepaged clears the PMD and flushes the TLBs before it copies
     * (pmdp_collapse_flush in collapse_huge_page); a store that still lands in an old page after
     * it was copied is lost.
     */
    @Test
    void collapseCopiesWhileCpusStillWriteThroughTheirTlbs() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (int attempt = 0; attempt < 20; attempt++) {
                Machine machine = machine(ThpMode.MADVISE, 2);
                long free = machine.freeFrames();
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
                fill(machine.cpu(0), mm, VA, H); // 4 KiB pages: not advised
                int slots = (int) (H / 8);
                AtomicInteger written = new AtomicInteger();
                AtomicBoolean go = new AtomicBoolean();
                Cpu writer = machine.cpu(1);
                Hostile19Test.Worker w = new Hostile19Test.Worker("writer", () -> {
                    writer.switchTo(mm);
                    for (int i = 0; i < slots; i++) {
                        writer.store(VA + 8L * i, 8, i + 1);
                        written.set(i + 1);
                        if (i == 600) {
                            go.set(true);
                        }
                    }
                });
                while (!go.get() && w.thread.isAlive()) {
                    Thread.onSpinWait();
                }
                int rc = mm.madvise(VA, H, Advice.COLLAPSE);
                w.joinOrDump(WAIT);
                assertThat(w.failure.get()).isNull();
                assertThat(rc).isZero();
                Cpu cpu = machine.cpu(0);
                cpu.switchTo(mm);
                List<Integer> lost = new ArrayList<>();
                for (int i = 0; i < slots; i++) {
                    if (cpu.load(VA + 8L * i, 8) != i + 1) {
                        lost.add(i);
                    }
                }
                long stale = machine.staleAccessCount();
                assertThat(machine.checkInvariants()).isEmpty();
                closeAndCheck(machine, free);
                assertThat(lost).as("attempt %d: stores lost to the collapse (first slots), stale uses %d", attempt, stale)
                        .isEmpty();
                assertThat(stale).as("stale translation uses during the collapse").isZero();
            }
        });
    }

    /**
     * GUP-fast takes a reference on a 4 KiB page while MADV_COLLAPSE copies the range: the
     * reference must either make the collapse fail (-EAGAIN) or be to the page that stays mapped.
     * A reference to a page that was copied and dropped from the tables means writes through it
     * (a DMA) are lost.
     */
    @Test
    void gupFastReferencesRacingCollapseNeverPinAPageThatWasCopiedAway() {
        assertTimeoutPreemptively(WAIT, () -> {
            long seed = System.nanoTime();
            System.out.println("gupFastReferencesRacingCollapse seed=" + seed);
            Random rnd = new Random(seed);
            int bad = 0;
            for (int attempt = 0; attempt < 15; attempt++) {
                Machine machine = machine(ThpMode.MADVISE, 2);
                long free = machine.freeFrames();
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
                fill(machine.cpu(0), mm, VA, H);
                int page = 480 + rnd.nextInt(32);
                long at = VA + page * K4;
                long oldPfn = mm.translate(at) >>> 12;
                AtomicBoolean stop = new AtomicBoolean();
                List<PageReference> refs = new CopyOnWriteArrayList<>();
                Hostile19Test.Worker w = new Hostile19Test.Worker("gup", () -> {
                    while (!stop.get()) {
                        PageReference r = mm.getUserPageFast(at, true);
                        if (r != null) {
                            refs.add(r);
                            if (refs.size() > 2000) {
                                break;
                            }
                        }
                    }
                });
                Thread.sleep(1);
                int rc = mm.madvise(VA, H, Advice.COLLAPSE);
                stop.set(true);
                w.joinOrDump(WAIT);
                if (rc == 0 && refs.stream().anyMatch(r -> r.pfn() == oldPfn)) {
                    bad++; // the collapse succeeded although a GUP reference to a page it copied away was taken after its check
                }
                refs.forEach(PageReference::close);
                assertThat(machine.checkInvariants()).isEmpty();
                closeAndCheck(machine, free);
            }
            assertThat(bad).as("GUP references taken after the collapse that point to the old page").isZero();
        });
    }

    @Test
    void gupReferencesHeldAcrossSplitCollapseAndExitGiveEveryFrameBack() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine machine = machine(ThpMode.ALWAYS, 2);
            long free = machine.freeFrames();
            AddressSpace mm = setUp(machine, Layout.HUGE);
            PageReference onHuge = mm.getUserPageFast(VA + 7 * K4, true);
            assertThat(onHuge).isNotNull();
            AddressSpace child = mm.fork();
            machine.cpu(0).switchTo(child);
            machine.cpu(0).store(VA + 7 * K4, 8, 1); // COW: split + copy one page
            mm.mprotect(VA + 3 * K4, K4, Protection.READ); // split the parent's
            assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).as("a PTE-mapped huge page does not collapse").isNotZero();
            PageReference onSplit = mm.getUserPageFast(VA + 8 * K4, false);
            assertThat(onSplit).isNotNull();
            mm.munmap(VA, H);
            child.close();
            assertData(machine.cpu(0), mm, VA + H, VA + H, H, 0, 0, "second huge page");
            mm.close();
            assertThat(machine.checkInvariants()).isEmpty();
            assertThat(machine.readPhysical((onHuge.pfn() + 7) << 12, 8)).as("the referenced page still holds its data")
                    .isEqualTo(value(VA + 7 * K4));
            onHuge.close();
            onSplit.close();
            closeAndCheck(machine, free);
        });
    }

    // ---------------------------------------------------------------- parallel CPUs and a mutator

    @Test
    void fourCpusWriteInTheSameHugePagesWhileAnotherThreadSplitsCollapsesForksAndScans() {
        long seed = System.nanoTime();
        System.out.println("fourCpusWrite seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            for (int round = 0; round < 2; round++) {
                Random rnd = new Random(seed + round);
                Machine machine = machine(ThpMode.ALWAYS, 5);
                long free = machine.freeFrames();
                AddressSpace mm = machine.createAddressSpace();
                long len = 4 * H;
                mm.mmap(VA, len, Protection.READ_WRITE, PRIV);
                int pages = (int) (len / K4);
                long[][] last = new long[4][pages];
                AtomicBoolean stop = new AtomicBoolean();
                List<Hostile19Test.Worker> writers = new ArrayList<>();
                for (int t = 0; t < 4; t++) {
                    int id = t;
                    Cpu cpu = machine.cpu(t + 1);
                    writers.add(new Hostile19Test.Worker("cpu" + t, () -> {
                        cpu.switchTo(mm);
                        Random r = new Random(seed * 31 + id);
                        long n = 0;
                        while (!stop.get()) {
                            int p = r.nextInt(pages);
                            long va = VA + p * K4 + 8L * id;
                            long v = (++n << 8) | id;
                            try {
                                cpu.store(va, 8, v);
                                last[id][p] = v;
                            } catch (SegmentationFaultException e) {
                                // read-only for a moment: no write happened
                            }
                        }
                    }));
                }
                Cpu mcpu = machine.cpu(0);
                List<String> log = new ArrayList<>();
                long end = System.nanoTime() + 300_000_000L;
                while (System.nanoTime() < end) {
                    long a = VA + rnd.nextInt(pages) * K4;
                    long l = Math.min(VA + len - a, (1 + rnd.nextInt(700)) * K4);
                    int op = rnd.nextInt(8);
                    log.add(op + "@" + Long.toHexString(a) + "+" + Long.toHexString(l));
                    mcpu.run(() -> {
                        switch (op) {
                            case 0 -> {
                                mm.mprotect(a, l, Protection.READ);
                                mm.mprotect(a, l, Protection.READ_WRITE);
                            }
                            case 1 -> mm.madvise(VA, len, Advice.COLLAPSE);
                            case 2 -> machine.khugepaged().scan(4);
                            case 3 -> {
                                AddressSpace child = mm.fork();
                                child.close();
                            }
                            case 4 -> mm.madvise(a, l, Advice.FREE);
                            case 5 -> mm.madvise(a, l, rnd.nextBoolean() ? Advice.NOHUGEPAGE : Advice.HUGEPAGE);
                            case 6 -> {
                                try (PageReference r = mm.getUserPageFast(a, rnd.nextBoolean())) {
                                    mm.madvise(a & -H, H, Advice.COLLAPSE);
                                }
                            }
                            default -> mm.madvise(VA, len, Advice.HUGEPAGE);
                        }
                    });
                }
                stop.set(true);
                for (var w : writers) {
                    w.joinOrDump(WAIT);
                    assertThat(w.failure.get()).as("seed %d", seed).isNull();
                }
                List<String> inv = machine.checkInvariants();
                assertThat(inv).as("seed %d round %d", seed, round).isEmpty();
                Cpu cpu = machine.cpu(0);
                cpu.switchTo(mm);
                int lost = 0;
                String first = null;
                for (int t = 0; t < 4; t++) {
                    for (int p = 0; p < pages; p++) {
                        long got = cpu.load(VA + p * K4 + 8L * t, 8);
                        if (got != last[t][p]) {
                            lost++;
                            if (first == null) {
                                first = "cpu" + t + " page " + p + " wrote " + last[t][p] + " read " + got;
                            }
                        }
                    }
                }
                assertThat(lost).as("seed %d round %d: lost writes (first: %s) stale uses %d", seed, round, first,
                        machine.staleAccessCount()).isZero();
                closeAndCheck(machine, free);
            }
        });
    }

    @Test
    void aForkTreeSharingHugePagesWhileChildrenWriteAndExit() {
        long seed = System.nanoTime();
        System.out.println("forkTree seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            Machine machine = machine(ThpMode.ALWAYS, 5);
            long free = machine.freeFrames();
            AddressSpace root = setUp(machine, Layout.HUGE);
            List<AddressSpace> kids = new ArrayList<>();
            for (int i = 0; i < 2; i++) {
                AddressSpace c = root.fork();
                kids.add(c);
                kids.add(c.fork());
            }
            List<Hostile19Test.Worker> ws = new ArrayList<>();
            for (int i = 0; i < kids.size(); i++) {
                AddressSpace c = kids.get(i);
                Cpu cpu = machine.cpu(1 + i % 4);
                int id = i;
                ws.add(new Hostile19Test.Worker("kid" + i, () -> {
                    Random r = new Random(seed + id);
                    synchronized (cpu) {
                        cpu.switchTo(c);
                        for (int j = 0; j < 50; j++) {
                            long p = r.nextInt((int) (LEN / K4));
                            cpu.store(VA + p * K4 + 8, 8, id);
                            assertThat(cpu.load(VA + p * K4, 8)).isEqualTo(value(VA + p * K4));
                        }
                        if (r.nextBoolean()) {
                            c.madvise(VA, LEN, Advice.COLLAPSE);
                        }
                        assertData(cpu, c, VA, VA, LEN, 0, 0, "kid " + id);
                    }
                    c.close();
                }));
            }
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(root);
            for (int j = 0; j < 200; j++) {
                cpu.store(VA + (j % 512) * K4 + 16, 8, j);
            }
            for (var w : ws) {
                w.joinOrDump(WAIT);
                assertThat(w.failure.get()).as("seed %d: %s", seed, trace(w.failure.get())).isNull();
            }
            assertThat(machine.checkInvariants()).isEmpty();
            assertData(cpu, root, VA, VA, LEN, 0, 0, "root");
            closeAndCheck(machine, free);
        });
    }

    @Test
    void closingTheMachineWhileCpusFaultHugePagesAndKhugepagedScans() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (int round = 0; round < 5; round++) {
                Machine machine = machine(ThpMode.ALWAYS, 4);
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, 16 * H, Protection.READ_WRITE, PRIV);
                List<Hostile19Test.Worker> ws = new ArrayList<>();
                for (int t = 0; t < 3; t++) {
                    Cpu cpu = machine.cpu(t);
                    int id = t;
                    ws.add(new Hostile19Test.Worker("w" + t, () -> {
                        try {
                            cpu.switchTo(mm);
                            for (long off = 0; ; off = (off + K4 * 37) % (16 * H)) {
                                if (id == 2) {
                                    machine.khugepaged().scan(3);
                                    mm.madvise(VA, 16 * H, Advice.COLLAPSE);
                                    mm.mprotect(VA + Math.min(off, 16 * H - 3 * K4), 3 * K4, Protection.READ_WRITE);
                                } else {
                                    cpu.store(VA + off, 8, off);
                                }
                            }
                        } catch (ClosedException e) {
                            // the end
                        }
                    }));
                }
                Thread.sleep(20 + round * 10);
                machine.close();
                for (var w : ws) {
                    w.joinOrDump(WAIT);
                    assertThat(w.failure.get()).as(trace(w.failure.get())).isNull();
                }
                assertThat(machine.offHeapBytes()).isZero();
            }
        });
    }

    // ---------------------------------------------------------------- fault injection

    record Injected(String name, Layout layout, boolean noTrace, OpBody body) {
    }

    @Test
    void everyFailedAllocationInThpPathsFailsCleanly() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<Injected> cases = List.of(
                    new Injected("huge fault in an empty address space", null, true, (m, mm, c) -> mm.fault(VA + 5 * K4, Access.WRITE)),
                    new Injected("huge zero page read fault", null, false, (m, mm, c) -> mm.fault(VA + 5 * K4, Access.READ)),
                    new Injected("fork with huge PMDs", Layout.HUGE, false, (m, mm, c) -> mm.fork()),
                    new Injected("MADV_COLLAPSE", Layout.SMALL_ADVISED, false, (m, mm, c) -> {
                        int rc = mm.madvise(VA, LEN, Advice.COLLAPSE);
                        if (rc != 0) {
                            throw new OutOfMemoryException("rc " + rc);
                        }
                    }),
                    new Injected("khugepaged", Layout.SMALL_ADVISED, false, (m, mm, c) -> {
                        if (m.khugepaged().scan(8) != 2) {
                            throw new OutOfMemoryException("not all");
                        }
                    }),
                    new Injected("mremap aligned", Layout.HUGE, false, (m, mm, c) -> mm.mremap(VA, LEN, LEN, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, OTHER)),
                    new Injected("mremap unaligned", Layout.HUGE, false, (m, mm, c) -> mm.mremap(VA, LEN, LEN, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, OTHER + 3 * K4)),
                    new Injected("write to the huge zero page", Layout.ZERO, false, (m, mm, c) -> {
                        c.switchTo(mm);
                        c.store(VA + H + 3 * K4, 8, value(VA + H + 3 * K4));
                    }),
                    new Injected("COW of a forked huge page", Layout.HUGE, false, (m, mm, c) -> {
                        c.switchTo(mm);
                        c.store(VA + 5 * K4, 8, value(VA + 5 * K4));
                    }),
                    new Injected("partial munmap", Layout.HUGE, false, (m, mm, c) -> mm.munmap(VA + 3 * K4, K4)));
            List<String> failures = new ArrayList<>();
            for (Injected cse : cases) {
                for (AllocationKind kind : AllocationKind.values()) {
                    for (int n = 1; n <= 12; n++) {
                        Machine machine = machine(ThpMode.ALWAYS, 2);
                        long free = machine.freeFrames();
                        AddressSpace mm;
                        if (cse.layout() == null) {
                            mm = machine.createAddressSpace();
                            mm.mmap(VA, LEN, Protection.READ_WRITE, PRIV);
                            mm.mmap(VA + 64 * H, K4, Protection.READ_WRITE, PRIV);
                            mm.fault(VA + 64 * H, Access.WRITE); // the PUD and PMD tables exist (defectHugeFaultWhoseDepositFails... covers their absence)
                        } else {
                            mm = setUp(machine, cse.layout());
                        }
                        AddressSpace sibling = cse.name().startsWith("COW") ? mm.fork() : null;
                        String before = Fixtures.state(machine);
                        long attempts = machine.allocationCount(kind);
                        machine.failNthAllocation(kind, n, 3);
                        Throwable thrown = null;
                        try {
                            machine.cpu(0).run(() -> cse.body().run(machine, mm, machine.cpu(0)));
                        } catch (Throwable t) {
                            thrown = t;
                        }
                        boolean reached = machine.allocationCount(kind) - attempts >= n;
                        machine.failNthAllocation(kind, Long.MAX_VALUE / 4, 1);
                        String tag = cse.name() + " " + kind + " n=" + n + ": ";
                        try {
                            if (thrown != null && !(thrown instanceof OutOfMemoryException)) {
                                failures.add(tag + "engine failure " + trace(thrown));
                            }
                            if (thrown != null && cse.noTrace() && !Fixtures.state(machine).equals(before)) {
                                failures.add(tag + "a failed call left a trace");
                            }
                            List<String> inv = machine.checkInvariants();
                            if (!inv.isEmpty()) {
                                failures.add(tag + "invariants " + inv);
                            }
                            long at = cse.name().startsWith("mremap") && thrown == null
                                    ? (cse.name().endsWith("unaligned") ? OTHER + 3 * K4 : OTHER) : VA;
                            Layout l = cse.layout();
                            if (l == Layout.HUGE || l == Layout.SMALL_ADVISED) {
                                long df = cse.name().equals("partial munmap") ? VA + 3 * K4 : 0;
                                assertData(machine.cpu(0), mm, at, VA, LEN, df, df + K4, tag);
                                if (sibling != null) {
                                    assertData(machine.cpu(0), sibling, VA, VA, LEN, 0, 0, tag + "sibling");
                                }
                            } else if (l == Layout.ZERO) {
                                assertData(machine.cpu(0), mm, VA, VA, H, 0, 0, tag);
                            }
                            closeAndCheck(machine, free);
                        } catch (Throwable t) {
                            failures.add(tag + "after: " + trace(t));
                            machine.close();
                        }
                        if (!reached) {
                            break;
                        }
                    }
                }
            }
            assertThat(failures).isEmpty();
        });
    }

    /**
     * A fault into an empty address space whose n-th page-table allocation fails: the 4 KiB path
     * (NEVER) and the huge path (ALWAYS, where the last table is the deposit) must both leave the
     * machine as it was (the 4 KiB path does; see ThpTest.noTableToDepositChangesNothing).
     */
    @Test
    void hugeFaultWhoseDepositFailsLeavesItsUpperTables() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<String> traces = new ArrayList<>();
            for (ThpMode mode : List.of(ThpMode.NEVER, ThpMode.ALWAYS)) {
                for (int n = 1; n <= 3; n++) {
                    try (Machine machine = machine(mode, 1)) {
                        AddressSpace mm = machine.createAddressSpace();
                        mm.mmap(VA, LEN, Protection.READ_WRITE, PRIV);
                        String before = Fixtures.state(machine);
                        machine.failNthAllocation(AllocationKind.TABLE, n);
                        try {
                            mm.fault(VA + 5 * K4, Access.WRITE);
                            traces.add(mode + " n=" + n + ": no failure");
                        } catch (OutOfMemoryException e) {
                            String after = Fixtures.state(machine);
                            if (!after.equals(before)) {
                                traces.add(mode + " n=" + n + ": left a trace:\n" + before + "---\n" + after);
                            }
                        }
                        assertThat(machine.checkInvariants()).isEmpty();
                    }
                }
            }
            assertThat(traces).isEmpty();
        });
    }

    // ---------------------------------------------------------------- bad input

    @Test
    void badInput() {
        assertTimeoutPreemptively(WAIT, () -> {
            assertThatThrownBy(() -> Machine.builder().thp(null)).isInstanceOf(InvalidArgumentException.class);
            Machine machine = Machine.builder().node(GIB).cpus(1).thp(ThpMode.NEVER).hugePages(0, PageSize.SIZE_2M, 4).build();
            long free = machine.freeFrames();
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * H, Protection.READ_WRITE, PRIV);
            fill(machine.cpu(0), mm, VA, 64 * K4);
            mm.munmap(VA + H, H); // a hole
            fill(machine.cpu(0), mm, VA + 2 * H, 16 * K4);
            String before = Fixtures.state(machine);
            assertThatThrownBy(() -> mm.madvise(VA + 1, H, Advice.COLLAPSE)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> mm.madvise(VA, -1, Advice.COLLAPSE)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> mm.madvise(VA, Long.MAX_VALUE, Advice.COLLAPSE)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> mm.madvise(-4096, 4096, Advice.HUGEPAGE)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> mm.madvise(0x7FFF_FFFF_F000L, 2 * K4, Advice.HUGEPAGE)).isInstanceOf(InvalidArgumentException.class);
            assertThat(Fixtures.state(machine)).isEqualTo(before);
            assertThat(mm.madvise(VA, 0, Advice.COLLAPSE)).isZero();
            assertThatThrownBy(() -> mm.madvise(VA + 5, 0, Advice.COLLAPSE)).as("the start is checked first").isInstanceOf(InvalidArgumentException.class);
            assertThat(mm.madvise(VA + K4, 1, Advice.COLLAPSE)).as("no whole 2 MiB inside: nothing to do").isIn(0, -Errno.EINVAL);
            assertThat(mm.madvise(VA, 4 * H, Advice.COLLAPSE)).as("over a hole, then an empty range (madvise_walk_vmas returns the VMA's -EINVAL first)")
                    .isEqualTo(-Errno.EINVAL);
            assertThat(mm.madvise(VA, 3 * H, Advice.COLLAPSE)).as("over a hole only").isEqualTo(-Errno.ENOMEM);
            assertThat(mm.counters().anonHugePages()).as("the ranges around the hole collapsed").isEqualTo(1024);
            assertData(machine.cpu(0), mm, VA, VA, 64 * K4, 0, 0, "after collapse over a hole");
            assertThat(mm.madvise(VA + 100 * H, H, Advice.COLLAPSE)).as("nothing mapped").isEqualTo(-Errno.ENOMEM);
            // shared anonymous memory and hugetlb
            mm.mmap(VA + 8 * H, 2 * H, Protection.READ_WRITE, SHANON);
            fill(machine.cpu(0), mm, VA + 8 * H, 8 * K4);
            assertThat(mm.madvise(VA + 8 * H, 2 * H, Advice.COLLAPSE)).isEqualTo(-Errno.EINVAL);
            assertThat(mm.madvise(VA + 8 * H, 2 * H, Advice.HUGEPAGE)).isZero();
            var file = machine.hugetlbfs().create("f", 4 * H, PageSize.SIZE_2M);
            long hva = mm.mmap(file, 0, VA + 16 * H, 2 * H, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            machine.cpu(0).switchTo(mm);
            machine.cpu(0).store(hva, 8, 42);
            assertThat(mm.madvise(hva, 2 * H, Advice.COLLAPSE)).isEqualTo(-Errno.EINVAL);
            assertThat(mm.madvise(hva, 2 * H, Advice.NOHUGEPAGE)).isEqualTo(-Errno.EINVAL);
            assertThat(mm.madvise(VA + 8 * H, 10 * H, Advice.COLLAPSE)).as("shared, then a hole, then hugetlb").isIn(-Errno.EINVAL, -Errno.ENOMEM);
            assertThat(machine.cpu(0).load(hva, 8)).isEqualTo(42);
            // khugepaged input
            assertThatThrownBy(() -> machine.khugepaged().scan(0)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> machine.khugepaged().scan(-5)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> machine.khugepaged().scan(Integer.MIN_VALUE)).isInstanceOf(InvalidArgumentException.class);
            assertThat(machine.khugepaged().scan(Integer.MAX_VALUE)).as("NEVER: khugepaged collapses nothing").isZero();
            assertThat(machine.checkInvariants()).isEmpty();
            mm.close();
            assertThat(machine.checkInvariants()).isEmpty();
            long leftover = free - machine.freeFrames();
            machine.close();
            assertThat(machine.offHeapBytes()).isZero();
            assertThat(leftover).as("only the hugetlb pool pages of the file, shared anon pages").isGreaterThanOrEqualTo(0);
            assertThatThrownBy(() -> machine.khugepaged().scan(1)).isInstanceOf(ClosedException.class);
        });
    }

    @Test
    void khugepagedScanOfHugeBudgetsAndClosedAddressSpaces() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine machine = machine(ThpMode.ALWAYS, 2);
            long free = machine.freeFrames();
            List<AddressSpace> spaces = new ArrayList<>();
            for (int i = 0; i < 4; i++) {
                AddressSpace mm = machine.createAddressSpace();
                mm.mmap(VA, 2 * H + 5 * K4, Protection.READ_WRITE, PRIV);
                mm.madvise(VA, 2 * H + 5 * K4, Advice.NOHUGEPAGE);
                fill(machine.cpu(0), mm, VA, 2 * H + 5 * K4);
                mm.madvise(VA, 2 * H + 5 * K4, Advice.HUGEPAGE);
                spaces.add(mm);
            }
            assertThat(machine.khugepaged().scan(3)).isEqualTo(3);
            spaces.get(1).close(); // the cursor's address space goes
            spaces.get(0).close();
            assertThat(machine.khugepaged().scan(Integer.MAX_VALUE)).isEqualTo(4);
            assertThat(machine.khugepaged().scan(Integer.MAX_VALUE)).isZero();
            for (AddressSpace mm : spaces.subList(2, 4)) {
                assertData(machine.cpu(0), mm, VA, VA, 2 * H + 5 * K4, 0, 0, "after scans");
                assertThat(mm.counters().anonHugePages()).isEqualTo(1024);
            }
            closeAndCheck(machine, free);
        });
    }
}
