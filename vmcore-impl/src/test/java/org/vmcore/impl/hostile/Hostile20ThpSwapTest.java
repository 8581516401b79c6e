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
import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageReference;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmException;

/**
 * Hostile tests of reclaim and MADV_PAGEOUT over transparent huge pages (split_huge_page before
 * swap-out, the deferred split shrinker before reclaim and on a failed 4 KiB allocation), through
 * the public API only: fork trees, partial munmap, unaligned mremap, PROT_NONE pieces, MAP_LOCKED,
 * GUP references, the huge zero page, small swap devices, notifiers that throw or call back,
 * CPU threads writing while another thread reclaims and collapses, memory pressure and fault
 * injection. Randomised tests print their seed. Each defect found is kept as a failing test named
 * {@code defect*}.
 */
@SuppressWarnings("try")
class Hostile20ThpSwapTest {
    static final long SWAP_PAGES = 4096;

    static Machine machine(ThpMode mode, long swapPages) {
        Machine.Builder b = Machine.builder().node(1L << 30).cpus(4).thp(mode).detectStaleTranslations(true);
        if (swapPages > 0) {
            b.swap((swapPages + 1) * K4);
        }
        return b.build();
    }

    static Machine machine() {
        return machine(ThpMode.ALWAYS, SWAP_PAGES);
    }

    static AddressSpace huge(Machine m) {
        AddressSpace mm = m.createAddressSpace(0);
        mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
        fill(m.cpu(0), mm, VA, H);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        return mm;
    }

    static long swapFree(Machine m) {
        return m.stats().meminfo().get("SwapFree");
    }

    /** [base, base+H) reads the values written at [VA, VA+H), except pages in [from, to) reading {@code dropped}. */
    static void data(Machine m, AddressSpace mm, long base, long from, long to, long dropped, List<String> f, String tag) {
        Cpu c = m.cpu(0);
        for (long off = 0; off < H; off += K4) {
            long at = base + off;
            long v = read(c, mm, at);
            long want = at >= from && at < to ? dropped : value(VA + off);
            if (v != want) {
                f.add(tag + String.format(": page 0x%x reads 0x%x, want 0x%x", at, v, want));
                return;
            }
        }
    }

    /** VmSwap + RssAnon of mm cover [VA, VA+len) exactly once, and AnonHugePages is at most RssAnon. */
    static void counters(AddressSpace mm, long pages, List<String> f, String tag) {
        long rss = mm.counters().anonPages();
        long swap = mm.counters().swapPages();
        long ahp = mm.counters().anonHugePages();
        if (rss + swap != pages || ahp > rss || ahp % 512 != 0) {
            f.add(tag + ": RssAnon " + rss + " VmSwap " + swap + " AnonHugePages " + ahp + ", want RssAnon+VmSwap = " + pages);
        }
    }

    static void closeAndCheck(Machine m, long freeAtStart, long swapAtStart, List<String> f, String tag) {
        try {
            if (isOpen(m)) {
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    f.add(tag + ": invariants " + inv);
                }
                if (m.staleAccessCount() != 0) {
                    f.add(tag + ": stale accesses " + m.staleAccesses());
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
                    f.add(tag + ": free frames " + free + " after close, " + freeAtStart + " at start");
                }
                if (swapFree(m) != swapAtStart) {
                    f.add(tag + ": SwapFree " + swapFree(m) + " kB after close, " + swapAtStart + " at start");
                }
                long cached = m.stats().meminfo().get("SwapCached");
                if (cached != 0) {
                    f.add(tag + ": SwapCached " + cached + " after close");
                }
            }
        } catch (Throwable t) {
            f.add(tag + ": after: " + trace(t));
        } finally {
            m.close();
            if (m.offHeapBytes() != 0) {
                f.add(tag + ": offHeapBytes " + m.offHeapBytes());
            }
        }
    }

    static boolean onlyCallbackFailures(Throwable t) {
        if (t == null) {
            return true;
        }
        if (!(t instanceof VmException) && !(t instanceof IllegalStateException)) {
            return false;
        }
        for (Throwable s : t.getSuppressed()) {
            if (!onlyCallbackFailures(s)) {
                return false;
            }
        }
        return t.getCause() == null || t.getCause() == t || onlyCallbackFailures(t.getCause());
    }

    // ---------------------------------------------------------------- basic round trips

    @Test
    void reclaimSplitsAndSwapsAPmdMappedHugePageAndFaultsBringItBack() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (ThpMode mode : new ThpMode[] {ThpMode.ALWAYS, ThpMode.MADVISE}) {
                Machine m = machine(mode, SWAP_PAGES);
                long free = m.freeFrames();
                long swap = swapFree(m);
                AddressSpace mm = m.createAddressSpace(0);
                mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
                if (mode == ThpMode.MADVISE) {
                    mm.madvise(VA, H, Advice.HUGEPAGE);
                }
                fill(m.cpu(0), mm, VA, H);
                assertThat(mm.counters().anonHugePages()).isEqualTo(512);
                long got = m.reclaim(0, 512);
                List<String> f = new ArrayList<>();
                assertThat(got).as(mode + " reclaimed").isEqualTo(512);
                assertThat(mm.counters().anonHugePages()).isZero();
                assertThat(mm.counters().swapPages()).isEqualTo(512);
                assertThat(mm.counters().anonPages()).isZero();
                assertThat(swapFree(m)).isEqualTo(swap - 512 * 4);
                assertThat(m.checkInvariants()).isEmpty();
                data(m, mm, VA, 0, 0, 0, f, mode + " after swap-in");
                counters(mm, 512, f, mode.toString());
                assertThat(mm.counters().swapPages()).isZero();
                closeAndCheck(m, free, swap, f, mode.toString());
                assertThat(f).isEmpty();
            }
        });
    }

    @Test
    void pageoutOfWholeAndPartialHugePages() {
        assertTimeoutPreemptively(WAIT, () -> {
            for (ThpMode mode : new ThpMode[] {ThpMode.ALWAYS, ThpMode.MADVISE}) {
                Machine m = machine(mode, SWAP_PAGES);
                long free = m.freeFrames();
                long swap = swapFree(m);
                AddressSpace mm = m.createAddressSpace(0);
                mm.mmap(VA, 2 * H, Protection.READ_WRITE, PRIV);
                if (mode == ThpMode.MADVISE) {
                    mm.madvise(VA, 2 * H, Advice.HUGEPAGE);
                }
                fill(m.cpu(0), mm, VA, 2 * H);
                assertThat(mm.counters().anonHugePages()).isEqualTo(1024);
                // one page of the first: only it goes, the huge page is split
                assertThat(mm.madvise(VA + 5 * K4, K4, Advice.PAGEOUT)).isZero();
                assertThat(mm.counters().swapPages()).as(mode + " one page").isEqualTo(1);
                assertThat(mm.counters().anonHugePages()).isEqualTo(512);
                assertThat(mm.counters().anonPages()).isEqualTo(1023);
                // the whole second one
                assertThat(mm.madvise(VA + H, H, Advice.PAGEOUT)).isZero();
                assertThat(mm.counters().swapPages()).isEqualTo(513);
                assertThat(mm.counters().anonHugePages()).isZero();
                assertThat(m.checkInvariants()).isEmpty();
                List<String> f = new ArrayList<>();
                data(m, mm, VA, 0, 0, 0, f, "first");
                Cpu c = m.cpu(0);
                for (long off = 0; off < H; off += K4) {
                    if (read(c, mm, VA + H + off) != value(VA + H + off)) {
                        f.add("second at " + off);
                        break;
                    }
                }
                counters(mm, 1024, f, mode.toString());
                closeAndCheck(m, free, swap, f, mode.toString());
                assertThat(f).isEmpty();
            }
        });
    }

    /** A fork tree: PMD in parent and child, a COW copy of one page in the grandchild; reclaim swaps it all, each reads its own. */
    @Test
    void forkTreeReclaimAndPageout() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            AddressSpace b = a.fork();
            Cpu c = m.cpu(0);
            c.switchTo(b);
            c.store(VA + 7 * K4, 8, 77);
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            assertThat(a.counters().anonHugePages()).isEqualTo(512);
            long got = m.reclaim(0, 10_000);
            assertThat(got).isEqualTo(513);
            List<String> f = new ArrayList<>();
            for (AddressSpace s : List.of(mm, a, b)) {
                counters(s, 512, f, "s" + s.id());
                if (s.counters().swapPages() != 512) {
                    f.add("mm" + s.id() + " VmSwap " + s.counters().swapPages());
                }
            }
            assertThat(m.checkInvariants()).isEmpty();
            data(m, a, VA, 0, 0, 0, f, "a");
            data(m, b, VA, VA + 7 * K4, VA + 8 * K4, 77, f, "b");
            data(m, mm, VA, 0, 0, 0, f, "mm");
            // writes after swap-in COW per page
            c.switchTo(a);
            c.store(VA + 9 * K4, 8, 99);
            data(m, mm, VA, 0, 0, 0, f, "mm after a's write");
            assertThat(read(c, a, VA + 9 * K4)).isEqualTo(99);
            assertThat(read(c, b, VA + 9 * K4)).isEqualTo(value(VA + 9 * K4));
            // reclaim everything again, close in a random order
            m.reclaim(0, 10_000);
            m.reclaim(0, 10_000);
            assertThat(m.checkInvariants()).isEmpty();
            data(m, b, VA, VA + 7 * K4, VA + 8 * K4, 77, f, "b again");
            mm.close();
            data(m, a, VA, VA + 9 * K4, VA + 10 * K4, 99, f, "a after mm closed");
            closeAndCheck(m, free, swap, f, "fork tree");
            assertThat(f).isEmpty();
        });
    }

    /** PAGEOUT in a child after fork whose parent already COW-broke every page: the child's huge page is its own. */
    @Test
    void pageoutInAChildWhoseParentSplitByWriting() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            AddressSpace child = mm.fork();
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            for (long off = 0; off < H; off += K4) {
                c.store(VA + off + 8, 8, 1); // every page copied: the huge page is the child's only
            }
            List<String> f = new ArrayList<>();
            child.madvise(VA, H, Advice.PAGEOUT);
            f.add(child.counters().swapPages() == 512 ? null : "child VmSwap " + child.counters().swapPages());
            f.removeIf(s -> s == null);
            data(m, child, VA, 0, 0, 0, f, "child");
            counters(child, 512, f, "child");
            counters(mm, 512, f, "parent");
            closeAndCheck(m, free, swap, f, "child pageout");
            assertThat(f).isEmpty();
        });
    }

    // ---------------------------------------------------------------- partial, mremap, PROT_NONE

    @Test
    void reclaimRunsTheDeferredSplitOfPartlyUnmappedHugePages() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            mm.munmap(VA + 256 * K4, 256 * K4);
            long before = m.freeFrames();
            assertThat(m.reclaim(0, 0)).isZero();
            assertThat(m.freeFrames()).as("the 256 unmapped pages come back").isGreaterThanOrEqualTo(before + 256);
            assertThat(mm.counters().anonPages()).isEqualTo(256);
            assertThat(mm.counters().anonHugePages()).isZero();
            List<String> f = new ArrayList<>();
            assertThat(m.reclaim(0, 1000)).isEqualTo(256);
            data(m, mm, VA, VA + 256 * K4, VA + H, -1, f, "half");
            counters(mm, 256, f, "half");
            closeAndCheck(m, free, swap, f, "half");
            assertThat(f).isEmpty();
        });
    }

    @Test
    void unalignedMremapProtNoneAndMlockedPieces() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            AddressSpace child = mm.fork(); // PMD-mapped in the child
            assertThat(mm.mremap(VA, H, H, MOVE, OTHER + K4)).isEqualTo(OTHER + K4);
            mm.mprotect(OTHER + K4 + 100 * K4, 50 * K4, Protection.NONE);
            long got = m.reclaim(0, 10_000);
            assertThat(got).isEqualTo(512);
            List<String> f = new ArrayList<>();
            counters(mm, 512, f, "moved");
            counters(child, 512, f, "child");
            mm.mprotect(OTHER + K4 + 100 * K4, 50 * K4, Protection.READ_WRITE);
            data(m, mm, OTHER + K4, 0, 0, 0, f, "moved");
            data(m, child, VA, 0, 0, 0, f, "child");
            assertThat(m.checkInvariants()).isEmpty();
            closeAndCheck(m, free, swap, f, "mremap");
            assertThat(f).isEmpty();
        });
    }

    @Test
    void pageoutOverProtNonePieceAndUnalignedRange() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            mm.mprotect(VA + 10 * K4, 10 * K4, Protection.NONE); // the PMD is split: pieces in three VMAs
            assertThat(mm.madvise(VA + 5 * K4, 30 * K4, Advice.PAGEOUT)).isZero();
            List<String> f = new ArrayList<>();
            if (mm.counters().swapPages() != 30) {
                f.add("VmSwap " + mm.counters().swapPages() + " after PAGEOUT of 30 pages");
            }
            counters(mm, 512, f, "pageout");
            mm.mprotect(VA + 10 * K4, 10 * K4, Protection.READ_WRITE);
            data(m, mm, VA, 0, 0, 0, f, "pageout");
            closeAndCheck(m, free, swap, f, "prot none");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed: an mlocked (MAP_LOCKED) huge page is split by reclaim (AnonHugePages 512 -> 0),
     * though none of its pages can then be swapped (try_to_unmap_one stops at VM_LOCKED). In Linux
     * mlocked folios sit on the unevictable LRU and never reach shrink_folio_list's split. Suspected
     * cause: Reclaim.shrinkNode calls splits.split(at) for any LARGE_RMAPPABLE block without the
     * candidate()/SKIP checks, and no page ever carries FrameFlags.MLOCKED (nothing sets it), so
     * neither the split path nor the SKIP mask sees the VM_LOCKED mapping.
     */
    @Test
    void mlockedHugePageIsSplitByReclaim() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, H, Protection.READ_WRITE, PRIV | MapFlags.MAP_LOCKED);
            fill(m.cpu(0), mm, VA, H);
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            long got = m.reclaim(0, 10_000);
            List<String> f = new ArrayList<>();
            if (got != 0 || mm.counters().swapPages() != 0) {
                f.add("reclaimed " + got + ", VmSwap " + mm.counters().swapPages());
            }
            if (mm.counters().anonHugePages() != 512) {
                f.add("AnonHugePages " + mm.counters().anonHugePages() + " after reclaim: the mlocked huge page was split");
            }
            data(m, mm, VA, 0, 0, 0, f, "mlocked");
            closeAndCheck(m, free, swap, f, "mlocked");
            assertThat(f).isEmpty();
        });
    }

    /** A GUP reference: the split is refused, the huge page stays whole and mapped; after the put, reclaim takes it. */
    @Test
    void gupReferenceStopsTheSplit() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            PageReference ref = mm.getUserPageFast(VA + 33 * K4, true);
            assertThat(ref).as("GUP of a PMD-mapped huge page").isNotNull();
            long got = m.reclaim(0, 10_000);
            assertThat(mm.counters().anonHugePages()).as("AnonHugePages after reclaim, " + got + " reclaimed, refcount "
                    + m.page(mm.pageAt(VA)).refcount()).isEqualTo(512);
            assertThat(got).isZero();
            assertThat(mm.counters().swapPages()).isZero();
            assertThat(m.checkInvariants()).isEmpty();
            ref.close();
            assertThat(m.reclaim(0, 10_000)).isEqualTo(512);
            List<String> f = new ArrayList<>();
            data(m, mm, VA, 0, 0, 0, f, "gup");
            closeAndCheck(m, free, swap, f, "gup");
            assertThat(f).isEmpty();
        });
    }

    @Test
    void hugeZeroPageIsNeverReclaimed() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, 2 * H, Protection.READ_WRITE, PRIV);
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            assertThat(c.load(VA, 8)).isZero();
            assertThat(c.load(VA + H + 8 * K4, 8)).isZero();
            AddressSpace child = mm.fork();
            assertThat(m.reclaim(0, 10_000)).isZero();
            c.store(VA + 3 * K4, 8, 3);
            assertThat(mm.counters().anonHugePages()).as("do_huge_zero_wp_pmd").isEqualTo(512);
            assertThat(m.reclaim(0, 10_000)).isEqualTo(512);
            assertThat(mm.madvise(VA, 2 * H, Advice.PAGEOUT)).isZero();
            assertThat(mm.counters().swapPages()).isEqualTo(512); // swapped already; the zero page is passed by
            List<String> f = new ArrayList<>();
            assertThat(read(c, mm, VA + 3 * K4)).isEqualTo(3);
            assertThat(read(c, child, VA + 3 * K4)).isZero();
            assertThat(read(c, mm, VA + H + 3 * K4)).isZero();
            closeAndCheck(m, free, swap, f, "zero");
            assertThat(f).isEmpty();
        });
    }

    // ---------------------------------------------------------------- small devices

    /** A device of 100 slots: the split happens, 100 pages go, the others stay mapped as 4 KiB pages. */
    @Test
    void swapDeviceFullMidSplit() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine(ThpMode.ALWAYS, 100);
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            AddressSpace child = mm.fork();
            long got = m.reclaim(0, 10_000);
            assertThat(got).isEqualTo(100);
            assertThat(swapFree(m)).isZero();
            List<String> f = new ArrayList<>();
            counters(mm, 512, f, "parent");
            counters(child, 512, f, "child");
            assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
            assertThat(m.checkInvariants()).isEmpty();
            data(m, child, VA, 0, 0, 0, f, "child");
            data(m, mm, VA, 0, 0, 0, f, "parent");
            // a second huge page on a full device
            AddressSpace other = m.createAddressSpace(0);
            other.mmap(VA, H, Protection.READ_WRITE, PRIV);
            fill(m.cpu(0), other, VA, H);
            m.reclaim(0, 10_000);
            data(m, other, VA, 0, 0, 0, f, "other");
            closeAndCheck(m, free, swap, f, "full");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed: with the swap device full (or none at all), reclaim can swap nothing, yet it splits
     * the first huge page its scan meets (AnonHugePages 512 -> 0, reclaim returns 0). Linux's
     * get_scan_count does not scan the anonymous LRU when no swap space is left
     * (can_reclaim_anon_pages / get_nr_swap_pages() == 0), so no huge page is split for nothing.
     * Suspected cause: Reclaim.shrinkNode splits before knowing a slot is available (SwapOut's
     * FULL comes only from the first 4 KiB page after the split); Reclaim.reclaim does not check
     * the device (enabled / free slots) before the scan.
     */
    @Test
    void reclaimWithFullSwapDeviceSplitsAHugePageForNothing() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine(ThpMode.ALWAYS, 16);
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace small = m.createAddressSpace(0);
            small.mmap(OTHER, 16 * K4, Protection.READ_WRITE, PRIV);
            small.madvise(OTHER, 16 * K4, Advice.NOHUGEPAGE);
            fill(m.cpu(0), small, OTHER, 16 * K4);
            assertThat(m.reclaim(0, 10_000)).isEqualTo(16);
            assertThat(swapFree(m)).isZero();
            AddressSpace mm = huge(m);
            assertThat(m.reclaim(0, 10_000)).isZero();
            List<String> f = new ArrayList<>();
            if (mm.counters().anonHugePages() != 512) {
                f.add("AnonHugePages " + mm.counters().anonHugePages() + " after a reclaim that could swap nothing");
            }
            closeAndCheck(m, free, swap, f, "full device");
            assertThat(f).isEmpty();
        });
    }

    /** Same, with no swap device configured at all. */
    @Test
    void reclaimWithoutSwapDeviceSplitsAHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine(ThpMode.ALWAYS, 0);
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            long got;
            try {
                got = m.reclaim(0, 10_000);
            } catch (VmException e) {
                got = -1; // refused: fine
            }
            List<String> f = new ArrayList<>();
            if (mm.counters().anonHugePages() != 512) {
                f.add("AnonHugePages " + mm.counters().anonHugePages() + " after reclaim (" + got + ") without swap");
            }
            closeAndCheck(m, free, swap, f, "no swap");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed. Second chance: a huge page written just now is referenced; with enough cold 4 KiB pages to
     * meet the target, reclaim should pass it over (clearing its accessed bit), as
     * folio_check_references keeps a referenced folio before shrink_folio_list splits it, and
     * as MODEL.md describes the clock. vmcore splits every huge page its scan meets first.
     * Here the hot huge page is met first: it is split (AnonHugePages 0) although the 64 cold
     * pages are taken and none of its pages is swapped. Suspected cause: Reclaim.shrinkNode calls
     * splits.split before SwapOut.referenced (folio_referenced) is asked about the PMD entries.
     */
    @Test
    void reclaimSplitsAReferencedHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m); // allocated first: lower frames
            AddressSpace cold = m.createAddressSpace(0);
            cold.mmap(OTHER, 256 * K4, Protection.READ_WRITE, PRIV);
            cold.madvise(OTHER, 256 * K4, Advice.NOHUGEPAGE);
            fill(m.cpu(0), cold, OTHER, 256 * K4);
            cold.madvise(OTHER, 256 * K4, Advice.COLD);
            long hugePfn = mm.pageAt(VA);
            long coldPfn = cold.pageAt(OTHER);
            System.out.println("huge page at pfn " + hugePfn + ", first cold page at " + coldPfn);
            long got = m.reclaim(0, 64);
            List<String> f = new ArrayList<>();
            if (mm.counters().anonHugePages() != 512) {
                f.add("reclaim of " + got + " pages split the hot huge page (AnonHugePages "
                        + mm.counters().anonHugePages() + ", VmSwap " + mm.counters().swapPages() + ", cold VmSwap "
                        + cold.counters().swapPages() + ")");
            }
            closeAndCheck(m, free, swap, f, "hot");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed: MADV_PAGEOUT over a huge page it may not split (shared with fork relatives) splits
     * the PMD mapping anyway: AnonHugePages of the caller drops 512 -> 0 and nothing is swapped.
     * Linux's madvise_cold_or_pageout_pte_range goes to huge_unlock for a folio mapped shared and
     * leaves the PMD. Suspected cause: LazyFree.pageout calls
     * {@code mm.pages.hugePmds.forEachHugePmd(v, from, to, null)}, whose null visitor splits every
     * huge PMD in the range (HugePmds.forEachHugePmd -> splitPmd), after splitOwnHugePages passed
     * the shared folio by.
     */
    @Test
    void pageoutSplitsThePmdOfASharedHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
            List<String> f = new ArrayList<>();
            if (mm.counters().swapPages() != 0 || mm.counters().anonHugePages() != 512) {
                f.add("PAGEOUT of a shared huge page: VmSwap " + mm.counters().swapPages() + ", AnonHugePages "
                        + mm.counters().anonHugePages() + " (want 0 and 512)");
            }
            data(m, mm, VA, 0, 0, 0, f, "mm");
            data(m, a, VA, 0, 0, 0, f, "a");
            closeAndCheck(m, free, swap, f, "shared pageout");
            assertThat(f).isEmpty();
        });
    }

    /** Was a defect (same cause), fixed: PAGEOUT of a GUP-pinned huge page: the split is refused, but its PMD is split all the same. */
    @Test
    void pageoutSplitsThePmdOfAPinnedHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = huge(m);
            PageReference ref = mm.getUserPageFast(VA + 33 * K4, true);
            assertThat(ref).isNotNull();
            assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
            List<String> f = new ArrayList<>();
            if (mm.counters().swapPages() != 0 || mm.counters().anonHugePages() != 512) {
                f.add("PAGEOUT of a pinned huge page: VmSwap " + mm.counters().swapPages() + ", AnonHugePages "
                        + mm.counters().anonHugePages() + " (want 0 and 512)");
            }
            ref.close();
            data(m, mm, VA, 0, 0, 0, f, "mm");
            closeAndCheck(m, free, swap, f, "pinned pageout");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect (same cause), fixed: PAGEOUT over the huge zero page splits its PMD into 512 PTEs of the
     * 4 KiB zero page (Linux: is_huge_zero_pmd -> huge_unlock, the PMD stays), so a later write
     * gets one 4 KiB page instead of a new huge page (do_huge_zero_wp_pmd).
     */
    @Test
    void pageoutSplitsTheHugeZeroPmd() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            assertThat(c.load(VA, 8)).isZero();
            assertThat(mm.madvise(VA, H, Advice.PAGEOUT)).isZero();
            c.store(VA + 3 * K4, 8, 3);
            List<String> f = new ArrayList<>();
            if (mm.counters().anonHugePages() != 512) {
                f.add("write after PAGEOUT of the huge zero page: AnonHugePages " + mm.counters().anonHugePages()
                        + ", RssAnon " + mm.counters().anonPages() + " (want a new huge page)");
            }
            closeAndCheck(m, free, swap, f, "zero pageout");
            assertThat(f).isEmpty();
        });
    }

    // ---------------------------------------------------------------- notifiers

    interface Act {
        void run(Machine m, AddressSpace mm, Cpu c) throws Exception;
    }

    record Op(String name, Act act) {
    }

    static List<Op> callbacks() {
        List<Op> ops = new ArrayList<>();
        ops.add(new Op("throw", (m, mm, c) -> {
            throw new IllegalStateException("refused");
        }));
        ops.add(new Op("munmap", (m, mm, c) -> mm.munmap(VA, H)));
        ops.add(new Op("munmap part", (m, mm, c) -> mm.munmap(VA + 100 * K4, 3 * K4)));
        ops.add(new Op("fork", (m, mm, c) -> mm.fork()));
        ops.add(new Op("COLLAPSE", (m, mm, c) -> mm.madvise(VA, H, Advice.COLLAPSE)));
        ops.add(new Op("khugepaged", (m, mm, c) -> m.khugepaged().scan(8)));
        ops.add(new Op("move_pages", (m, mm, c) -> m.migration().movePages(mm, new long[] {VA + 5 * K4, VA}, new int[] {1, 1}, 0)));
        ops.add(new Op("splitHugePages", (m, mm, c) -> m.migration().splitHugePages(mm, VA, VA + H)));
        ops.add(new Op("reclaim", (m, mm, c) -> m.reclaim(0, 10_000)));
        ops.add(new Op("PAGEOUT", (m, mm, c) -> mm.madvise(VA, H, Advice.PAGEOUT)));
        ops.add(new Op("DONTNEED", (m, mm, c) -> mm.madvise(VA + 9 * K4, K4, Advice.DONTNEED)));
        ops.add(new Op("mremap", (m, mm, c) -> mm.mremap(VA, H, H, MOVE, OTHER + K4)));
        ops.add(new Op("mprotect", (m, mm, c) -> mm.mprotect(VA, K4 * 8, Protection.READ)));
        ops.add(new Op("GUP", (m, mm, c) -> {
            PageReference r = mm.getUserPageFast(VA + 3 * K4, true);
            if (r != null) {
                r.close();
            }
        }));
        ops.add(new Op("close", (m, mm, c) -> mm.close()));
        ops.add(new Op("machine close", (m, mm, c) -> m.close()));
        return ops;
    }

    /**
     * A notifier on the huge page's address space calls back into the engine (or throws) at the
     * first CLEAR invalidation of reclaim or PAGEOUT (the split's unmap or the swap-out). After:
     * invariants, data (what is still mapped reads its value), frames and swap back at close.
     */
    @Test
    void notifiersCallingBackDuringReclaimAndPageout() {
        assertTimeoutPreemptively(Duration.ofSeconds(40), () -> {
            List<String> failures = new ArrayList<>();
            for (Op op : callbacks()) {
                for (int variant = 0; variant < 4; variant++) {
                    String tag = op.name() + "/" + variant;
                    Machine m = machine();
                    long free = m.freeFrames();
                    long swap = swapFree(m);
                    AddressSpace mm = huge(m);
                    AddressSpace child = variant >= 2 ? mm.fork() : null;
                    if (variant == 3) {
                        mm.munmap(VA + 400 * K4, 16 * K4); // partly unmapped: queued for the deferred split
                    }
                    Cpu c = m.cpu(1);
                    AtomicInteger calls = new AtomicInteger();
                    AtomicBoolean inside = new AtomicBoolean();
                    mm.registerNotifier(new MmuNotifier() {
                        @Override
                        public void invalidateRangeStart(NotifierRange range) {
                            if (calls.incrementAndGet() == 2 && inside.compareAndSet(false, true)) {
                                try {
                                    op.act().run(m, mm, c);
                                } catch (RuntimeException e) {
                                    throw e;
                                } catch (Exception e) {
                                    throw new IllegalStateException(e);
                                } finally {
                                    inside.set(false);
                                }
                            }
                        }
                    });
                    Throwable thrown = null;
                    try {
                        if (variant % 2 == 0) {
                            m.reclaim(0, 10_000);
                        } else {
                            mm.madvise(VA, H, Advice.PAGEOUT);
                        }
                    } catch (Throwable t) {
                        thrown = t;
                    }
                    if (!onlyCallbackFailures(thrown)) {
                        failures.add(tag + ": threw " + trace(thrown));
                    }
                    if (isOpen(m)) {
                        try {
                            List<String> inv = m.checkInvariants();
                            if (!inv.isEmpty()) {
                                failures.add(tag + ": invariants " + inv);
                            }
                            if (!mm.isClosed()) {
                                Cpu c0 = m.cpu(0);
                                for (long off = 0; off < H; off += K4) {
                                    long v = read(c0, mm, VA + off);
                                    if (v != -1 && v != 0 && v != value(VA + off)) {
                                        failures.add(tag + String.format(": page %d reads 0x%x", off / K4, v));
                                        break;
                                    }
                                }
                            }
                            if (child != null && !child.isClosed()) {
                                for (long off = 0; off < H; off += K4) {
                                    long v = read(m.cpu(0), child, VA + off);
                                    if (v != value(VA + off)) {
                                        failures.add(tag + String.format(": child page %d reads 0x%x", off / K4, v));
                                        break;
                                    }
                                }
                            }
                            m.reclaim(0, 10_000); // and once more, without the callback
                        } catch (Throwable t) {
                            failures.add(tag + ": after: " + trace(t));
                        }
                    }
                    closeAndCheck(m, free, swap, failures, tag);
                }
            }
            assertThat(failures).isEmpty();
        });
    }

    // ---------------------------------------------------------------- concurrency

    /**
     * CPU threads write into huge pages (shared with a fork child) while another thread reclaims,
     * PAGEOUTs, COLLAPSEs and runs khugepaged: no write lost.
     * Was a defect, fixed: a CPU store failed with IllegalStateException "cpuN: WRITE at 0x...
     * still faults after 1000 retries (fault code #PF(NP|W|U))", about 1 run in 700. split_huge_page
     * made each 4 KiB page a frame of its own before locking it, so a CPU waiting on its PTE
     * migration entry found the page unlocked and retried at once, 1000 times while the splitting
     * thread was descheduled. Each page now leaves the huge page locked (MemMap.splitLarge), as
     * __split_folio_to_order copies PG_locked.
     */
    @Test
    void writersRacingReclaimAndCollapse() {
        assertTimeoutPreemptively(Duration.ofSeconds(30), () -> {
            long seed = System.nanoTime();
            System.out.println("writersRacingReclaimAndCollapse seed " + seed);
            Random rnd = new Random(seed);
            Machine m = machine(ThpMode.ALWAYS, 8192);
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = m.createAddressSpace(0);
            int hp = 3;
            mm.mmap(VA, hp * H, Protection.READ_WRITE, PRIV);
            fill(m.cpu(0), mm, VA, hp * H);
            AddressSpace child = mm.fork();
            long pages = hp * 512L;
            int writers = 3;
            long[][] last = new long[writers][];
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            AtomicBoolean stop = new AtomicBoolean();
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < writers; w++) {
                int id = w;
                last[w] = new long[(int) pages];
                long wseed = rnd.nextLong();
                threads.add(new Thread(() -> {
                    Random r = new Random(wseed);
                    Cpu c = m.cpu(id + 1);
                    c.switchTo(mm);
                    try {
                        for (int i = 0; i < 3000 && !stop.get(); i++) {
                            int p = r.nextInt((int) pages / writers) * writers + id;
                            long v = ((long) id << 40) | (i + 1);
                            c.store(VA + p * K4 + 8L * (id + 1), 8, v);
                            last[id][p] = v;
                            long back = c.load(VA + p * K4 + 8L * (id + 1), 8);
                            if (back != v) {
                                errors.add(new AssertionError("writer " + id + " page " + p + " read " + back + " want " + v));
                            }
                        }
                    } catch (Throwable t) {
                        errors.add(t);
                    }
                }));
            }
            threads.add(new Thread(() -> {
                Random r = new Random(seed ^ 1);
                try {
                    for (int i = 0; i < 60 && !stop.get(); i++) {
                        switch (r.nextInt(5)) {
                            case 0, 1 -> m.reclaim(0, r.nextInt(2000));
                            case 2 -> mm.madvise(VA + r.nextInt(hp) * H, H, Advice.PAGEOUT);
                            case 3 -> mm.madvise(VA + r.nextInt(hp) * H, H, Advice.COLLAPSE);
                            default -> m.khugepaged().scan(4);
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
            stop.set(true);
            List<String> f = new ArrayList<>();
            for (Throwable t : errors) {
                f.add("seed " + seed + ": " + trace(t));
            }
            List<String> inv = m.checkInvariants();
            if (!inv.isEmpty()) {
                f.add("invariants " + inv);
            }
            Cpu c = m.cpu(0);
            for (int w = 0; w < writers; w++) {
                for (int p = 0; p < pages; p++) {
                    if (last[w][p] != 0) {
                        c.switchTo(mm);
                        long v = c.load(VA + p * K4 + 8L * (w + 1), 8);
                        if (v != last[w][p]) {
                            f.add("seed " + seed + ": lost write of writer " + w + " page " + p + ": " + v + " want " + last[w][p]);
                        }
                    }
                }
            }
            for (long off = 0; off < hp * H; off += K4) {
                if (read(c, child, VA + off) != value(VA + off)) {
                    f.add("seed " + seed + ": child page " + off / K4 + " changed");
                    break;
                }
                if (read(c, mm, VA + off) != value(VA + off)) {
                    f.add("seed " + seed + ": page " + off / K4 + " word 0 changed");
                    break;
                }
            }
            counters(mm, pages, f, "mm");
            counters(child, pages, f, "child");
            closeAndCheck(m, free, swap, f, "race");
            assertThat(f).isEmpty();
        });
    }

    /** Two threads reclaim at once while a third PAGEOUTs and splits: the same pages never go twice. */
    @Test
    void concurrentReclaimsOverHugePages() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine(ThpMode.ALWAYS, 8192);
            long free = m.freeFrames();
            long swap = swapFree(m);
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, 4 * H, Protection.READ_WRITE, PRIV);
            fill(m.cpu(0), mm, VA, 4 * H);
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            List<Thread> threads = new ArrayList<>();
            for (int t = 0; t < 3; t++) {
                int id = t;
                threads.add(new Thread(() -> {
                    try {
                        for (int i = 0; i < 10; i++) {
                            if (id == 2) {
                                mm.madvise(VA + (i % 4) * H, H, Advice.PAGEOUT);
                                m.migration().splitHugePages(mm, VA, VA + 4 * H);
                            } else {
                                m.reclaim(0, 700);
                            }
                        }
                    } catch (Throwable e) {
                        errors.add(e);
                    }
                }));
            }
            threads.forEach(Thread::start);
            for (Thread t : threads) {
                t.join();
            }
            List<String> f = new ArrayList<>();
            errors.forEach(e -> f.add(trace(e)));
            assertThat(m.checkInvariants()).isEmpty();
            counters(mm, 2048, f, "mm");
            Cpu c = m.cpu(0);
            for (long off = 0; off < 4 * H; off += K4) {
                if (read(c, mm, VA + off) != value(VA + off)) {
                    f.add("page " + off / K4);
                    break;
                }
            }
            closeAndCheck(m, free, swap, f, "concurrent");
            assertThat(f).isEmpty();
        });
    }

    // ---------------------------------------------------------------- memory pressure

    /**
     * Memory is full but for partly unmapped huge pages; 4 KiB faults in the same PTE table as a
     * partly unmapped huge page (and in another address space) must succeed, the shrinker giving
     * back the unmapped pages; the faults never deadlock on the table lock.
     */
    @Test
    void faultsUnderPressureNeedTheDeferredSplit() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = Machine.builder().node(1L << 30).cpus(2).thp(ThpMode.ALWAYS).swap(1025 * K4)
                    .detectStaleTranslations(true).build();
            long free = m.freeFrames();
            long swap = swapFree(m);
            List<String> f = new ArrayList<>();
            AddressSpace mm = m.createAddressSpace(0);
            long n = m.freeFrames() / 512 - 4;
            mm.mmap(VA, n * H, Protection.READ_WRITE, PRIV);
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            for (long i = 0; i < n; i++) {
                c.store(VA + i * H, 8, i + 1);
            }
            for (long i = 0; i < n; i++) {
                mm.munmap(VA + i * H + 256 * K4, 256 * K4); // the upper half of each unmapped
            }
            // fill what is free with 4 KiB pages elsewhere
            AddressSpace other = m.createAddressSpace(0);
            long want = m.freeFrames() + 2048;
            other.mmap(OTHER, want * K4, Protection.READ_WRITE, PRIV);
            other.madvise(OTHER, want * K4, Advice.NOHUGEPAGE);
            Cpu c1 = m.cpu(1);
            c1.switchTo(other);
            try {
                for (long p = 0; p < want; p++) {
                    c1.store(OTHER + p * K4, 8, p + 7);
                }
            } catch (OutOfMemoryException e) {
                f.add("other: " + trace(e));
            }
            // now: fault back into the unmapped half of the huge pages, same table as their mapped half
            for (long i = 0; i < n && f.isEmpty(); i++) {
                mm.mmap(VA + i * H + 256 * K4, 256 * K4, Protection.READ_WRITE, PRIV);
                mm.madvise(VA + i * H + 256 * K4, 256 * K4, Advice.NOHUGEPAGE);
                try {
                    for (long p = 0; p < 256; p += 64) {
                        c.store(VA + i * H + (256 + p) * K4, 8, -p - 1);
                    }
                } catch (OutOfMemoryException e) {
                    f.add("same table, huge page " + i + ": " + trace(e));
                }
            }
            for (long i = 0; i < n && f.isEmpty(); i++) {
                if (c.load(VA + i * H, 8) != i + 1) {
                    f.add("huge page " + i + " lost its first word");
                }
            }
            List<String> inv = m.checkInvariants();
            if (!inv.isEmpty()) {
                f.add("invariants " + inv);
            }
            closeAndCheck(m, free, swap, f, "pressure");
            assertThat(f).isEmpty();
        });
    }

    /** failNthAllocation: a swap-in whose frame allocation fails leaves the swap entry; the retry reads the data. */
    @Test
    void failedSwapInAllocationsAndRetries() {
        assertTimeoutPreemptively(WAIT, () -> {
            long seed = System.nanoTime();
            System.out.println("failedSwapInAllocationsAndRetries seed " + seed);
            Random rnd = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 6; round++) {
                Machine m = machine();
                long free = m.freeFrames();
                long swap = swapFree(m);
                AddressSpace mm = huge(m);
                AddressSpace child = round % 2 == 0 ? mm.fork() : null;
                AllocationKind kind = AllocationKind.values()[rnd.nextInt(AllocationKind.values().length)];
                m.failNthAllocation(kind, 1 + rnd.nextInt(3), 1 + rnd.nextInt(3));
                try {
                    m.reclaim(0, 10_000);
                } catch (VmException e) {
                    // injected
                }
                m.failNthAllocation(AllocationKind.FRAME, 1 + rnd.nextInt(20), 1 + rnd.nextInt(2));
                Cpu c = m.cpu(0);
                c.switchTo(mm);
                for (long off = 0; off < H; off += K4) {
                    long v;
                    try {
                        v = c.load(VA + off, 8);
                    } catch (OutOfMemoryException e) {
                        try {
                            v = c.load(VA + off, 8); // the retry
                        } catch (OutOfMemoryException e2) {
                            v = c.load(VA + off, 8); // and again
                        }
                    }
                    if (v != value(VA + off)) {
                        f.add("seed " + seed + " round " + round + ": page " + off / K4 + " reads " + v);
                        break;
                    }
                }
                m.failNthAllocation(AllocationKind.HUGE_PAGE, 1, 1);
                try {
                    mm.madvise(VA, H, Advice.COLLAPSE);
                } catch (VmException e) {
                    // injected
                }
                data(m, mm, VA, 0, 0, 0, f, "seed " + seed + " round " + round + " after collapse");
                if (child != null) {
                    data(m, child, VA, 0, 0, 0, f, "seed " + seed + " round " + round + " child");
                }
                counters(mm, 512, f, "round " + round);
                closeAndCheck(m, free, swap, f, "seed " + seed + " round " + round);
            }
            assertThat(f).isEmpty();
        });
    }
}
