package org.vmcore.impl.hostile;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;
import static org.vmcore.impl.hostile.ThpHostile.H;
import static org.vmcore.impl.hostile.ThpHostile.K4;
import static org.vmcore.impl.hostile.ThpHostile.MIB;
import static org.vmcore.impl.hostile.ThpHostile.MOVE;
import static org.vmcore.impl.hostile.ThpHostile.OTHER;
import static org.vmcore.impl.hostile.ThpHostile.PRIV;
import static org.vmcore.impl.hostile.ThpHostile.VA;
import static org.vmcore.impl.hostile.ThpHostile.fill;
import static org.vmcore.impl.hostile.ThpHostile.isOpen;
import static org.vmcore.impl.hostile.ThpHostile.read;
import static org.vmcore.impl.hostile.ThpHostile.trace;
import static org.vmcore.impl.hostile.ThpHostile.value;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageReference;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.impl.Fixtures;

/**
 * Hostile tests of transparent huge pages mapped by 512 PTEs (their PMD split by an mprotect and
 * back): MADV_FREE / COLD / PAGEOUT without a split (PteMappedHugePages), MADV_COLLAPSE and
 * khugepaged copying their pages (KhugepagedImpl), deferred split of what stays mapped elsewhere.
 * Through the public API only; each test names the Linux function it follows; randomised tests
 * print their seed and name it in every failure.
 *
 * <p>Data model as in Hostile21ThpMadviseTest: a page MADV_FREE covered and not written since
 * may read its word or zero; a page written after MADV_FREE keeps what was written.
 */
@SuppressWarnings("try")
class Hostile21PteMappedThpTest {
    private static final Duration LIMIT = Duration.ofSeconds(40);
    private static final Protection RWX = new Protection(true, true, true);

    private static Machine machine(long swapBytes, int nodes, boolean check) {
        Machine.Builder b = Machine.builder().cpus(3).thp(ThpMode.ALWAYS).detectStaleTranslations(true)
                .checkInvariantsAfterEveryOperation(check);
        for (int i = 0; i < nodes; i++) {
            b.node(1L << 30);
        }
        if (swapBytes > 0) {
            b.swap(swapBytes);
        }
        return b.build();
    }

    /** {@code hp} filled THPs at {@code va}, each mapped by 512 PTEs (PMD split by mprotect of one page and back). */
    private static AddressSpace pteMapped(Machine m, long va, int hp) {
        AddressSpace mm = m.createAddressSpace(0);
        mm.mmap(va, hp * H, Protection.READ_WRITE, PRIV);
        fill(m.cpu(0), mm, va, hp * H);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512L * hp);
        splitPmds(mm, va, hp);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(512L * hp);
        return mm;
    }

    private static void splitPmds(AddressSpace mm, long va, int hp) {
        for (int i = 0; i < hp; i++) {
            mm.mprotect(va + i * H + 100 * K4, K4, Protection.READ);
            mm.mprotect(va + i * H + 100 * K4, K4, Protection.READ_WRITE);
        }
    }

    private static long vm(Machine m, String name) {
        return m.vmstat().get(name);
    }

    private static long swapFree(Machine m) {
        return m.stats().meminfo().get("SwapFree");
    }

    /** What each page of a range must read: its word, or zero too when lazy. */
    static final class Model {
        final long base;
        final long[] expect;
        final boolean[] lazy;

        Model(long base, long fillBase, int pages) {
            this.base = base;
            expect = new long[pages];
            lazy = new boolean[pages];
            for (int p = 0; p < pages; p++) {
                expect[p] = value(fillBase + p * K4);
            }
        }

        Model copy() {
            Model c = new Model(base, 0, expect.length);
            System.arraycopy(expect, 0, c.expect, 0, expect.length);
            System.arraycopy(lazy, 0, c.lazy, 0, lazy.length);
            return c;
        }

        void free(long from, long to) {
            for (long va = Math.max(from, base); va < to && va < base + expect.length * K4; va += K4) {
                lazy[(int) ((va - base) / K4)] = true;
            }
        }

        void wrote(long va, long v) {
            int p = (int) ((va - base) / K4);
            expect[p] = v;
            lazy[p] = false;
        }

        String check(int p, long got) {
            if (got == expect[p]) {
                return null;
            }
            if (lazy[p] && got == 0) {
                expect[p] = 0;
                lazy[p] = false;
                return null;
            }
            return "page " + p + " (0x" + Long.toHexString(base + p * K4) + ") reads 0x" + Long.toHexString(got)
                    + ", want 0x" + Long.toHexString(expect[p]) + (lazy[p] ? " or 0 (lazy)" : "");
        }

        void verifyAll(Cpu c, AddressSpace mm, List<String> f, String tag) {
            for (int p = 0; p < expect.length; p++) {
                String why = check(p, read(c, mm, base + p * K4));
                if (why != null) {
                    f.add(tag + ": " + why);
                    if (f.size() > 8) {
                        return;
                    }
                }
            }
        }
    }

    private static void write(Cpu c, AddressSpace mm, Model md, long va, long v) {
        c.switchTo(mm);
        c.store(va, 8, v);
        md.wrote(va, v);
    }

    /** All address spaces closed: no frame and no swap slot left, no invariant broken; then closeChecked. */
    private static void closeAndCheck(Machine m, long freeAtStart, long swapAtStart, List<String> f, String tag) {
        try {
            if (!isOpen(m)) {
                f.add(tag + ": machine closed");
                return;
            }
            List<String> inv = m.checkInvariants();
            if (!inv.isEmpty()) {
                f.add(tag + ": invariants " + inv);
            }
            for (AddressSpace mm : m.addressSpaces()) {
                mm.close();
            }
            m.reclaim(0, 1); // runs the deferred split queue
            inv = m.checkInvariants();
            if (!inv.isEmpty()) {
                f.add(tag + ": invariants after close " + inv);
            }
            long free = m.freeFrames();
            if (free != freeAtStart && free != freeAtStart - 512) { // the huge zero page may stay
                f.add(tag + ": free frames " + free + " after close, " + freeAtStart + " at start (leak "
                        + (freeAtStart - free) + ")");
            }
            if (swapAtStart >= 0 && swapFree(m) != swapAtStart) {
                f.add(tag + ": SwapFree " + swapFree(m) + " kB after close, " + swapAtStart + " at start");
            }
            Fixtures.closeChecked(m);
        } catch (Throwable t) {
            f.add(tag + ": close: " + trace(t));
        }
    }

    // ------------------------------------------------------------------------------------------
    // FREE / COLD / PAGEOUT of PTE-mapped THPs
    // ------------------------------------------------------------------------------------------

    /**
     * madvise_free_pte_range (whole large folio, no split) then madvise_cold_or_pageout_pte_range
     * and shrink_folio_list / try_to_unmap_one (lazy-free batch): a write after FREE, from a CPU
     * whose TLB held the entry dirty or clean or not at all, survives PAGEOUT and reclaim; an
     * unwritten lazy-free THP goes whole, counted once, with no leak.
     */
    @Test
    void freeThenWriteThenPageoutOrReclaim() {
        for (int variant = 0; variant < 10; variant++) {
            List<String> f = new ArrayList<>();
            boolean swap = variant >= 5;
            Machine m = machine(swap ? 8 * MIB : 0, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swap ? swapFree(m) : -1;
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Model md = new Model(VA, VA, 512);
                Cpu c1 = m.cpu(1);
                c1.switchTo(mm);
                int v = variant % 5;
                if (v == 0) {
                    c1.store(VA + 7 * K4, 8, 0x1111); // TLB holds the entry dirty
                    md.wrote(VA + 7 * K4, 0x1111);
                } else if (v == 1) {
                    c1.load(VA + 7 * K4, 8); // clean
                }
                assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
                assertThat(vm(m, "pglazyfree")).as(tag).isEqualTo(512);
                md.free(VA, VA + H);
                if (v <= 2) {
                    write(c1, mm, md, VA + 7 * K4, 0x2222);
                }
                if (v == 3) {
                    assertThat(mm.madvise(VA, H, Advice.COLD)).isZero();
                    write(c1, mm, md, VA + 511 * K4, 0x3333);
                }
                if (v == 4) {
                    m.reclaim(0, 10_000); // reclaim, no PAGEOUT: the clean lazy-free THP may go
                    m.reclaim(0, 10_000);
                } else {
                    assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
                    m.reclaim(0, 10_000);
                    assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
                    m.reclaim(0, 10_000);
                }
                md.verifyAll(m.cpu(0), mm, f, tag);
                md.verifyAll(m.cpu(2), mm, f, tag + " again");
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, swap0, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * madvise_free_pte_range twice with writes between and after, then try_to_unmap_one: the
     * write after the second FREE must stay; the PTE-mapped THP written once (non-lazy again)
     * must become lazy again on the second FREE and not be dropped while written.
     */
    @Test
    void freeWriteFreeWritePageout() {
        List<String> f = new ArrayList<>();
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = pteMapped(m, VA, 1);
        Model md = new Model(VA, VA, 512);
        Cpu c = m.cpu(1);
        try {
            mm.madvise(VA, H, Advice.FREE);
            md.free(VA, VA + H);
            write(c, mm, md, VA + 20 * K4, 0x20);
            mm.madvise(VA, H, Advice.PAGEOUT); // written: kept, swap-backed again
            md.verifyAll(m.cpu(0), mm, f, "after first pageout");
            assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
            md.free(VA, VA + H);
            write(c, mm, md, VA + 30 * K4, 0x30);
            mm.madvise(VA, H, Advice.PAGEOUT);
            m.reclaim(0, 10_000);
            md.verifyAll(m.cpu(0), mm, f, "after second pageout");
            mm.madvise(VA, H, Advice.FREE);
            md.free(VA, VA + H);
            mm.madvise(VA, H, Advice.PAGEOUT);
            md.verifyAll(m.cpu(0), mm, f, "after third pageout");
        } catch (Throwable t) {
            f.add(trace(t));
        }
        closeAndCheck(m, free0, -1, f, "freeWriteFree");
        assertThat(f).isEmpty();
    }

    /**
     * mremap's move_ptes carrying part of a PTE-mapped THP elsewhere, then madvise_free_pte_range
     * and madvise_cold_or_pageout_pte_range over either part or both (folio_pte_batch shorter than
     * the folio: no whole-folio shortcut), then mremap back (the 512 entries whole again) and the
     * shortcut: writes after FREE survive; nothing leaks.
     */
    @Test
    void partlyMovedByMremapThenFreeAndPageout() {
        for (int variant = 0; variant < 6; variant++) {
            List<String> f = new ArrayList<>();
            boolean swap = variant % 2 == 1;
            Machine m = machine(swap ? 8 * MIB : 0, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swap ? swapFree(m) : -1;
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Cpu c = m.cpu(0);
                Model lo = new Model(VA, VA, 256);
                Model hi = new Model(VA + 256 * K4, VA + 256 * K4, 256);
                // pages [0, 256) go to OTHER
                mm.mremap(VA, 256 * K4, 256 * K4, MOVE, OTHER);
                Model moved = new Model(OTHER, VA, 256);
                System.arraycopy(lo.expect, 0, moved.expect, 0, 256);
                if (variant >= 4) {
                    mm.mremap(OTHER, 256 * K4, 256 * K4, MOVE, VA); // back: 512 entries in place again
                    moved = new Model(VA, VA, 256);
                }
                mm.madvise(VA + 256 * K4, 256 * K4, Advice.FREE);
                hi.free(VA + 256 * K4, VA + H);
                long mb = moved.base;
                mm.madvise(mb, 256 * K4, Advice.FREE);
                moved.free(mb, mb + 256 * K4);
                if (variant >= 4) {
                    mm.madvise(VA, H, Advice.FREE);
                }
                write(c, mm, hi, VA + 300 * K4, 0x300);
                write(c, mm, moved, mb + 3 * K4, 0x3);
                if (variant >= 2 && variant < 4) {
                    mm.madvise(OTHER, 256 * K4, Advice.PAGEOUT);
                    mm.madvise(VA + 256 * K4, 256 * K4, Advice.PAGEOUT);
                } else {
                    mm.madvise(VA, H, Advice.PAGEOUT);
                    mm.madvise(OTHER, 256 * K4, Advice.PAGEOUT);
                }
                m.reclaim(0, 10_000);
                m.reclaim(0, 10_000);
                hi.verifyAll(c, mm, f, tag + " hi");
                moved.verifyAll(c, mm, f, tag + " moved");
                if (variant < 4 && read(c, mm, VA) != -1) {
                    f.add(tag + ": the moved-from range still maps something: " + read(c, mm, VA));
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, swap0, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * copy_pte_range (fork of a PTE-mapped THP), wp_page_copy in the child, then
     * madvise_free_pte_range in the parent: while the child maps any page of it, the folio is
     * folio_maybe_mapped_shared and left alone; once the child unmaps or exits, FREE + PAGEOUT
     * work on it whole; the child's data is never touched.
     */
    @Test
    void forkChildCowThenFreeAndPageout() {
        for (int variant = 0; variant < 4; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 1, true);
            long free0 = m.freeFrames();
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Cpu c = m.cpu(0);
                Model pm = new Model(VA, VA, 512);
                AddressSpace child = mm.fork();
                Model cm = pm.copy();
                int cow = variant == 1 ? 512 : 10;
                for (int p = 0; p < cow; p++) {
                    write(c, child, cm, VA + p * K4, 0xc000 + p);
                }
                long lazy0 = vm(m, "pglazyfree");
                mm.madvise(VA, H, Advice.FREE);
                if (variant != 1 && vm(m, "pglazyfree") != lazy0) {
                    f.add(tag + ": FREE made a THP shared with the child lazy free (pglazyfree +"
                            + (vm(m, "pglazyfree") - lazy0) + ")");
                }
                if (variant == 1 || vm(m, "pglazyfree") != lazy0) {
                    pm.free(VA, VA + H);
                }
                write(c, mm, pm, VA + 40 * K4, 0x40);
                mm.madvise(VA, H, Advice.PAGEOUT);
                cm.verifyAll(c, child, f, tag + " child after parent's pageout");
                pm.verifyAll(c, mm, f, tag + " parent after pageout");
                switch (variant) {
                    case 2 -> child.munmap(VA, H);
                    case 3 -> child.close();
                    default -> { }
                }
                mm.madvise(VA, H, Advice.FREE);
                pm.free(VA, VA + H);
                write(c, mm, pm, VA + 50 * K4, 0x50);
                mm.madvise(VA, H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                pm.verifyAll(c, mm, f, tag + " parent");
                if (variant < 2) {
                    cm.verifyAll(c, child, f, tag + " child");
                    child.madvise(VA, H, Advice.FREE);
                    cm.free(VA, VA + H);
                    write(c, child, cm, VA + 60 * K4, 0x60);
                    child.madvise(VA, H, Advice.PAGEOUT);
                    m.reclaim(0, 10_000);
                    cm.verifyAll(c, child, f, tag + " child after its own FREE");
                    pm.verifyAll(c, mm, f, tag + " parent after the child's FREE");
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * try_to_unmap_one (lazy-free batch) against GUP: a PTE-mapped lazy-free THP pinned by
     * getUserPageFast is not dropped; munmap while pinned, then unpin, frees everything.
     */
    @Test
    void pinnedLazyFreeThenMunmapThenUnpin() {
        for (int variant = 0; variant < 3; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 1, true);
            long free0 = m.freeFrames();
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Cpu c = m.cpu(0);
                mm.madvise(VA, H, Advice.FREE);
                PageReference ref = mm.getUserPageFast(VA + 9 * K4, variant == 1);
                long lazyfreed = vm(m, "pglazyfreed");
                mm.madvise(VA, H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                if (vm(m, "pglazyfreed") != lazyfreed && variant != 2) {
                    f.add(tag + ": a pinned lazy-free THP lost pages: pglazyfreed +" + (vm(m, "pglazyfreed") - lazyfreed));
                }
                long got = read(c, mm, VA + 9 * K4);
                if (got != value(VA + 9 * K4) && got != 0) {
                    f.add(tag + ": pinned page reads " + got);
                }
                if (variant == 2) {
                    ref.close();
                    ref = null;
                }
                mm.munmap(VA, H);
                if (ref != null) {
                    ref.close();
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * migrate_pages of a PTE-mapped lazy-free THP (try_to_migrate_one keeps the dirty bit in the
     * migration entry, remove_migration_pte puts it back), then madvise_cold_or_pageout_pte_range:
     * a write after FREE, before or after the move, survives.
     */
    @Test
    void migrateLazyFreePteMappedThenPageout() {
        for (int variant = 0; variant < 4; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 2, true);
            long free0 = m.freeFrames();
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Model md = new Model(VA, VA, 512);
                Cpu c1 = m.cpu(1);
                c1.switchTo(mm);
                c1.load(VA + 17 * K4, 8);
                mm.madvise(VA, H, Advice.FREE);
                md.free(VA, VA + H);
                if (variant == 1) {
                    write(c1, mm, md, VA + 17 * K4, 0x17);
                }
                long[] addrs = variant == 3 ? new long[] {VA, VA + 17 * K4, VA + 300 * K4} : new long[] {VA};
                int[] nodes = new int[addrs.length];
                java.util.Arrays.fill(nodes, 1);
                var res = m.migration().movePages(mm, addrs, nodes, MigrationService.MPOL_MF_MOVE);
                tag += " moved " + java.util.Arrays.toString(res.status());
                if (variant >= 2) {
                    write(c1, mm, md, VA + 17 * K4, 0x18);
                }
                mm.madvise(VA, H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                m.reclaim(1, 10_000);
                md.verifyAll(m.cpu(0), mm, f, tag);
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    // ------------------------------------------------------------------------------------------
    // COLLAPSE / khugepaged of PTE-mapped THPs
    // ------------------------------------------------------------------------------------------

    /**
     * collapse_huge_page / __collapse_huge_page_copy over a PTE-mapped THP shared with a fork
     * child (MADV_COLLAPSE in parent or child, or khugepaged), some pages COW-broken in the child
     * first: both keep their data through the collapse, later writes in either, and either's
     * exit; no leak.
     */
    @Test
    void collapseSharedWithChild() {
        for (int variant = 0; variant < 8; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 1, true);
            long free0 = m.freeFrames();
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Cpu c = m.cpu(0);
                Model pm = new Model(VA, VA, 512);
                AddressSpace child = mm.fork();
                Model cm = pm.copy();
                int cow = (variant & 2) != 0 ? 300 : 5;
                for (int p = 0; p < cow; p++) {
                    write(c, child, cm, VA + p * 1 * K4, 0xc100 + p);
                }
                write(c, mm, pm, VA + 400 * K4, 0x400); // COW-broken in the parent too
                AddressSpace who = (variant & 1) == 0 ? mm : child;
                int rc;
                if ((variant & 4) == 0) {
                    rc = who.madvise(VA, H, Advice.COLLAPSE);
                    tag += " rc " + rc;
                } else {
                    rc = m.khugepaged().scan(64);
                    tag += " khugepaged " + rc;
                }
                pm.verifyAll(c, mm, f, tag + " parent after collapse");
                cm.verifyAll(c, child, f, tag + " child after collapse");
                write(c, mm, pm, VA + 1 * K4, 0xa1);
                write(c, child, cm, VA + 2 * K4, 0xb2);
                write(c, mm, pm, VA + 450 * K4, 0xa450);
                write(c, child, cm, VA + 460 * K4, 0xb460);
                pm.verifyAll(c, mm, f, tag + " parent after writes");
                cm.verifyAll(c, child, f, tag + " child after writes");
                if ((variant & 1) == 0) {
                    child.close();
                    pm.verifyAll(c, mm, f, tag + " parent after child exit");
                } else {
                    mm.close();
                    cm.verifyAll(c, child, f, tag + " child after parent exit");
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * hpage_collapse_scan_pmd's max_ptes_shared (256) with folio_maybe_mapped_shared: a parent's
     * PTE-mapped THP whose folio the fork child still maps by its PMD is shared in all 512 pages,
     * so khugepaged must leave the range alone (SCAN_EXCEED_SHARED_PTE), while MADV_COLLAPSE takes
     * it; either way both keep their data and nothing leaks. Was a defect, fixed: KhugepagedImpl
     * counted a page shared only by its own PTE mapcount, missing the child's PMD mapping.
     */
    @Test
    void khugepagedRespectsMaxPtesSharedWhenTheChildMapsByPmd() {
        List<String> f = new ArrayList<>();
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        try {
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
            fill(m.cpu(0), mm, VA, H);
            AddressSpace child = mm.fork(); // copy_huge_pmd: the child maps the folio by its PMD
            assertThat(child.counters().anonHugePages()).isEqualTo(512);
            splitPmds(mm, VA, 1); // only the parent's PMD is split
            assertThat(mm.counters().anonHugePages()).isZero();
            Model pm = new Model(VA, VA, 512);
            Model cm = pm.copy();
            long alloc = vm(m, "thp_collapse_alloc");
            m.khugepaged().scan(64);
            if (vm(m, "thp_collapse_alloc") != alloc) {
                f.add("khugepaged collapsed a range whose 512 pages the child maps too (max_ptes_shared 256): "
                        + "thp_collapse_alloc +" + (vm(m, "thp_collapse_alloc") - alloc) + ", parent AnonHugePages "
                        + mm.counters().anonHugePages());
            }
            Cpu c = m.cpu(0);
            pm.verifyAll(c, mm, f, "parent");
            cm.verifyAll(c, child, f, "child");
            assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).isZero();
            pm.verifyAll(c, mm, f, "parent after MADV_COLLAPSE");
            cm.verifyAll(c, child, f, "child after MADV_COLLAPSE");
            write(c, child, cm, VA, 0x77);
            pm.verifyAll(c, mm, f, "parent after the child's write");
        } catch (Throwable t) {
            f.add(trace(t));
        }
        closeAndCheck(m, free0, -1, f, "maxPtesShared");
        assertThat(f).isEmpty();
    }

    /**
     * collapse_huge_page over a 2 MiB range holding the upper half of one PTE-mapped THP and the
     * lower half of the next (both moved by an unaligned mremap, move_ptes), the other halves still
     * mapped around it: they stay mapped with their data, each old THP is queued for deferred
     * split (deferred_split_folio), and munmap of everything frees everything.
     */
    @Test
    void collapseOfPagesFromTwoThpsPartlyMappedElsewhere() {
        for (int variant = 0; variant < 4; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 1, true);
            long free0 = m.freeFrames();
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 2);
                Cpu c = m.cpu(0);
                long base = OTHER + MIB;
                mm.mremap(VA, 2 * H, 2 * H, MOVE, base); // [OTHER+1M, OTHER+5M): [OTHER+2M, OTHER+4M) is A's upper, B's lower half
                Model md = new Model(base, VA, 1024);
                long deferred = vm(m, "thp_deferred_split_page");
                int rc = variant % 2 == 0 ? mm.madvise(OTHER + H, H, Advice.COLLAPSE) : m.khugepaged().scan(64);
                tag += " rc " + rc + " deferred +" + (vm(m, "thp_deferred_split_page") - deferred) + " AnonHuge "
                        + mm.counters().anonHugePages();
                if (variant % 2 == 0 && rc != 0) {
                    f.add(tag + ": MADV_COLLAPSE failed");
                }
                if (mm.counters().anonHugePages() != 512) {
                    f.add(tag + ": not collapsed");
                }
                if (vm(m, "thp_deferred_split_page") - deferred != 2) {
                    f.add(tag + ": both old THPs, partly mapped, should be queued for deferred split");
                }
                md.verifyAll(c, mm, f, tag + " after collapse");
                write(c, mm, md, base + 7 * K4, 0x7);
                write(c, mm, md, base + 300 * K4, 0x8);
                write(c, mm, md, base + 1000 * K4, 0x9);
                m.reclaim(0, 10_000); // the deferred split queue runs
                md.verifyAll(c, mm, f, tag + " after reclaim");
                if (variant >= 2) {
                    mm.munmap(base, 2 * H);
                    m.reclaim(0, 10);
                    if (mm.counters().anonPages() != 0) {
                        f.add(tag + ": anon pages after munmap of all: " + mm.counters().anonPages());
                    }
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * collapse_huge_page of a lazy-free PTE-mapped THP (written after FREE in part), then
     * madvise_cold_or_pageout_pte_range and shrink_folio_list: the new THP is swap-backed, so
     * nothing written is lost; partial munmap then exit frees all.
     */
    @Test
    void collapseOfLazyFreePteMappedThenPageout() {
        for (int variant = 0; variant < 4; variant++) {
            List<String> f = new ArrayList<>();
            boolean swap = variant >= 2;
            Machine m = machine(swap ? 8 * MIB : 0, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swap ? swapFree(m) : -1;
            String tag = "variant " + variant;
            try {
                AddressSpace mm = pteMapped(m, VA, 1);
                Cpu c = m.cpu(1);
                Model md = new Model(VA, VA, 512);
                mm.madvise(VA, H, Advice.FREE);
                md.free(VA, VA + H);
                write(c, mm, md, VA + 123 * K4, 0x123);
                int rc = variant % 2 == 0 ? mm.madvise(VA, H, Advice.COLLAPSE) : m.khugepaged().scan(64);
                tag += " rc " + rc;
                write(c, mm, md, VA + 124 * K4, 0x124);
                mm.madvise(VA, H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                m.reclaim(0, 10_000);
                md.verifyAll(m.cpu(0), mm, f, tag);
                mm.munmap(VA + 200 * K4, 10 * K4);
                m.reclaim(0, 10);
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, swap0, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * hpage_collapse_scan_pmd (Linux 6.18: "we treat a single page as shared if any part of the
     * THP is shared", folio_maybe_mapped_shared): a parent's PTE-mapped THP of which the fork
     * child still maps 212 pages (300 COW-broken) counts 512 shared pages, above max_ptes_shared,
     * so khugepaged leaves the parent's range alone. Data stays intact either way. Was a defect,
     * fixed: KhugepagedImpl counted 212 shared pages, by their own mapcounts.
     */
    @Test
    void khugepagedCountsEveryPageOfAPartlySharedThpAsShared() {
        List<String> f = new ArrayList<>();
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        try {
            AddressSpace mm = pteMapped(m, VA, 1);
            Cpu c = m.cpu(0);
            Model pm = new Model(VA, VA, 512);
            AddressSpace child = mm.fork();
            Model cm = pm.copy();
            for (int p = 0; p < 300; p++) {
                write(c, child, cm, VA + p * K4, 0xc100 + p);
            }
            child.madvise(VA, H, Advice.NOHUGEPAGE); // only the parent's range is a candidate
            long alloc = vm(m, "thp_collapse_alloc");
            m.khugepaged().scan(64);
            if (vm(m, "thp_collapse_alloc") != alloc) {
                f.add("khugepaged collapsed the parent's range, every page of whose THP folio_maybe_mapped_shared"
                        + " (the child maps 212 of them): thp_collapse_alloc +" + (vm(m, "thp_collapse_alloc") - alloc));
            }
            pm.verifyAll(c, mm, f, "parent");
            cm.verifyAll(c, child, f, "child");
        } catch (Throwable t) {
            f.add(trace(t));
        }
        closeAndCheck(m, free0, -1, f, "partlyShared");
        assertThat(f).isEmpty();
    }

    // ------------------------------------------------------------------------------------------
    // Notifiers that throw
    // ------------------------------------------------------------------------------------------

    /** Throws at the n-th call of any of its callbacks (counting from 1), and nowhere else. */
    static final class ThrowAt implements MmuNotifier {
        final AtomicInteger calls = new AtomicInteger();
        volatile int at;

        ThrowAt(int at) {
            this.at = at;
        }

        private void maybe(String where) {
            if (calls.incrementAndGet() == at) {
                throw new IllegalStateException("injected at call " + at + " (" + where + ")");
            }
        }

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            maybe("start " + range);
        }

        @Override
        public void invalidateRangeEnd(NotifierRange range) {
            maybe("end " + range);
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
            maybe("secondary");
        }

        @Override
        public boolean clearFlushYoung(AddressSpace addressSpace, long start, long end) {
            maybe("clearFlushYoung");
            return false;
        }

        @Override
        public boolean clearYoung(AddressSpace addressSpace, long start, long end) {
            maybe("clearYoung");
            return false;
        }
    }

    /**
     * madvise_free_pte_range / madvise_cold_or_pageout_pte_range / collapse_huge_page /
     * khugepaged over PTE-mapped THPs (one shared with a fork child, one partly moved by mremap),
     * with a notifier on both address spaces throwing at its n-th call, for every n: each call
     * fails or completes, invariants hold, no write after FREE is lost, the child's data is intact,
     * and everything is freed at the end.
     */
    @Test
    void notifierThrowingAtEveryCall() {
        assertTimeoutPreemptively(LIMIT, () -> {
            List<String> f = new ArrayList<>();
            for (int scenario = 0; scenario < 3 && f.isEmpty(); scenario++) {
                for (int n = 1; n <= 60 && f.isEmpty(); n++) {
                    String tag = "scenario " + scenario + " n " + n;
                    Machine m = machine(scenario == 2 ? 8 * MIB : 0, 1, false);
                    long free0 = m.freeFrames();
                    long swap0 = scenario == 2 ? swapFree(m) : -1;
                    AddressSpace mm = pteMapped(m, VA, 2);
                    Cpu c = m.cpu(0);
                    Model pm = new Model(VA, VA, 1024);
                    AddressSpace child = null;
                    Model cm = null;
                    if (scenario == 1) {
                        child = mm.fork();
                        cm = pm.copy();
                        write(c, child, cm, VA + H + 3 * K4, 0xc3);
                    }
                    ThrowAt notifier = new ThrowAt(n);
                    mm.registerNotifier(notifier);
                    if (child != null) {
                        child.registerNotifier(notifier);
                    }
                    int thrown = 0;
                    Object[][] ops = {
                        {Advice.FREE, VA, 2 * H}, {null, VA + 5 * K4, 0L}, {Advice.COLD, VA, H}, {Advice.PAGEOUT, VA, 2 * H},
                        {Advice.FREE, VA, H}, {null, VA + 6 * K4, 0L}, {Advice.COLLAPSE, VA, H}, {"khugepaged", 0L, 0L},
                        {Advice.FREE, VA, 2 * H}, {null, VA + H + 7 * K4, 0L}, {Advice.PAGEOUT, VA, 2 * H},
                        {"split", VA + H, 0L}, {Advice.COLLAPSE, VA + H, H},
                    };
                    int step = 0;
                    for (Object[] op : ops) {
                        step++;
                        long from = (Long) op[1];
                        long len = (Long) op[2];
                        try {
                            if (op[0] instanceof Advice a) {
                                if (a == Advice.FREE) {
                                    pm.free(from, from + len); // lenient: a failed FREE may have done part
                                }
                                mm.madvise(from, len, a);
                            } else if ("khugepaged".equals(op[0])) {
                                m.khugepaged().scan(64);
                            } else if ("split".equals(op[0])) {
                                splitPmds(mm, from, 1);
                            } else {
                                long v = 0x7700 + step;
                                try {
                                    write(c, mm, pm, from, v);
                                } catch (IllegalStateException e) {
                                    thrown++; // the notifier may throw on a fault's own invalidation
                                    int p = (int) ((from - VA) / K4);
                                    pm.lazy[p] = true;
                                    pm.expect[p] = v;
                                }
                            }
                        } catch (IllegalStateException e) {
                            thrown++;
                        } catch (Throwable t) {
                            f.add(tag + " step " + step + ": " + trace(t));
                        }
                        List<String> inv = m.checkInvariants();
                        if (!inv.isEmpty()) {
                            f.add(tag + " after step " + step + ": invariants " + inv);
                            break;
                        }
                    }
                    notifier.at = -1;
                    try {
                        m.reclaim(0, 10_000);
                        m.reclaim(0, 10_000);
                    } catch (Throwable t) {
                        f.add(tag + " reclaim: " + trace(t));
                    }
                    for (int p = 0; p < 1024 && f.size() < 5; p++) {
                        long got = read(c, mm, VA + p * K4);
                        String why = pm.check(p, got);
                        if (why != null && !(got == value(VA + p * K4) && pm.lazy[p])) {
                            f.add(tag + " (thrown " + thrown + ") parent: " + why);
                        }
                    }
                    if (child != null) {
                        cm.verifyAll(c, child, f, tag + " (thrown " + thrown + ") child");
                    }
                    closeAndCheck(m, free0, swap0, f, tag);
                    if (notifier.calls.get() < n) {
                        break; // every call of this scenario was tried
                    }
                }
            }
            assertThat(f).isEmpty();
        });
    }

    // ------------------------------------------------------------------------------------------
    // Concurrency
    // ------------------------------------------------------------------------------------------

    /**
     * madvise_free_pte_range / try_to_unmap_one (lazy-free batch of a PTE-mapped THP) /
     * collapse_huge_page racing CPU writes: writers store while another thread runs FREE, COLD,
     * PAGEOUT, COLLAPSE, khugepaged and PMD splits (mprotect to RWX and back, never read-only) over
     * whole PTE-mapped THPs. A write that began after the last FREE ended must survive; every
     * other word reads its last write or zero.
     */
    @Test
    void writersRacingFreePageoutAndCollapse() {
        assertTimeoutPreemptively(LIMIT, () -> {
            long seed = System.nanoTime();
            System.out.println("writersRacingFreePageoutAndCollapse seed " + seed);
            Random rnd = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 4 && f.isEmpty(); round++) {
                boolean swap = round % 2 == 1;
                boolean frees = round < 2;
                Machine m = machine(swap ? 16 * MIB : 0, 1, false);
                long free0 = m.freeFrames();
                long swap0 = swap ? swapFree(m) : -1;
                int hp = 3;
                int pages = hp * 512;
                AddressSpace mm = pteMapped(m, VA, hp);
                int writers = 2;
                long[][] last = new long[writers][pages];
                long[][] startedAt = new long[writers][pages];
                boolean[][] clean = new boolean[writers][pages];
                AtomicLong freesStarted = new AtomicLong();
                AtomicLong freesFinished = new AtomicLong();
                List<Throwable> errors = new CopyOnWriteArrayList<>();
                AtomicBoolean stop = new AtomicBoolean();
                List<Thread> threads = new ArrayList<>();
                long rseed = rnd.nextLong();
                for (int w = 0; w < writers; w++) {
                    int id = w;
                    long wseed = rseed + w;
                    threads.add(new Thread(() -> {
                        Random r = new Random(wseed);
                        Cpu c = m.cpu(id + 1);
                        c.switchTo(mm);
                        try {
                            for (int i = 0; i < 3000 && !stop.get(); i++) {
                                int p = r.nextInt(pages / writers) * writers + id;
                                long v = ((long) (id + 1) << 40) | (i + 1);
                                long fin = freesFinished.get();
                                long st = freesStarted.get();
                                c.store(VA + p * K4 + 8L * (id + 1), 8, v);
                                last[id][p] = v;
                                startedAt[id][p] = st;
                                clean[id][p] = fin == st;
                            }
                        } catch (Throwable t) {
                            errors.add(t);
                        }
                    }));
                }
                threads.add(new Thread(() -> {
                    Random r = new Random(rseed ^ 0x5555);
                    try {
                        for (int i = 0; i < 50 && !stop.get(); i++) {
                            int first = r.nextInt(hp);
                            long from = VA + first * H;
                            long len = (1 + r.nextInt(hp - first)) * H;
                            int op = r.nextInt(8);
                            if (!frees && op == 0 || i >= 35 && op == 0) {
                                op = 2; // no FREE in the last part
                            }
                            switch (op) {
                                case 0 -> {
                                    freesStarted.incrementAndGet();
                                    try {
                                        mm.madvise(from, len, Advice.FREE);
                                    } finally {
                                        freesFinished.incrementAndGet();
                                    }
                                }
                                case 1 -> mm.madvise(from, len, Advice.COLD);
                                case 2 -> mm.madvise(from, len, Advice.PAGEOUT);
                                case 3 -> mm.madvise(from, len, Advice.COLLAPSE);
                                case 4 -> m.khugepaged().scan(8);
                                case 5 -> m.reclaim(0, r.nextInt(3000));
                                default -> {
                                    long at = from + r.nextInt(512) * K4;
                                    mm.mprotect(at, K4, RWX); // splits the PMD; writes go on
                                    mm.mprotect(at, K4, Protection.READ_WRITE);
                                }
                            }
                        }
                    } catch (Throwable t) {
                        errors.add(t);
                    }
                }));
                threads.forEach(Thread::start);
                for (Thread t : threads) {
                    t.join();
                }
                String tag = "seed " + seed + " round " + round + " (" + rseed + ", swap " + swap + ", frees " + frees + ")";
                for (Throwable t : errors) {
                    f.add(tag + ": " + trace(t));
                }
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    f.add(tag + ": invariants " + inv);
                }
                long nfrees = freesStarted.get();
                Cpu c = m.cpu(0);
                c.switchTo(mm);
                int lost = 0;
                for (int w = 0; w < writers; w++) {
                    for (int p = 0; p < pages; p++) {
                        if (last[w][p] == 0) {
                            continue;
                        }
                        long v = c.load(VA + p * K4 + 8L * (w + 1), 8);
                        boolean must = clean[w][p] && startedAt[w][p] == nfrees;
                        if (v != last[w][p] && (must || v != 0)) {
                            if (lost++ < 5) {
                                f.add(tag + ": writer " + w + " page " + p + " reads 0x" + Long.toHexString(v) + " want 0x"
                                        + Long.toHexString(last[w][p]) + (must ? " (written after every FREE)" : " or 0"));
                            }
                        }
                    }
                }
                for (int p = 0; p < pages; p++) {
                    long v = c.load(VA + p * K4, 8);
                    if (v != 0 && v != value(VA + p * K4)) {
                        f.add(tag + ": page " + p + " word 0 reads 0x" + Long.toHexString(v));
                        break;
                    }
                }
                closeAndCheck(m, free0, swap0, f, tag);
            }
            assertThat(f).isEmpty();
        });
    }

    /**
     * collapse_huge_page and khugepaged over PTE-mapped THPs shared with a fork child, while CPU
     * threads write in the parent and the child (wp_page_copy racing the copy): no write lost in
     * either, the child never sees the parent's writes, and nothing leaks.
     */
    @Test
    void writersInParentAndChildRacingCollapse() {
        assertTimeoutPreemptively(LIMIT, () -> {
            long seed = System.nanoTime();
            System.out.println("writersInParentAndChildRacingCollapse seed " + seed);
            Random rnd = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 3 && f.isEmpty(); round++) {
                Machine m = machine(0, 2, false);
                long free0 = m.freeFrames();
                int hp = 2;
                int pages = hp * 512;
                AddressSpace mm = pteMapped(m, VA, hp);
                AddressSpace child = mm.fork();
                AddressSpace[] spaces = {mm, child};
                long[][] last = new long[2][pages];
                List<Throwable> errors = new CopyOnWriteArrayList<>();
                List<Thread> threads = new ArrayList<>();
                long rseed = rnd.nextLong();
                for (int w = 0; w < 2; w++) {
                    int id = w;
                    threads.add(new Thread(() -> {
                        Random r = new Random(rseed + id);
                        Cpu c = m.cpu(id + 1);
                        c.switchTo(spaces[id]);
                        try {
                            for (int i = 0; i < 2500; i++) {
                                int p = r.nextInt(pages);
                                long v = ((long) (id + 1) << 40) | (i + 1);
                                c.store(VA + p * K4 + 16, 8, v);
                                last[id][p] = v;
                            }
                        } catch (Throwable t) {
                            errors.add(t);
                        }
                    }));
                }
                threads.add(new Thread(() -> {
                    Random r = new Random(rseed ^ 0x3333);
                    try {
                        for (int i = 0; i < 40; i++) {
                            AddressSpace who = spaces[r.nextInt(2)];
                            long from = VA + r.nextInt(hp) * H;
                            switch (r.nextInt(5)) {
                                case 0, 1 -> who.madvise(from, H, Advice.COLLAPSE);
                                case 2 -> m.khugepaged().scan(8);
                                case 3 -> m.migration().movePages(who, new long[] {from, from + 300 * K4},
                                        new int[] {r.nextInt(2), r.nextInt(2)}, MigrationService.MPOL_MF_MOVE);
                                default -> {
                                    who.mprotect(from + r.nextInt(512) * K4, K4, RWX);
                                    who.mprotect(VA, hp * H, Protection.READ_WRITE);
                                }
                            }
                        }
                    } catch (Throwable t) {
                        errors.add(t);
                    }
                }));
                threads.forEach(Thread::start);
                for (Thread t : threads) {
                    t.join();
                }
                String tag = "seed " + seed + " round " + round + " (" + rseed + ")";
                for (Throwable t : errors) {
                    f.add(tag + ": " + trace(t));
                }
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    f.add(tag + ": invariants " + inv);
                }
                Cpu c = m.cpu(0);
                int bad = 0;
                for (int w = 0; w < 2; w++) {
                    c.switchTo(spaces[w]);
                    for (int p = 0; p < pages; p++) {
                        long v = c.load(VA + p * K4 + 16, 8);
                        long w0 = c.load(VA + p * K4, 8);
                        if (v != last[w][p] || w0 != value(VA + p * K4)) {
                            if (bad++ < 5) {
                                f.add(tag + ": " + (w == 0 ? "parent" : "child") + " page " + p + " reads 0x"
                                        + Long.toHexString(v) + " want 0x" + Long.toHexString(last[w][p]) + ", word 0 0x"
                                        + Long.toHexString(w0));
                            }
                        }
                    }
                }
                closeAndCheck(m, free0, -1, f, tag);
            }
            assertThat(f).isEmpty();
        });
    }
}
