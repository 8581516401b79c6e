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
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.PteFlag;
import org.vmcore.api.ThpMode;
import org.vmcore.impl.Fixtures;

/**
 * Hostile tests of MADV_FREE, MADV_COLD and MADV_PAGEOUT over transparent huge pages (MadviseThp)
 * and of reclaim of lazy-free huge pages, through the public API only. Each test names the Linux
 * function it follows. Randomised tests print their seed, and name it in every failure.
 *
 * <p>The data model: every 4 KiB page holds an expected word at its start; a page MADV_FREE
 * covered and not written since is "lazy": it may read its word or zero (then it is zero for
 * good). A page written after MADV_FREE must keep what was written, through PAGEOUT, reclaim,
 * swap, fork, mprotect, mremap and migration.
 */
@SuppressWarnings("try")
class Hostile21ThpMadviseTest {
    private static final Duration LIMIT = Duration.ofSeconds(40);

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

    private static AddressSpace huge(Machine m, long va, int hp) {
        AddressSpace mm = m.createAddressSpace(0);
        mm.mmap(va, hp * H, Protection.READ_WRITE, PRIV);
        fill(m.cpu(0), mm, va, hp * H);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512L * hp);
        return mm;
    }

    private static long vm(Machine m, String name) {
        return m.vmstat().get(name);
    }

    private static long swapFree(Machine m) {
        return m.stats().meminfo().get("SwapFree");
    }

    /** What each page of [base, base + pages * 4K) must read: its word, or zero too when lazy. */
    static final class Model {
        final long base;
        final long[] expect;
        final boolean[] lazy;

        Model(long base, int pages) {
            this.base = base;
            expect = new long[pages];
            lazy = new boolean[pages];
            for (int p = 0; p < pages; p++) {
                expect[p] = value(base + p * K4);
            }
        }

        Model copy() {
            Model c = new Model(base, expect.length);
            System.arraycopy(expect, 0, c.expect, 0, expect.length);
            System.arraycopy(lazy, 0, c.lazy, 0, lazy.length);
            return c;
        }

        void free(long from, long to) {
            for (long va = from; va < to; va += K4) {
                lazy[(int) ((va - base) / K4)] = true;
            }
        }

        void wrote(long va, long v) {
            int p = (int) ((va - base) / K4);
            expect[p] = v;
            lazy[p] = false;
        }

        /** Checks page p against what it reads; null if fine, else why. */
        String check(int p, long got) {
            if (got == expect[p]) {
                return null;
            }
            if (lazy[p] && got == 0) {
                expect[p] = 0;
                lazy[p] = false;
                return null;
            }
            return "page " + p + " (+0x" + Long.toHexString(p * K4) + ") reads 0x" + Long.toHexString(got) + ", want 0x"
                    + Long.toHexString(expect[p]) + (lazy[p] ? " or 0 (lazy)" : " (written after FREE or never freed)");
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
    // Deterministic cases
    // ------------------------------------------------------------------------------------------

    /**
     * madvise_free_huge_pmd then shrink_folio_list (lazy-free THP, dirty since): a write from
     * another CPU whose TLB held the 2 MiB translation dirty before MADV_FREE must set D again
     * (tlb_remove_pmd_tlb_entry), so PAGEOUT and reclaim keep it.
     */
    @Test
    void writeThroughAWarmTlbAfterFreeSurvivesPageout() {
        List<String> f = new ArrayList<>();
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = huge(m, VA, 1);
        Cpu c1 = m.cpu(1);
        c1.switchTo(mm);
        c1.store(VA + 7 * K4, 8, 0x1111); // cpu 1 caches the 2 MiB entry, dirty
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        c1.store(VA + 7 * K4, 8, 0x2222);
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        m.reclaim(0, 10_000);
        m.reclaim(0, 10_000);
        if (read(m.cpu(0), mm, VA + 7 * K4) != 0x2222) {
            f.add("write after FREE through a warm TLB lost: reads " + read(m.cpu(0), mm, VA + 7 * K4));
        }
        closeAndCheck(m, free0, -1, f, "warmTlb");
        assertThat(f).isEmpty();
    }

    /**
     * madvise_free_huge_pmd + madvise_cold_or_pageout_pte_range + shrink_folio_list: the counters of
     * a whole lazy-free THP dropped by PAGEOUT (thp_split_pmd 1, pglazyfreed 512), of a whole
     * non-lazy one split (thp_swpout_fallback 1), of a partial one split (no fallback), and RSS.
     */
    @Test
    void countersOfFreeAndPageout() {
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = huge(m, VA, 3);
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        assertThat(vm(m, "pglazyfree")).isEqualTo(512);
        long before = m.freeFrames();
        assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
        assertThat(vm(m, "pglazyfreed")).isEqualTo(512);
        assertThat(vm(m, "thp_split_pmd")).isEqualTo(1);
        assertThat(vm(m, "thp_split_page")).isZero();
        assertThat(m.freeFrames()).as("the folio and its deposited page table").isEqualTo(before + 513);
        assertThat(mm.counters().anonHugePages()).isEqualTo(1024);
        assertThat(mm.counters().anonPages()).isEqualTo(1024);
        // a whole THP that is not lazy free: split for swap, counted as a fallback, even with no swap
        assertThat(mm.madvise(VA + H, H, Advice.PAGEOUT)).isZero();
        assertThat(vm(m, "thp_swpout_fallback")).isEqualTo(1);
        assertThat(vm(m, "thp_split_page")).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(mm.counters().anonPages()).isEqualTo(1024);
        // partly covered: split_folio, no fallback
        assertThat(mm.madvise(VA + 2 * H + K4, K4, Advice.PAGEOUT)).isZero();
        assertThat(vm(m, "thp_swpout_fallback")).isEqualTo(1);
        assertThat(vm(m, "thp_split_page")).isEqualTo(2);
        assertThat(mm.counters().anonHugePages()).isZero();
        Cpu c = m.cpu(0);
        assertThat(read(c, mm, VA)).isZero();
        for (long off = H; off < 3 * H; off += K4) {
            assertThat(read(c, mm, VA + off)).as("+0x%x", off).isEqualTo(value(VA + off));
        }
        List<String> f = new ArrayList<>();
        closeAndCheck(m, free0, -1, f, "counters");
        assertThat(f).isEmpty();
    }

    /**
     * folio_mark_lazyfree: pglazyfree counts a folio only when it becomes lazy free (swap-backed
     * before); a second MADV_FREE of a clean lazy-free THP counts nothing more (Linux 6.18 on the
     * development machine: 512, then 0). Was a defect, fixed: MadviseThp.free counted 512 again.
     */
    @Test
    void secondFreeOfALazyFreeHugePageCountsNothing() {
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = huge(m, VA, 1);
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        assertThat(mm.madvise(VA, H, Advice.FREE)).isZero();
        long lazyfree = vm(m, "pglazyfree");
        List<String> f = new ArrayList<>();
        closeAndCheck(m, free0, -1, f, "doubleFree");
        assertThat(f).isEmpty();
        assertThat(lazyfree).as("pglazyfree after two MADV_FREE of one THP").isEqualTo(512);
    }

    /**
     * folio_mark_lazyfree for 4 KiB pages (madvise_free_pte_range): the same count, once per folio
     * (Linux 6.18: 16, then 0). Was a defect, fixed: LazyFree.markLazyFree counted them again.
     */
    @Test
    void secondFreeOfLazyFreeSmallPagesCountsNothing() {
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = huge(m, VA, 1);
        mm.madvise(VA + K4, K4, Advice.PAGEOUT); // split: 512 small pages
        assertThat(mm.counters().anonHugePages()).isZero();
        long base = vm(m, "pglazyfree");
        assertThat(mm.madvise(VA + 16 * K4, 16 * K4, Advice.FREE)).isZero();
        assertThat(mm.madvise(VA + 16 * K4, 16 * K4, Advice.FREE)).isZero();
        long lazyfree = vm(m, "pglazyfree") - base;
        List<String> f = new ArrayList<>();
        closeAndCheck(m, free0, -1, f, "doubleFree4k");
        assertThat(f).isEmpty();
        assertThat(lazyfree).as("pglazyfree after two MADV_FREE of 16 small pages").isEqualTo(16);
    }

    /**
     * madvise_free_huge_pmd, then a write, then split_folio by a partial MADV_PAGEOUT: the PMD's
     * dirty bit goes to the PTEs (remove_migration_pte), so the written page stays.
     */
    @Test
    void writtenLazyFreeHugePagePartlyPagedOutKeepsTheWrite() {
        for (int swap = 0; swap < 2; swap++) {
            Machine m = machine(swap == 0 ? 0 : 8 * MIB, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swapFree(m);
            AddressSpace mm = huge(m, VA, 1);
            Cpu c = m.cpu(0);
            mm.madvise(VA, H, Advice.FREE);
            c.store(VA + 300 * K4, 8, 0xabc);
            assertThat(mm.madvise(VA, H - K4, Advice.PAGEOUT)).isZero();
            m.reclaim(0, 10_000);
            m.reclaim(0, 10_000);
            List<String> f = new ArrayList<>();
            if (read(c, mm, VA + 300 * K4) != 0xabc) {
                f.add("swap " + swap + ": write lost, reads " + read(c, mm, VA + 300 * K4));
            }
            closeAndCheck(m, free0, swap0, f, "swap " + swap);
            assertThat(f).isEmpty();
        }
    }

    /**
     * madvise_free_huge_pmd + fork (copy_huge_pmd) + madvise_cold_or_pageout_pte_range: the shared
     * lazy-free THP is left alone by PAGEOUT in either; writes after FREE in parent or child, before
     * or after the fork, survive PAGEOUT and reclaim in both.
     */
    @Test
    void freeForkWriteThenPageoutAndReclaim() {
        for (int variant = 0; variant < 4; variant++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(variant >= 2 ? 8 * MIB : 0, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swapFree(m);
            AddressSpace mm = huge(m, VA, 1);
            Cpu c = m.cpu(0);
            Model pm = new Model(VA, 512);
            mm.madvise(VA, H, Advice.FREE);
            pm.free(VA, VA + H);
            c.switchTo(mm);
            c.store(VA + 5 * K4, 8, 0x55);
            pm.wrote(VA + 5 * K4, 0x55);
            AddressSpace child = mm.fork();
            Model cm = pm.copy();
            c.switchTo(child);
            c.store(VA + 9 * K4, 8, 0x99);
            cm.wrote(VA + 9 * K4, 0x99);
            c.switchTo(mm);
            c.store(VA + 11 * K4, 8, 0x1111);
            pm.wrote(VA + 11 * K4, 0x1111);
            long lazyfreed = vm(m, "pglazyfreed");
            AddressSpace first = variant % 2 == 0 ? mm : child;
            AddressSpace second = variant % 2 == 0 ? child : mm;
            first.madvise(VA, H, Advice.PAGEOUT);
            if (vm(m, "pglazyfreed") != lazyfreed && variant < 2) {
                // PAGEOUT of a THP shared with a relative leaves it alone (folio_maybe_mapped_shared)
                f.add("variant " + variant + ": PAGEOUT dropped pages of a shared THP: pglazyfreed " + lazyfreed
                        + " -> " + vm(m, "pglazyfreed"));
            }
            m.reclaim(0, 10_000);
            second.madvise(VA, H, Advice.PAGEOUT);
            m.reclaim(0, 10_000);
            m.reclaim(0, 10_000);
            pm.verifyAll(c, mm, f, "variant " + variant + " parent");
            cm.verifyAll(c, child, f, "variant " + variant + " child");
            child.close();
            m.reclaim(0, 10_000);
            pm.verifyAll(c, mm, f, "variant " + variant + " parent after the child's exit");
            closeAndCheck(m, free0, swap0, f, "variant " + variant);
            assertThat(f).isEmpty();
        }
    }

    /**
     * madvise_free_huge_pmd, then split by mprotect / partial munmap / unaligned mremap
     * (__split_huge_pmd), then madvise_cold_or_pageout_pte_range and shrink_folio_list on the
     * PTE-mapped lazy-free folio: writes since FREE survive, the unmapped part is freed.
     */
    @Test
    void freeThenReshapeThenPageout() {
        for (int how = 0; how < 4; how++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(how % 2 == 0 ? 0 : 8 * MIB, 1, true);
            long free0 = m.freeFrames();
            long swap0 = swapFree(m);
            AddressSpace mm = huge(m, VA, 2);
            Cpu c = m.cpu(0);
            mm.madvise(VA, 2 * H, Advice.FREE);
            c.switchTo(mm);
            c.store(VA + 3 * K4, 8, 0x33);
            c.store(VA + H + 200 * K4, 8, 0x44);
            long base = VA;
            String tag = "how " + how;
            try {
                switch (how) {
                    case 0 -> {
                        mm.mprotect(VA + 100 * K4, K4, Protection.READ);
                        mm.mprotect(VA + 100 * K4, K4, Protection.READ_WRITE);
                    }
                    case 1 -> mm.munmap(VA + 400 * K4, 16 * K4);
                    case 2 -> {
                        mm.mremap(VA, 2 * H, 2 * H, MOVE, OTHER + K4);
                        base = OTHER + K4;
                    }
                    default -> {
                        mm.mprotect(VA + H - K4, 2 * K4, Protection.READ); // straddles both THPs
                    }
                }
                mm.madvise(base, 2 * H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                mm.madvise(base, 2 * H, Advice.PAGEOUT);
                m.reclaim(0, 10_000);
                if (read(c, mm, base + 3 * K4) != 0x33) {
                    f.add(tag + ": write to THP 0 lost: " + read(c, mm, base + 3 * K4));
                }
                if (read(c, mm, base + H + 200 * K4) != 0x44) {
                    f.add(tag + ": write to THP 1 lost: " + read(c, mm, base + H + 200 * K4));
                }
                for (long off = 0; off < 2 * H; off += K4) {
                    long v = read(c, mm, base + off);
                    boolean hole = how == 1 && off >= 400 * K4 && off < 416 * K4;
                    if (hole ? v != -1 : v != 0 && v != value(VA + off) && v != 0x33 && v != 0x44) {
                        f.add(tag + ": +0x" + Long.toHexString(off) + " reads 0x" + Long.toHexString(v));
                        break;
                    }
                }
            } catch (Throwable t) {
                f.add(tag + ": " + trace(t));
            }
            closeAndCheck(m, free0, swap0, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * madvise_free_huge_pmd, migrate_pages (move_pages to another node keeps the lazy-free state
     * and the dirty bit through the migration entry), then madvise_cold_or_pageout_pte_range: a
     * write after FREE survives; a clean one may go; nothing leaks.
     */
    @Test
    void freeThenMigrateThenPageout() {
        for (int write = 0; write < 3; write++) {
            List<String> f = new ArrayList<>();
            Machine m = machine(0, 2, true);
            long free0 = m.freeFrames();
            AddressSpace mm = huge(m, VA, 1);
            Cpu c = m.cpu(0);
            Cpu c1 = m.cpu(1);
            c1.switchTo(mm);
            c1.load(VA, 8);
            mm.madvise(VA, H, Advice.FREE);
            if (write == 1) {
                c1.store(VA + 17 * K4, 8, 0x17); // before the migration
            }
            var res = m.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            if (write == 2) {
                c1.store(VA + 17 * K4, 8, 0x17); // after it
            }
            String tag = "write " + write + " moved " + res.status()[0];
            mm.madvise(VA, H, Advice.PAGEOUT);
            m.reclaim(0, 10_000);
            m.reclaim(1, 10_000);
            long v = read(c, mm, VA + 17 * K4);
            if (write > 0 && v != 0x17) {
                f.add(tag + ": write lost, reads " + v);
            }
            if (write == 0 && v != 0 && v != value(VA + 17 * K4)) {
                f.add(tag + ": reads " + v);
            }
            closeAndCheck(m, free0, -1, f, tag);
            assertThat(f).isEmpty();
        }
    }

    /**
     * madvise_free_huge_pmd, GUP pin (try_grab_folio), then madvise_cold_or_pageout_pte_range and
     * shrink_folio_list: a pinned clean lazy-free THP is not dropped (its data stays for the
     * pin's holder), and once unpinned goes with no leak.
     */
    @Test
    void pinnedLazyFreeHugePageIsNotDropped() {
        List<String> f = new ArrayList<>();
        Machine m = machine(0, 1, true);
        long free0 = m.freeFrames();
        AddressSpace mm = huge(m, VA, 1);
        Cpu c = m.cpu(0);
        mm.madvise(VA, H, Advice.FREE);
        try (PageReference ref = mm.getUserPageFast(VA + 3 * K4, false)) {
            long pfn = ref.pfn();
            mm.madvise(VA, H, Advice.PAGEOUT);
            m.reclaim(0, 10_000);
            m.reclaim(0, 10_000);
            if (mm.pageAt(VA + 3 * K4) != pfn) {
                f.add("pinned page no longer mapped at VA+3*4K: " + mm.pageAt(VA + 3 * K4) + " pin " + pfn);
            }
            long v = read(c, mm, VA + 3 * K4);
            if (v != value(VA + 3 * K4)) {
                f.add("pinned lazy-free page reads " + v);
            }
        }
        mm.madvise(VA, H, Advice.PAGEOUT);
        m.reclaim(0, 10_000);
        closeAndCheck(m, free0, -1, f, "pin");
        assertThat(f).isEmpty();
    }

    /**
     * madvise_cold_or_pageout_pte_range (MADV_COLD, whole: PMD old; partial: split_folio), then
     * shrink_folio_list with a swap device: every page survives the swap round trip, and
     * MADV_COLD never marks anything lazy free.
     */
    @Test
    void coldThenReclaimWithSwapKeepsData() {
        long seed = System.nanoTime();
        System.out.println("coldThenReclaimWithSwapKeepsData seed " + seed);
        Random r = new Random(seed);
        List<String> f = new ArrayList<>();
        Machine m = machine(16 * MIB, 1, true);
        long free0 = m.freeFrames();
        long swap0 = swapFree(m);
        AddressSpace mm = huge(m, VA, 3);
        Model model = new Model(VA, 3 * 512);
        Cpu c = m.cpu(0);
        try {
            assertThat(mm.madvise(VA, H, Advice.COLD)).isZero();
            assertThat(mm.pageTableView().entry(VA, PageTableLevel.PMD).orElseThrow().flags())
                    .contains(PteFlag.PSE).doesNotContain(PteFlag.ACCESSED);
            long from = VA + H + r.nextInt(512) * K4;
            long len = (1 + r.nextInt(700)) * K4;
            mm.madvise(from, len, Advice.COLD);
            for (int i = 0; i < 4; i++) {
                m.reclaim(0, 200 + r.nextInt(2000));
                int p = r.nextInt(3 * 512);
                long v = r.nextLong() | 1;
                c.switchTo(mm);
                c.store(VA + p * K4, 8, v);
                model.wrote(VA + p * K4, v);
                mm.madvise(VA + r.nextInt(3 * 512) * K4, (1 + r.nextInt(600)) * K4, Advice.COLD);
            }
            assertThat(vm(m, "pglazyfreed")).isZero();
            model.verifyAll(c, mm, f, "seed " + seed);
        } catch (Throwable t) {
            f.add("seed " + seed + ": " + trace(t));
        }
        closeAndCheck(m, free0, swap0, f, "seed " + seed);
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
     * madvise_free_huge_pmd / madvise_cold_or_pageout_pte_range / split_folio with an MMU notifier
     * that throws at its n-th call, for every n: the call fails or completes, the machine stays
     * consistent (invariants), no write after FREE is lost, and the machine closes with no leak.
     */
    @Test
    void notifierThrowingAtEveryCall() {
        assertTimeoutPreemptively(LIMIT, () -> {
            List<String> f = new ArrayList<>();
            Advice[] advs = {Advice.FREE, Advice.COLD, Advice.PAGEOUT};
            for (int scenario = 0; scenario < 4 && f.isEmpty(); scenario++) {
                for (int n = 1; n <= 40 && f.isEmpty(); n++) {
                    String tag = "scenario " + scenario + " n " + n;
                    Machine m = machine(scenario >= 2 ? 8 * MIB : 0, 1, false);
                    long free0 = m.freeFrames();
                    long swap0 = scenario >= 2 ? swapFree(m) : -1;
                    AddressSpace mm = huge(m, VA, 2);
                    Model model = new Model(VA, 1024);
                    Cpu c = m.cpu(0);
                    ThrowAt notifier = new ThrowAt(n);
                    mm.registerNotifier(notifier);
                    int thrown = 0;
                    // scenario 0, 2: whole THPs; 1, 3: partial ranges
                    long[][] ranges = scenario % 2 == 0
                            ? new long[][] {{VA, 2 * H}, {VA, H}, {VA + H, H}}
                            : new long[][] {{VA + 5 * K4, H}, {VA + K4, 3 * K4}, {VA + H + 100 * K4, 300 * K4}};
                    int step = 0;
                    for (Advice a : new Advice[] {Advice.FREE, Advice.COLD, Advice.PAGEOUT, Advice.FREE, Advice.PAGEOUT}) {
                        long[] rg = ranges[step++ % ranges.length];
                        try {
                            if (a == Advice.FREE) {
                                model.free(rg[0], rg[0] + rg[1]); // lenient: a failed FREE may have done part
                            }
                            mm.madvise(rg[0], rg[1], a);
                        } catch (IllegalStateException e) {
                            thrown++;
                        } catch (Throwable t) {
                            f.add(tag + " " + a + ": " + trace(t));
                        }
                        List<String> inv = m.checkInvariants();
                        if (!inv.isEmpty()) {
                            f.add(tag + " after " + a + ": invariants " + inv);
                            break;
                        }
                        // a write after FREE, which must survive everything that follows
                        long va = VA + (step * 97 % 1024) * K4;
                        long v = 0x7700 + step;
                        try {
                            c.switchTo(mm);
                            c.store(va, 8, v);
                            model.wrote(va, v);
                        } catch (IllegalStateException e) {
                            thrown++; // the notifier may throw on a fault's own invalidation
                            model.lazy[(int) ((va - VA) / K4)] = true;
                            model.expect[(int) ((va - VA) / K4)] = v; // either it went in or the old value
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
                        String why = model.check(p, got);
                        if (why != null && !(got == value(VA + p * K4) && model.lazy[p])) {
                            f.add(tag + " (thrown " + thrown + "): " + why);
                        }
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

    /**
     * madvise_cold_or_pageout_pte_range with a notifier that refuses the range start: state
     * unchanged by a refused PAGEOUT or FREE of whole THPs (Fixtures.state before and after).
     */
    @Test
    void refusedStartLeavesStateUnchanged() {
        for (Advice a : new Advice[] {Advice.FREE, Advice.PAGEOUT}) { // MADV_COLD opens no notifier range in Linux
            Machine m = machine(0, 1, true);
            long free0 = m.freeFrames();
            AddressSpace mm = huge(m, VA, 2);
            if (a == Advice.PAGEOUT) {
                mm.madvise(VA, H, Advice.FREE);
            }
            AtomicBoolean refuse = new AtomicBoolean(true);
            mm.registerNotifier(new MmuNotifier() {
                @Override
                public void invalidateRangeStart(NotifierRange range) {
                    if (refuse.get()) {
                        throw new IllegalStateException("busy");
                    }
                }
            });
            String before = Fixtures.state(m);
            long lazyfree = vm(m, "pglazyfree");
            Throwable thrown = null;
            try {
                mm.madvise(VA, 2 * H, a);
            } catch (Throwable t) {
                thrown = t;
            }
            List<String> f = new ArrayList<>();
            if (thrown == null) {
                f.add(a + ": no exception");
            }
            String after = Fixtures.state(m);
            if (!after.equals(before)) {
                f.add(a + ": state changed by a refused call:\nBEFORE\n" + before + "\nAFTER\n" + after);
            }
            if (vm(m, "pglazyfree") != lazyfree) {
                f.add(a + ": pglazyfree changed by a refused call");
            }
            refuse.set(false);
            closeAndCheck(m, free0, -1, f, a.toString());
            assertThat(f).isEmpty();
        }
    }

    // ------------------------------------------------------------------------------------------
    // Randomised sequences
    // ------------------------------------------------------------------------------------------

    /**
     * madvise_free_huge_pmd / madvise_cold_or_pageout_pte_range / shrink_folio_list /
     * copy_huge_pmd / __split_huge_pmd / migrate_pages / collapse_huge_page, in random order
     * over 3 THPs, with and without swap, a fork midway: no write after FREE lost, no page read
     * that was never written, invariants after every operation, no leak.
     */
    @Test
    void randomSequences() {
        assertTimeoutPreemptively(LIMIT, () -> {
            long seed = System.nanoTime();
            System.out.println("randomSequences seed " + seed);
            Random rnd = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 4 && f.isEmpty(); round++) {
                long rseed = rnd.nextLong();
                Random r = new Random(rseed);
                boolean swap = r.nextBoolean();
                String tag = "seed " + seed + " round " + round + " (" + rseed + ", swap " + swap + ")";
                Machine m = machine(swap ? 16 * MIB : 0, 2, true);
                long free0 = m.freeFrames();
                long swap0 = swap ? swapFree(m) : -1;
                int hp = 3;
                int pages = hp * 512;
                AddressSpace mm = huge(m, VA, hp);
                AddressSpace child = null;
                Model pm = new Model(VA, pages);
                Model cm = null;
                List<String> log = new ArrayList<>();
                try {
                    for (int i = 0; i < 40 && f.isEmpty(); i++) {
                        boolean inChild = child != null && r.nextInt(3) == 0;
                        AddressSpace who = inChild ? child : mm;
                        Model md = inChild ? cm : pm;
                        Cpu c = m.cpu(r.nextInt(3));
                        long from;
                        long len;
                        if (r.nextBoolean()) {
                            from = VA + r.nextInt(hp) * H;
                            len = (1 + r.nextInt(hp - (int) ((from - VA) / H))) * H;
                        } else {
                            from = VA + r.nextInt(pages) * K4;
                            len = Math.min((1 + r.nextInt(700)) * K4, VA + hp * H - from);
                        }
                        int op = r.nextInt(13);
                        String what = (inChild ? "child " : "") + op + " [0x" + Long.toHexString(from - VA) + ", +0x"
                                + Long.toHexString(len) + ")";
                        log.add(what);
                        switch (op) {
                            case 0, 1 -> {
                                who.madvise(from, len, Advice.FREE);
                                md.free(from, from + len);
                            }
                            case 2, 3 -> who.madvise(from, len, Advice.PAGEOUT);
                            case 4 -> who.madvise(from, len, Advice.COLD);
                            case 5 -> m.reclaim(0, r.nextInt(3000));
                            case 6, 7 -> {
                                for (int k = 0; k < 4; k++) {
                                    long va = VA + r.nextInt(pages) * K4;
                                    long v = r.nextLong() | 1;
                                    c.switchTo(who);
                                    c.store(va, 8, v);
                                    md.wrote(va, v);
                                }
                            }
                            case 8 -> {
                                if (child == null) {
                                    child = mm.fork();
                                    cm = pm.copy();
                                } else {
                                    who.madvise(from, len, Advice.COLLAPSE);
                                }
                            }
                            case 9 -> {
                                who.mprotect(from, len, Protection.READ);
                                who.mprotect(from, len, Protection.READ_WRITE);
                            }
                            case 10 -> m.migration().movePages(who, new long[] {from, from + len - K4},
                                    new int[] {r.nextInt(2), r.nextInt(2)}, MigrationService.MPOL_MF_MOVE);
                            case 11 -> m.khugepaged().scan(4);
                            default -> {
                                for (int k = 0; k < 8; k++) {
                                    int p = r.nextInt(pages);
                                    String why = md.check(p, read(c, who, VA + p * K4));
                                    if (why != null) {
                                        f.add(tag + " step " + i + (inChild ? " child" : "") + ": " + why + "\n  log " + log);
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    if (f.isEmpty()) {
                        m.reclaim(0, 10_000);
                        mm.madvise(VA, hp * H, Advice.PAGEOUT);
                        if (child != null) {
                            child.madvise(VA, hp * H, Advice.PAGEOUT);
                        }
                        m.reclaim(0, 10_000);
                        m.reclaim(1, 10_000);
                        pm.verifyAll(m.cpu(0), mm, f, tag + " parent, log " + log);
                        if (child != null) {
                            cm.verifyAll(m.cpu(0), child, f, tag + " child, log " + log);
                        }
                    }
                } catch (Throwable t) {
                    f.add(tag + ": " + trace(t) + "\n  log " + log);
                }
                closeAndCheck(m, free0, swap0, f, tag);
            }
            assertThat(f).isEmpty();
        });
    }

    // ------------------------------------------------------------------------------------------
    // Concurrency
    // ------------------------------------------------------------------------------------------

    /**
     * madvise_free_huge_pmd racing writes (the PMD's dirty bit, set by the MMU, against the
     * clearing of madvise_free_huge_pmd and the get-and-clear of try_to_unmap's discard of a
     * lazy-free THP): CPU threads write while another thread runs FREE, then PAGEOUT, COLD and
     * reclaim. A write that began after the last FREE ended must survive; pages read either their
     * last write, their fill value, or zero.
     */
    @Test
    void writersRacingFreeAndPageout() {
        assertTimeoutPreemptively(LIMIT, () -> {
            long seed = System.nanoTime();
            System.out.println("writersRacingFreeAndPageout seed " + seed);
            Random rnd = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 3 && f.isEmpty(); round++) {
                boolean swap = round == 1;
                Machine m = machine(swap ? 16 * MIB : 0, 1, false);
                long free0 = m.freeFrames();
                long swap0 = swap ? swapFree(m) : -1;
                int hp = 3;
                int pages = hp * 512;
                AddressSpace mm = huge(m, VA, hp);
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
                            for (int i = 0; i < 4000 && !stop.get(); i++) {
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
                        for (int i = 0; i < 60 && !stop.get(); i++) {
                            long from = r.nextBoolean() ? VA + r.nextInt(hp) * H : VA + r.nextInt(pages) * K4;
                            long len = Math.min(r.nextBoolean() ? H : (1 + r.nextInt(600)) * K4, VA + hp * H - from);
                            int op = i < 30 ? r.nextInt(5) : 1 + r.nextInt(4); // no FREE in the second half
                            switch (op) {
                                case 0 -> {
                                    freesStarted.incrementAndGet();
                                    try {
                                        mm.madvise(from, len, Advice.FREE);
                                    } finally {
                                        freesFinished.incrementAndGet();
                                    }
                                }
                                case 1 -> mm.madvise(from, len, Advice.PAGEOUT);
                                case 2 -> mm.madvise(from, len, Advice.COLD);
                                default -> m.reclaim(0, r.nextInt(3000));
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
                String tag = "seed " + seed + " round " + round + " (" + rseed + ", swap " + swap + ")";
                for (Throwable t : errors) {
                    f.add(tag + ": " + trace(t));
                }
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    f.add(tag + ": invariants " + inv);
                }
                long frees = freesStarted.get();
                Cpu c = m.cpu(0);
                c.switchTo(mm);
                int lost = 0;
                for (int w = 0; w < writers; w++) {
                    for (int p = 0; p < pages; p++) {
                        if (last[w][p] == 0) {
                            continue;
                        }
                        long v = c.load(VA + p * K4 + 8L * (w + 1), 8);
                        boolean must = clean[w][p] && startedAt[w][p] == frees;
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
}
