package org.vmcore.impl.hostile;

import static org.vmcore.impl.hostile.ThpHostile.H;
import static org.vmcore.impl.hostile.ThpHostile.K4;
import static org.vmcore.impl.hostile.ThpHostile.MIB;
import static org.vmcore.impl.hostile.ThpHostile.MOVE;
import static org.vmcore.impl.hostile.ThpHostile.OTHER;
import static org.vmcore.impl.hostile.ThpHostile.PRIV;
import static org.vmcore.impl.hostile.ThpHostile.VA;
import static org.vmcore.impl.hostile.ThpHostile.WAIT;
import static org.vmcore.impl.hostile.ThpHostile.fill;
import static org.vmcore.impl.hostile.ThpHostile.isOpen;
import static org.vmcore.impl.hostile.ThpHostile.read;
import static org.vmcore.impl.hostile.ThpHostile.trace;
import static org.vmcore.impl.hostile.ThpHostile.value;
import static org.vmcore.impl.hostile.ThpHostile.writes;
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageReference;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmException;

/**
 * Hostile tests of transparent huge page migration (PMD migration entries, 584bdb8), through the
 * public API only: a migration observer at every phase and MMU notifiers during the migration
 * call back into the engine (munmap, mprotect, madvise, mremap, fork, close, CPU accesses,
 * GUP-fast, nested move_pages, khugepaged), fork trees sharing the huge page, the rmap walker's
 * tryToMigrate on a huge page's head, fault injection of the 2 MiB target, and CPU threads that
 * write into the huge page while it migrates. Randomised tests print their seed. Each defect
 * found is kept as a failing test named {@code defect*}.
 */
@SuppressWarnings("try")
class Hostile20ThpMigrationTest {

    static Machine machine() {
        return Machine.builder().node(1L << 30).node(1L << 30).cpus(4).thp(ThpMode.ALWAYS)
                .detectStaleTranslations(true).build();
    }

    /** A 2 MiB-aligned huge page at VA on node 0, each 4 KiB page written. */
    static AddressSpace huge(Machine m) {
        AddressSpace mm = m.createAddressSpace(0);
        mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
        fill(m.cpu(0), mm, VA, H);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(m.page(mm.pageAt(VA)).node()).isZero();
        return mm;
    }

    /** Invariants, staleness, then every address space closed: frames back; then the machine: no off-heap bytes. */
    static void closeAndCheck(Machine m, long freeAtStart, List<String> failures, String tag) {
        try {
            if (isOpen(m)) {
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    failures.add(tag + ": invariants " + inv);
                }
                if (m.staleAccessCount() != 0) {
                    failures.add(tag + ": stale accesses " + m.staleAccesses());
                }
                for (AddressSpace mm : m.addressSpaces()) {
                    mm.close();
                }
                inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    failures.add(tag + ": invariants after close " + inv);
                }
                long free = m.freeFrames();
                if (free != freeAtStart && free != freeAtStart - 512) {
                    failures.add(tag + ": free frames " + free + " after close, " + freeAtStart + " at start");
                }
            }
        } catch (Throwable t) {
            failures.add(tag + ": after: " + trace(t));
        } finally {
            m.close();
            if (m.offHeapBytes() != 0) {
                failures.add(tag + ": offHeapBytes " + m.offHeapBytes());
            }
        }
    }

    static boolean onlyCallbackFailures(Throwable t) {
        if (t == null) {
            return true;
        }
        if (!(t instanceof VmException)) {
            return false;
        }
        for (Throwable s : t.getSuppressed()) {
            if (!onlyCallbackFailures(s)) {
                return false;
            }
        }
        return t.getCause() == null || t.getCause() == t || onlyCallbackFailures(t.getCause());
    }

    // ---------------------------------------------------------------- the actions

    /** What an attack does during the migration, and what must hold afterwards. */
    interface Attack {
        void run(Machine m, AddressSpace mm, Cpu cpu);
    }

    interface Check {
        void check(Machine m, AddressSpace mm, Cpu cpu, List<String> failures, String tag);
    }

    record Op(String name, Attack attack, Check check) {
    }

    /** [VA, VA+H) holds its values, except pages in [from, to) which must read {@code dropped} (-1: fault, 0: zero). */
    static Check data(long from, long to, long dropped) {
        return (m, mm, cpu, failures, tag) -> {
            for (long off = 0; off < H; off += K4) {
                long at = VA + off;
                long v = read(cpu, mm, at);
                long want = at >= from && at < to ? dropped : value(at);
                if (v != want) {
                    failures.add(tag + String.format(": page 0x%x reads 0x%x, want 0x%x", at, v, want));
                    return;
                }
            }
        };
    }

    static Check dataAt(long base) {
        return (m, mm, cpu, failures, tag) -> {
            for (long off = 0; off < H; off += K4) {
                long v = read(cpu, mm, base + off);
                if (v != value(VA + off)) {
                    failures.add(tag + String.format(": page 0x%x reads 0x%x, want 0x%x", base + off, v, value(VA + off)));
                    return;
                }
            }
        };
    }

    static Check readOnly(long at, Check then) {
        return (m, mm, cpu, failures, tag) -> {
            then.check(m, mm, cpu, failures, tag);
            if (writes(cpu, mm, at, 7)) {
                failures.add(tag + String.format(": a store to read-only 0x%x succeeded", at));
            }
        };
    }

    static Check noAccess(long at, Check then) {
        return (m, mm, cpu, failures, tag) -> {
            then.check(m, mm, cpu, failures, tag);
            if (read(cpu, mm, at) != -1) {
                failures.add(tag + String.format(": a load from PROT_NONE 0x%x succeeded", at));
            }
        };
    }

    static final Check NOTHING = (m, mm, cpu, failures, tag) -> { };

    static List<Op> ops() {
        List<Op> ops = new ArrayList<>();
        Check all = data(0, 0, 0);
        ops.add(new Op("munmap head page", (m, mm, c) -> mm.munmap(VA, K4), data(VA, VA + K4, -1)));
        ops.add(new Op("munmap middle", (m, mm, c) -> mm.munmap(VA + 64 * K4, 2 * K4), data(VA + 64 * K4, VA + 66 * K4, -1)));
        ops.add(new Op("munmap tail page", (m, mm, c) -> mm.munmap(VA + H - K4, K4), data(VA + H - K4, VA + H, -1)));
        ops.add(new Op("munmap first half", (m, mm, c) -> mm.munmap(VA, H / 2), data(VA, VA + H / 2, -1)));
        ops.add(new Op("munmap whole", (m, mm, c) -> mm.munmap(VA, H), data(VA, VA + H, -1)));
        ops.add(new Op("mprotect tail RO", (m, mm, c) -> mm.mprotect(VA + H - K4, K4, Protection.READ),
                readOnly(VA + H - K4, all)));
        ops.add(new Op("mprotect head RO", (m, mm, c) -> mm.mprotect(VA, K4, Protection.READ), readOnly(VA, all)));
        ops.add(new Op("mprotect head NONE", (m, mm, c) -> mm.mprotect(VA, K4, Protection.NONE),
                noAccess(VA, data(VA, VA + K4, -1))));
        ops.add(new Op("mprotect tail NONE", (m, mm, c) -> mm.mprotect(VA + H - K4, K4, Protection.NONE),
                noAccess(VA + H - K4, data(VA + H - K4, VA + H, -1))));
        ops.add(new Op("mprotect whole RO", (m, mm, c) -> mm.mprotect(VA, H, Protection.READ), readOnly(VA + 5 * K4, all)));
        ops.add(new Op("mprotect whole NONE then RW", (m, mm, c) -> {
            mm.mprotect(VA, H, Protection.NONE);
            mm.mprotect(VA, H, Protection.READ_WRITE);
        }, all));
        ops.add(new Op("DONTNEED head", (m, mm, c) -> mm.madvise(VA, K4, Advice.DONTNEED), data(VA, VA + K4, 0)));
        ops.add(new Op("DONTNEED middle", (m, mm, c) -> mm.madvise(VA + 100 * K4, 3 * K4, Advice.DONTNEED),
                data(VA + 100 * K4, VA + 103 * K4, 0)));
        ops.add(new Op("DONTNEED whole", (m, mm, c) -> mm.madvise(VA, H, Advice.DONTNEED), data(VA, VA + H, 0)));
        ops.add(new Op("FREE part", (m, mm, c) -> mm.madvise(VA, 8 * K4, Advice.FREE), all));
        ops.add(new Op("PAGEOUT", (m, mm, c) -> mm.madvise(VA, H, Advice.PAGEOUT), all));
        ops.add(new Op("COLLAPSE", (m, mm, c) -> mm.madvise(VA, H, Advice.COLLAPSE), all));
        ops.add(new Op("NOHUGEPAGE", (m, mm, c) -> mm.madvise(VA, H, Advice.NOHUGEPAGE), all));
        ops.add(new Op("NOHUGEPAGE part", (m, mm, c) -> mm.madvise(VA + 8 * K4, K4, Advice.NOHUGEPAGE), all));
        ops.add(new Op("mremap aligned", (m, mm, c) -> mm.mremap(VA, H, H, MOVE, OTHER), dataAt(OTHER)));
        ops.add(new Op("mremap unaligned", (m, mm, c) -> mm.mremap(VA, H, H, MOVE, OTHER + 3 * K4), dataAt(OTHER + 3 * K4)));
        ops.add(new Op("mremap tail half", (m, mm, c) -> mm.mremap(VA + H / 2, H / 2, H / 2, MOVE, OTHER),
                (m, mm, c, f, t) -> {
                    data(VA + H / 2, VA + H, -1).check(m, mm, c, f, t);
                    for (long off = 0; off < H / 2; off += K4) {
                        long v = read(c, mm, OTHER + off);
                        if (v != value(VA + H / 2 + off)) {
                            f.add(t + String.format(": moved page 0x%x reads 0x%x", OTHER + off, v));
                            return;
                        }
                    }
                }));
        ops.add(new Op("mremap head page", (m, mm, c) -> mm.mremap(VA, K4, K4, MOVE, OTHER),
                (m, mm, c, f, t) -> {
                    data(VA, VA + K4, -1).check(m, mm, c, f, t);
                    if (read(c, mm, OTHER) != value(VA)) {
                        f.add(t + ": moved head page reads " + read(c, mm, OTHER));
                    }
                }));
        ops.add(new Op("fork", (m, mm, c) -> mm.fork(), (m, mm, c, f, t) -> {
            all.check(m, mm, c, f, t);
            for (AddressSpace other : m.addressSpaces()) {
                if (other != mm) {
                    all.check(m, other, c, f, t + " child");
                    writes(c, other, VA, 99);
                    all.check(m, mm, c, f, t + " parent after the child's write");
                }
            }
        }));
        ops.add(new Op("fork then child munmap head", (m, mm, c) -> mm.fork().munmap(VA, K4), all));
        ops.add(new Op("loads and stores", (m, mm, c) -> {
            c.switchTo(mm);
            for (long off : new long[] {0, 7 * K4, H - K4}) {
                try {
                    c.load(VA + off, 8);
                } catch (MigrationWaitException e) {
                    // documented: the access cannot wait from inside the observer
                }
                try {
                    c.store(VA + off, 8, value(VA + off));
                } catch (MigrationWaitException e) {
                    // documented
                }
            }
        }, all));
        ops.add(new Op("getUserPageFast", (m, mm, c) -> {
            for (boolean w : new boolean[] {false, true}) {
                PageReference r = mm.getUserPageFast(VA + 9 * K4, w);
                if (r != null) {
                    r.close();
                }
            }
        }, all));
        ops.add(new Op("nested move_pages", (m, mm, c) -> m.migration().movePages(mm, new long[] {VA, VA + K4},
                new int[] {0, 0}, MigrationService.MPOL_MF_MOVE_ALL), all));
        ops.add(new Op("nested migrate_pages", (m, mm, c) -> m.migration().migratePages(mm, new int[] {0, 1},
                new int[] {1, 0}, MigrationService.MPOL_MF_MOVE_ALL), all));
        ops.add(new Op("khugepaged", (m, mm, c) -> m.khugepaged().scan(8), all));
        ops.add(new Op("close mm", (m, mm, c) -> mm.close(), NOTHING));
        ops.add(new Op("close machine", (m, mm, c) -> m.close(), NOTHING));
        return ops;
    }

    /** Runs op once from the observer at {@code phase} (or, with phase null, from the first MIGRATE notifier call) of a move_pages of the huge page. */
    static void scenario(Op op, MigrationPhase phase, boolean notifier, int how, List<String> failures) {
        Machine m = machine();
        long free = m.freeFrames();
        String tag = op.name() + " @" + (notifier ? "notifier" : phase) + " via " + how;
        Cpu cpu = m.cpu(0);
        AddressSpace mm = huge(m);
        AtomicBoolean fired = new AtomicBoolean();
        AtomicBoolean done = new AtomicBoolean();
        Attack attack = (mx, mmx, cx) -> {
            op.attack().run(mx, mmx, cx);
            done.set(true);
        };
        if (notifier) {
            mm.registerNotifier(new MmuNotifier() {
                @Override
                public void invalidateRangeStart(NotifierRange range) {
                    if (range.event() == NotifierEvent.MIGRATE && fired.compareAndSet(false, true)) {
                        attack.run(m, mm, m.cpu(1));
                    }
                }
            });
        } else {
            m.migration().setObserver(e -> {
                if (e.phase() == phase && fired.compareAndSet(false, true)) {
                    attack.run(m, mm, m.cpu(1));
                }
            });
        }
        Throwable thrown = null;
        try {
            switch (how) {
                case 0 -> m.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
                case 1 -> m.migration().migratePages(mm, new int[] {0}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
                default -> {
                    long head = mm.pageAt(VA);
                    m.migration().offlineRange(0, head & -512L, (head & -512L) + 512);
                }
            }
        } catch (Throwable t) {
            thrown = t;
        }
        if (!onlyCallbackFailures(thrown) && !(thrown instanceof ClosedException)) {
            failures.add(tag + ": engine failure " + trace(thrown));
        }
        if (!fired.get() && !notifier) {
            failures.add(tag + ": the observer never heard " + phase);
        }
        try {
            if (isOpen(m)) {
                m.migration().setObserver(null);
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    failures.add(tag + ": invariants after the migration " + inv);
                }
                if (!mm.isClosed()) {
                    // an attack refused (a callback may not call back in) leaves the data as it was
                    (done.get() ? op.check() : data(0, 0, 0)).check(m, mm, cpu, failures, tag);
                }
            }
        } catch (Throwable t) {
            failures.add(tag + ": check: " + trace(t));
        }
        closeAndCheck(m, free, failures, tag);
    }

    /**
     * Attacks the matrix leaves to tests of their own. Empty: the defects those tests were written
     * for (entries split across VMAs while a huge page moves) are fixed, so the matrix runs every attack.
     */
    static final List<String> DEFECTS = List.of();

    static void matrix(List<String> names, boolean notifier, int how) {
        List<String> failures = new ArrayList<>();
        for (Op op : ops()) {
            if (!names.isEmpty() && !names.contains(op.name()) || names.isEmpty() && DEFECTS.contains(op.name())) {
                continue;
            }
            if (notifier) {
                scenario(op, null, true, how, failures);
            } else {
                for (MigrationPhase phase : MigrationPhase.values()) {
                    scenario(op, phase, false, how, failures);
                }
            }
        }
        assertThat(failures).isEmpty();
    }

    // ---------------------------------------------------------------- the matrix

    @Test
    void everyAttackAtEveryPhaseOfMovePages() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), false, 0));
    }

    @Test
    void everyAttackFromTheMigrateNotifier() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), true, 0));
    }

    @Test
    void everyAttackAtEveryPhaseOfMigratePagesAndOffline() {
        assertTimeoutPreemptively(WAIT, () -> {
            matrix(List.of("munmap middle", "mprotect whole RO", "DONTNEED whole", "fork", "mremap aligned", "close mm",
                    "loads and stores", "nested move_pages"), false, 1);
            matrix(List.of("munmap middle", "mprotect whole RO", "fork", "mremap aligned", "close mm", "loads and stores"),
                    false, 2);
        });
    }

    /** One attack at one phase of a move_pages; fails with every broken expectation. */
    static void one(String name, MigrationPhase phase) {
        List<String> failures = new ArrayList<>();
        Op op = ops().stream().filter(o -> o.name().equals(name)).findFirst().orElseThrow();
        scenario(op, phase, false, 0, failures);
        assertThat(failures).isEmpty();
    }

    // ---------------------------------------------------------------- defects

    /**
     * Was a defect, fixed: munmap of the huge page's first 4 KiB page while it migrates splits the PMD
     * migration entry; the 511 PTE migration entries left are never restored (remove_migration_ptes
     * looks for the folio only at the address of its head page, which no VMA maps any more), the
     * old folio is freed under them, and every access to the rest of the huge page faults forever.
     */
    @Test
    void munmapOfTheHeadPageDuringMigrationLosesTheRest() {
        assertTimeoutPreemptively(WAIT, () -> one("munmap head page", MigrationPhase.AFTER_UNMAP));
    }

    /** Was a defect (same cause), fixed: the child of a fork made before the migration unmaps the head page while it moves: its 511 pages are lost. */
    @Test
    void forkChildUnmappingTheHeadPageDuringMigrationLosesItsPages() {
        assertTimeoutPreemptively(WAIT, () -> one("fork then child munmap head", MigrationPhase.BEFORE_COPY));
    }

    /** Was a defect (same cause), fixed: mremap of the huge page's second half elsewhere while it moves: the moved half is never restored. */
    @Test
    void mremapOfTheTailHalfDuringMigrationLosesIt() {
        assertTimeoutPreemptively(WAIT, () -> one("mremap tail half", MigrationPhase.AFTER_COPY));
    }

    /**
     * Was a defect, fixed: mprotect(PROT_READ) of the huge page's last 4 KiB page while it migrates: the PTE
     * migration entries are all restored with the protection of the head page's VMA, so the
     * read-only page comes back writable (a store succeeds; the invariant checker flags it).
     */
    @Test
    void mprotectReadOnlyOfTheTailPageDuringMigrationIsUndone() {
        assertTimeoutPreemptively(WAIT, () -> one("mprotect tail RO", MigrationPhase.AFTER_UNMAP));
    }

    /** Was a defect (same cause), fixed: mprotect(PROT_NONE) of the last page while it migrates: the page stays readable and writable. */
    @Test
    void mprotectNoneOfTheTailPageDuringMigrationIsUndone() {
        assertTimeoutPreemptively(WAIT, () -> one("mprotect tail NONE", MigrationPhase.BEFORE_COPY));
    }

    /**
     * Was a defect (same cause), fixed: mprotect(PROT_NONE) of the first page while it migrates: the other 511
     * pages, in a read-write VMA, come back PROT_NONE and every access to them faults forever.
     */
    @Test
    void mprotectNoneOfTheHeadPageDuringMigrationBlocksTheRest() {
        assertTimeoutPreemptively(WAIT, () -> one("mprotect head NONE", MigrationPhase.AFTER_COPY));
    }

    // ---------------------------------------------------------------- other attacks

    /** CPU threads write into the huge page while it migrates back and forth: every write survives. */
    @Test
    void concurrentWritersDuringRepeatedMigration() {
        long seed = new Random().nextLong();
        System.out.println("Hostile20ThpMigrationTest.concurrentWritersDuringRepeatedMigration seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            int threads = 3;
            long[][] last = new long[threads][64];
            long[][] where = new long[threads][64];
            Random r = new Random(seed);
            for (int t = 0; t < threads; t++) {
                for (int k = 0; k < 64; k++) {
                    where[t][k] = VA + (long) r.nextInt(512) * K4 + 8 + 8L * (t * 64 + k) % (K4 - 16);
                    where[t][k] &= ~7L;
                }
            }
            AtomicBoolean stop = new AtomicBoolean();
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                Thread th = new Thread(() -> {
                    Cpu c = m.cpu(id + 1);
                    c.switchTo(mm);
                    long n = 0;
                    try {
                        while (!stop.get()) {
                            int k = (int) (n % 64);
                            long v = (n << 8) | (id + 1);
                            c.store(where[id][k], 8, v);
                            last[id][k] = v;
                            n++;
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                });
                ts.add(th);
                th.start();
            }
            int moved = 0;
            for (int i = 0; i < 30; i++) {
                MovePagesResult res = m.migration().movePages(mm, new long[] {VA}, new int[] {(i + 1) % 2},
                        MigrationService.MPOL_MF_MOVE);
                if (res.status()[0] == (i + 1) % 2) {
                    moved++;
                }
            }
            stop.set(true);
            for (Thread th : ts) {
                th.join();
            }
            assertThat(errors).isEmpty();
            assertThat(moved).as("migrations that succeeded").isPositive();
            assertThat(m.checkInvariants()).isEmpty();
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            for (int t = 0; t < threads; t++) {
                for (int k = 0; k < 64; k++) {
                    long expect = last[t][k];
                    // another thread may have written the same word later
                    long got = c.load(where[t][k], 8);
                    boolean overwritten = false;
                    for (int u = 0; u < threads; u++) {
                        for (int j = 0; j < 64; j++) {
                            if ((u != t || j != k) && where[u][j] == where[t][k]) {
                                overwritten = true;
                            }
                        }
                    }
                    if (!overwritten && expect != 0) {
                        assertThat(got).as("thread %d word %d at 0x%x", t, k, where[t][k]).isEqualTo(expect);
                    }
                }
            }
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            assertThat(m.staleAccessCount()).isZero();
            List<String> failures = new ArrayList<>();
            closeAndCheck(m, free, failures, "concurrent");
            assertThat(failures).isEmpty();
        });
    }

    /** A fork tree shares the huge page: MPOL_MF_MOVE refuses it, MOVE_ALL moves it for all; each side then writes its own copy. */
    @Test
    void forkTreeSharingTheHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            AddressSpace b = mm.fork();
            AddressSpace aa = a.fork();
            long head = mm.pageAt(VA);
            assertThat(m.migration().movePages(b, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE).status())
                    .containsExactly(-Errno.EACCES);
            MovePagesResult res = m.migration().movePages(aa, new long[] {VA + 77 * K4}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE_ALL);
            assertThat(res.status()).containsExactly(1);
            long now = mm.pageAt(VA);
            assertThat(now).isNotEqualTo(head);
            Cpu c = m.cpu(0);
            for (AddressSpace s : List.of(mm, a, b, aa)) {
                assertThat(s.pageAt(VA)).isEqualTo(now);
                assertThat(s.counters().anonHugePages()).isEqualTo(512);
                for (long off = 0; off < H; off += 64 * K4) {
                    assertThat(read(c, s, VA + off)).isEqualTo(value(VA + off));
                }
            }
            c.switchTo(a);
            c.store(VA + 3 * K4, 8, 42);
            assertThat(read(c, aa, VA + 3 * K4)).isEqualTo(value(VA + 3 * K4));
            assertThat(read(c, a, VA + 3 * K4)).isEqualTo(42);
            assertThat(read(c, mm, VA + 3 * K4)).isEqualTo(value(VA + 3 * K4));
            // mapped by PTEs in a (after its COW split) and by PMDs elsewhere, it still moves whole
            assertThat(m.migration().movePages(mm, new long[] {VA}, new int[] {0}, MigrationService.MPOL_MF_MOVE_ALL).status())
                    .containsExactly(0);
            assertThat(read(c, a, VA + 5 * K4)).isEqualTo(value(VA + 5 * K4));
            assertThat(read(c, a, VA + 3 * K4)).isEqualTo(42);
            a.close();
            assertThat(m.checkInvariants()).isEmpty();
            List<String> failures = new ArrayList<>();
            closeAndCheck(m, free, failures, "fork tree");
            assertThat(failures).isEmpty();
        });
    }

    /** A fork from the observer after the unmap, then the parent exits before the remap: the child alone gets the new page. */
    @Test
    void forkThenParentExitDuringMigration() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (MigrationPhase phase : MigrationPhase.values()) {
                Machine m = machine();
                long free = m.freeFrames();
                AddressSpace mm = huge(m);
                AtomicReference<AddressSpace> child = new AtomicReference<>();
                m.migration().setObserver(e -> {
                    if (e.phase() == phase) {
                        child.set(mm.fork());
                        mm.close();
                    }
                });
                Throwable thrown = null;
                try {
                    m.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
                } catch (Throwable t) {
                    thrown = t;
                }
                m.migration().setObserver(null);
                assertThat(onlyCallbackFailures(thrown) || thrown instanceof ClosedException).as("%s: %s", phase, thrown).isTrue();
                assertThat(m.checkInvariants()).as(phase.toString()).isEmpty();
                Cpu c = m.cpu(0);
                for (long off = 0; off < H; off += 32 * K4) {
                    assertThat(read(c, child.get(), VA + off)).as("%s +0x%x", phase, off).isEqualTo(value(VA + off));
                }
                List<String> failures = new ArrayList<>();
                closeAndCheck(m, free, failures, "fork then exit " + phase);
                assertThat(failures).isEmpty();
            }
        });
    }

    /** The rmap walker's try_to_migrate and remove_migration_ptes on a huge page's head, with a fork and a whole-range mprotect between. */
    @Test
    void rmapTryToMigrateAndRemoveOnAHugePageHead() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            m.rmap().tryToMigrate(head);
            assertThat(mm.pageAt(VA)).isNegative();
            AddressSpace child = mm.fork();
            mm.mprotect(VA, H, Protection.READ);
            assertThat(m.rmap().removeMigrationEntries(head, head)).isEqualTo(2);
            assertThat(m.checkInvariants()).isEmpty();
            Cpu c = m.cpu(0);
            for (long off = 0; off < H; off += 16 * K4) {
                assertThat(read(c, mm, VA + off)).isEqualTo(value(VA + off));
                assertThat(read(c, child, VA + off)).isEqualTo(value(VA + off));
            }
            assertThat(writes(c, mm, VA, 1)).as("read-only after the mprotect").isFalse();
            assertThat(writes(c, child, VA, 5)).isTrue();
            assertThat(read(c, mm, VA)).isEqualTo(value(VA));
            // the same with the whole range unmapped between: the page goes when the entries go
            m.rmap().tryToMigrate(mm.pageAt(VA + H / 2));
            mm.munmap(VA, H);
            assertThat(m.checkInvariants()).isEmpty();
            List<String> failures = new ArrayList<>();
            closeAndCheck(m, free, failures, "rmap");
            assertThat(failures).isEmpty();
        });
    }

    /** No 2 MiB block on the target node: -ENOMEM, the huge page stays whole and mapped, thp_migration_fail counts it. */
    @Test
    void targetAllocationFails() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            long fails = m.migration().stats().get("thp_migration_fail");
            m.failNthAllocation(AllocationKind.FRAME, 1, 4);
            MovePagesResult res = m.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            assertThat(res.status()).containsExactly(-Errno.ENOMEM);
            assertThat(mm.pageAt(VA)).isEqualTo(head);
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            assertThat(m.migration().stats().get("thp_migration_fail")).isEqualTo(fails + 1);
            m.failNthAllocation(AllocationKind.FRAME, 1, 4);
            assertThat(m.migration().migratePages(mm, new int[] {0}, new int[] {1}, MigrationService.MPOL_MF_MOVE)).isEqualTo(1);
            assertThat(mm.pageAt(VA)).isEqualTo(head);
            assertThat(m.checkInvariants()).isEmpty();
            List<String> failures = new ArrayList<>();
            data(0, 0, 0).check(m, mm, m.cpu(0), failures, "enomem");
            closeAndCheck(m, free, failures, "enomem");
            assertThat(failures).isEmpty();
        });
    }

    /**
     * Soft offline of a page of a huge page splits it and poisons that page alone (the data stays);
     * memory offline moves a huge page whole.
     */
    @Test
    void softOfflineSplitsAndMemoryOfflineMovesIt() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            AddressSpace split = huge(m);
            long first = split.pageAt(VA);
            assertThat(m.migration().softOffline(first)).isZero();
            assertThat(m.page(first).flags()).contains(org.vmcore.api.PageFlag.HWPOISON);
            assertThat(split.counters().anonHugePages()).isZero();
            List<String> splitFailures = new ArrayList<>();
            data(0, 0, 0).check(m, split, m.cpu(0), splitFailures, "soft offline");
            assertThat(splitFailures).isEmpty();
            split.close();
            assertThat(m.checkInvariants()).isEmpty();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            var result = m.migration().offlineRange(0, head, head + 512);
            assertThat(result.migratedPages()).as("one folio (counted once)").isPositive();
            assertThat(m.page(mm.pageAt(VA)).node()).isEqualTo(1);
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            List<String> failures = new ArrayList<>();
            data(0, 0, 0).check(m, mm, m.cpu(0), failures, "offline");
            closeAndCheck(m, free - 512, failures, "offline");
            assertThat(failures).isEmpty();
        });
    }
}
