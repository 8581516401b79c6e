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
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.junit.jupiter.api.Assertions.assertTimeoutPreemptively;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.Page;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmException;

/**
 * Hostile tests of split_huge_page ({@code MigrationService.splitHugePages} and soft offline of a
 * page of a transparent huge page), through the public API only: MMU notifiers that throw or call
 * back into the engine during the split's unmap, CPU threads writing into the huge page while it
 * is split and re-collapsed, GUP references, splits racing munmap, mremap, fork, DONTNEED,
 * move_pages and close, fork trees mapping the huge page by PMDs, PTEs and COW copies, partial
 * munmap, unaligned mremap, PROT_NONE pieces, the huge zero page, fault injection and bad input.
 * Randomised tests print their seed. Each defect found is kept as a failing test named
 * {@code defect*}.
 */
@SuppressWarnings("try")
class Hostile20ThpSplitTest {

    static Machine machine() {
        return Machine.builder().node(1L << 30).node(1L << 30).cpus(4).thp(ThpMode.ALWAYS)
                .detectStaleTranslations(true).build();
    }

    static AddressSpace huge(Machine m) {
        AddressSpace mm = m.createAddressSpace(0);
        mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
        fill(m.cpu(0), mm, VA, H);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        return mm;
    }

    static long splits(Machine m) {
        return m.migration().stats().get("thp_split_page");
    }

    static int split(Machine m, AddressSpace mm, long start, long end) {
        return m.migration().splitHugePages(mm, start, end);
    }

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
                // the huge zero page may stay allocated; a soft-offlined page stays poisoned
                if (free != freeAtStart && free != freeAtStart - 512 && free != freeAtStart - 1 && free != freeAtStart - 513) {
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

    /** After a split: every mapped page of [base, base+len) in mm is a 4 KiB page, and AnonHugePages is 0. */
    static void splitDone(Machine m, AddressSpace mm, long base, long len, List<String> f, String tag) {
        if (mm.counters().anonHugePages() != 0) {
            f.add(tag + ": AnonHugePages " + mm.counters().anonHugePages() + " after the split");
        }
        for (long off = 0; off < len; off += K4) {
            long pfn = mm.pageAt(base + off);
            if (pfn >= 0) {
                Page p = m.page(pfn);
                if (p.size() != PageSize.SIZE_4K || p.pfn() != pfn) {
                    f.add(tag + String.format(": page at 0x%x is %s after the split", base + off, p));
                    return;
                }
            }
        }
    }

    // ---------------------------------------------------------------- accounting

    /** A fork tree: PMD in two, PTEs in a third (a COW copy of one page): the split counts right. */
    @Test
    void splitAccountingInAForkTree() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            AddressSpace b = mm.fork();
            Cpu c = m.cpu(0);
            c.switchTo(b);
            c.store(VA + 7 * K4, 8, 77); // b's PMD is split, page 7 is a COW copy
            long head = mm.pageAt(VA);
            assertThat(m.page(head).size()).isEqualTo(PageSize.SIZE_2M);
            long rssMm = mm.counters().anonPages();
            long rssA = a.counters().anonPages();
            long rssB = b.counters().anonPages();
            long before = splits(m);
            long pmdSplits = m.vmstat().getOrDefault("thp_split_pmd", -1L);
            assertThat(split(m, a, VA, VA + K4)).as("a range of its first page").isEqualTo(1);
            assertThat(splits(m)).isEqualTo(before + 1);
            assertThat(m.vmstat().get("thp_split_pmd")).as("two PMD entries became tables").isEqualTo(pmdSplits + 2);
            assertThat(m.vmstat().get("thp_split_page")).as("vmstat thp_split_page").isEqualTo(before + 1);
            List<String> f = new ArrayList<>();
            for (AddressSpace s : List.of(mm, a, b)) {
                splitDone(m, s, VA, H, f, "s" + s);
            }
            assertThat(f).isEmpty();
            assertThat(mm.counters().anonPages()).isEqualTo(rssMm);
            assertThat(a.counters().anonPages()).isEqualTo(rssA);
            assertThat(b.counters().anonPages()).isEqualTo(rssB);
            for (int i = 0; i < 512; i++) {
                long pfn = head + i;
                Page p = m.page(pfn);
                assertThat(p.size()).isEqualTo(PageSize.SIZE_4K);
                assertThat(p.mapcount()).as("page %d", i).isEqualTo(i == 7 ? 2 : 3);
                assertThat(p.refcount()).as("page %d", i).isEqualTo(i == 7 ? 2 : 3);
                assertThat(p.anonymous()).isTrue();
                assertThat(p.flags()).doesNotContain(PageFlag.LOCKED);
            }
            assertThat(m.checkInvariants()).isEmpty();
            data(m, mm, VA, 0, 0, 0, f, "mm");
            data(m, a, VA, 0, 0, 0, f, "a");
            data(m, b, VA, VA + 7 * K4, VA + 8 * K4, 77, f, "b");
            // each side writes: COW per 4 KiB page now
            c.switchTo(a);
            c.store(VA + 9 * K4, 8, 99);
            data(m, mm, VA, 0, 0, 0, f, "mm after a's write");
            assertThat(read(c, a, VA + 9 * K4)).isEqualTo(99);
            assertThat(m.page(head + 9).mapcount()).isEqualTo(2);
            // splitting again: nothing to split
            assertThat(split(m, mm, VA, VA + H)).isZero();
            assertThat(splits(m)).isEqualTo(before + 1);
            assertThat(m.staleAccessCount()).isZero();
            closeAndCheck(m, free, f, "fork tree");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed: a range that covers a PMD-mapped huge page but not its first address (here only its
     * last page) splits nothing: splitHugePages returns 0 and the huge page stays whole. The
     * kernel's split_huge_pages_pid walks every page of [start, end) (folio_walk_start at each
     * address) and splits the PMD-mapped folio found at any of them. Suspected cause:
     * MigrationServiceImpl.splitHugePages filters {@code va >= start && va < end} on the address
     * that PageOps.forEachMappedPage / HugeMemory.forEachHugePage reports for a huge PMD, which is
     * only the 2 MiB-aligned start (haddr), never the page of it inside the range.
     */
    @Test
    void rangeOfTheLastPageOfAPmdMappedHugePageSplitsNothing() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            assertThat(split(m, mm, VA + H - K4, VA + H)).isEqualTo(1);
            List<String> f = new ArrayList<>();
            splitDone(m, mm, VA, H, f, "tail");
            data(m, mm, VA, 0, 0, 0, f, "tail");
            closeAndCheck(m, free, f, "tail");
            assertThat(f).isEmpty();
        });
    }

    /** Was a defect (same cause), fixed: [VA + 100 pages, VA + 101 pages) in a fork child that PMD-maps it: nothing split anywhere. */
    @Test
    void rangeInsideAPmdMappedHugePageOfAForkChildSplitsNothing() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            long before = splits(m);
            assertThat(split(m, a, VA + 100 * K4, VA + 101 * K4)).as("a range of one page of it").isEqualTo(1);
            assertThat(splits(m)).isEqualTo(before + 1);
            List<String> f = new ArrayList<>();
            splitDone(m, mm, VA, H, f, "mm");
            splitDone(m, a, VA, H, f, "a");
            closeAndCheck(m, free, f, "inside");
            assertThat(f).isEmpty();
        });
    }

    /**
     * Was a defect, fixed: the deferred split queue is never run. Partly unmapped huge pages (one page of each
     * still mapped) keep all their 512 frames, and under memory pressure a 4 KiB fault fails with
     * OutOfMemoryException although 511 of every 512 of those frames are mapped by nothing; the
     * kernel's deferred_split_scan shrinker would split them and give the memory back. MODEL.md
     * says the queue is "run by reclaim as the kernel's shrinker is under memory pressure".
     * Suspected cause: nothing in the engine calls {@code Thp.splitDeferred} (no caller anywhere in
     * vmcore-impl/src/main; only MigrationServiceImpl's setSplitter wiring): the allocation-failure
     * path has no shrinker step.
     */
    @Test
    void deferredSplitNeverRunsUnderMemoryPressure() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = Machine.builder().node(1L << 30).cpus(1).thp(ThpMode.ALWAYS).build();
            try {
                AddressSpace mm = m.createAddressSpace(0);
                long n = m.freeFrames() / 512 - 8;
                long base = VA;
                mm.mmap(base, n * H, Protection.READ_WRITE, PRIV);
                Cpu c = m.cpu(0);
                c.switchTo(mm);
                for (long i = 0; i < n; i++) {
                    c.store(base + i * H, 8, i + 1);
                }
                assertThat(mm.counters().anonHugePages()).isEqualTo(n * 512);
                for (long i = 0; i < n; i++) {
                    mm.munmap(base + i * H + K4, H - K4); // one page of each stays mapped
                }
                assertThat(m.vmstat().get("thp_deferred_split_page")).isEqualTo(n);
                long unmappedButHeld = n * 511;
                long want = 64 * MIB / K4; // far less than unmappedButHeld, more than free
                assertThat(want).isLessThan(unmappedButHeld).isGreaterThan(m.freeFrames());
                mm.mmap(OTHER, want * K4, Protection.READ_WRITE, PRIV);
                mm.madvise(OTHER, want * K4, Advice.NOHUGEPAGE);
                for (long p = 0; p < want; p++) {
                    c.store(OTHER + p * K4, 8, p); // OutOfMemoryException: nothing splits the queued huge pages
                }
                for (long i = 0; i < n; i++) {
                    assertThat(c.load(base + i * H, 8)).isEqualTo(i + 1);
                }
                assertThat(m.checkInvariants()).isEmpty();
            } finally {
                m.close();
            }
        });
    }

    /** A range ending just before the huge page, and one starting just after: nothing is split. */
    @Test
    void rangesBesideTheHugePage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            mm.mmap(VA - H, H, Protection.READ_WRITE, PRIV);
            mm.mmap(VA + H, H, Protection.READ_WRITE, PRIV);
            assertThat(split(m, mm, VA - K4, VA)).isZero();
            assertThat(split(m, mm, VA + H, VA + H + K4)).isZero();
            assertThat(split(m, mm, 0, VA - H)).isZero();
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            List<String> f = new ArrayList<>();
            closeAndCheck(m, free, f, "beside");
            assertThat(f).isEmpty();
        });
    }

    /** Partial munmap: the huge page's pieces in two VMAs; the split frees exactly the pages unmapped. */
    @Test
    void partialMunmapPiecesInTwoVmasAndFreedPages() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            mm.munmap(VA + 100 * K4, 50 * K4);
            long rss = mm.counters().anonPages();
            assertThat(rss).isEqualTo(462);
            long freeBefore = m.freeFrames();
            assertThat(split(m, mm, VA, VA + H)).isEqualTo(1);
            assertThat(m.freeFrames()).as("the 50 pages nothing maps go").isEqualTo(freeBefore + 50);
            assertThat(mm.counters().anonPages()).isEqualTo(rss);
            for (int i = 0; i < 512; i++) {
                if (i >= 100 && i < 150) {
                    continue;
                }
                assertThat(m.page(head + i).mapcount()).isEqualTo(1);
                assertThat(m.page(head + i).size()).isEqualTo(PageSize.SIZE_4K);
            }
            List<String> f = new ArrayList<>();
            data(m, mm, VA, VA + 100 * K4, VA + 150 * K4, -1, f, "munmap");
            splitDone(m, mm, VA, H, f, "munmap");
            closeAndCheck(m, free, f, "munmap");
            assertThat(f).isEmpty();
        });
    }

    /** Unaligned mremap: the pages across two PTE tables (and two 2 MiB ranges). */
    @Test
    void afterUnalignedMremap() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            mm.mremap(VA, H, H, MOVE, OTHER + 3 * K4);
            AddressSpace child = mm.fork();
            assertThat(split(m, mm, OTHER + H, OTHER + H + K4)).as("a range of a page in the second table").isEqualTo(1);
            List<String> f = new ArrayList<>();
            data(m, mm, OTHER + 3 * K4, 0, 0, 0, f, "mremap");
            data(m, child, OTHER + 3 * K4, 0, 0, 0, f, "mremap child");
            splitDone(m, mm, OTHER + 3 * K4, H, f, "mremap");
            assertThat(m.page(head + 300).mapcount()).isEqualTo(2);
            assertThat(m.checkInvariants()).isEmpty();
            writes(m.cpu(0), child, OTHER + 3 * K4, 5);
            data(m, mm, OTHER + 3 * K4, 0, 0, 0, f, "mremap after child write");
            closeAndCheck(m, free, f, "mremap");
            assertThat(f).isEmpty();
        });
    }

    /** PROT_NONE and read-only pieces keep their protections through the split. */
    @Test
    void protNoneAndReadOnlyPieces() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            mm.mprotect(VA + 10 * K4, 2 * K4, Protection.NONE);
            mm.mprotect(VA + H - K4, K4, Protection.READ);
            AddressSpace child = mm.fork();
            assertThat(split(m, child, VA, VA + H)).isEqualTo(1);
            Cpu c = m.cpu(0);
            List<String> f = new ArrayList<>();
            for (AddressSpace s : List.of(mm, child)) {
                assertThat(read(c, s, VA + 10 * K4)).isEqualTo(-1);
                assertThat(read(c, s, VA + 11 * K4)).isEqualTo(-1);
                assertThat(writes(c, s, VA + H - K4, 3)).isFalse();
                assertThat(read(c, s, VA + H - K4)).isEqualTo(value(VA + H - K4));
                data(m, s, VA, VA + 10 * K4, VA + 12 * K4, -1, f, "prot " + s);
            }
            mm.mprotect(VA + 10 * K4, 2 * K4, Protection.READ_WRITE);
            assertThat(read(c, mm, VA + 10 * K4)).isEqualTo(value(VA + 10 * K4));
            closeAndCheck(m, free, f, "prot");
            assertThat(f).isEmpty();
        });
    }

    /** The huge zero page: nothing to split; reads still zero, a write then maps a real page. */
    @Test
    void hugeZeroPage() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = m.createAddressSpace(0);
            mm.mmap(VA, H, Protection.READ_WRITE, PRIV);
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            assertThat(c.load(VA + 5 * K4, 8)).isZero();
            long zero = mm.pageAt(VA);
            AddressSpace child = mm.fork();
            long before = splits(m);
            assertThat(split(m, mm, VA, VA + H)).isZero();
            assertThat(splits(m)).isEqualTo(before);
            if (zero >= 0) {
                assertThat(m.migration().softOffline(zero)).as("the huge zero page").isNegative();
            }
            assertThat(m.checkInvariants()).isEmpty();
            assertThat(read(c, child, VA + 9 * K4)).isZero();
            c.switchTo(mm);
            c.store(VA + 3 * K4, 8, 5);
            assertThat(read(c, child, VA + 3 * K4)).isZero();
            assertThat(read(c, mm, VA + 3 * K4)).isEqualTo(5);
            assertThat(split(m, mm, VA, VA + H)).isEqualTo(1);
            assertThat(read(c, mm, VA + 3 * K4)).isEqualTo(5);
            assertThat(read(c, child, VA + 3 * K4)).isZero();
            List<String> f = new ArrayList<>();
            closeAndCheck(m, free, f, "zero");
            assertThat(f).isEmpty();
        });
    }

    /** A GUP reference stops the split; once put, the split goes ahead. */
    @Test
    void gupReferenceStopsTheSplit() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            long head = mm.pageAt(VA);
            PageReference r = mm.getUserPageFast(VA + 33 * K4, true);
            assertThat(r).isNotNull();
            long before = splits(m);
            assertThat(split(m, mm, VA, VA + H)).isZero();
            assertThat(m.migration().softOffline(head + 40)).isNegative();
            assertThat(splits(m)).isEqualTo(before);
            assertThat(mm.counters().anonHugePages()).isEqualTo(512);
            assertThat(m.page(head).size()).isEqualTo(PageSize.SIZE_2M);
            assertThat(m.checkInvariants()).isEmpty();
            List<String> f = new ArrayList<>();
            data(m, mm, VA, 0, 0, 0, f, "gup");
            r.close();
            assertThat(split(m, mm, VA, VA + H)).isEqualTo(1);
            splitDone(m, mm, VA, H, f, "gup");
            data(m, mm, VA, 0, 0, 0, f, "gup");
            closeAndCheck(m, free, f, "gup");
            assertThat(f).isEmpty();
        });
    }

    /** Soft offline of a tail page in a fork tree: split, that page poisoned alone, every process keeps its data. */
    @Test
    void softOfflineOfATailPageInAForkTree() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            AddressSpace a = mm.fork();
            mm.mprotect(VA + 200 * K4, K4, Protection.READ); // mm's PMD is split, a keeps its PMD
            long head = mm.pageAt(VA);
            long before = splits(m);
            assertThat(m.migration().softOffline(head + 201)).isZero();
            assertThat(splits(m)).isEqualTo(before + 1);
            assertThat(m.page(head + 201).flags()).contains(PageFlag.HWPOISON);
            assertThat(mm.pageAt(VA + 201 * K4)).isNotEqualTo(head + 201);
            assertThat(a.pageAt(VA + 201 * K4)).isEqualTo(mm.pageAt(VA + 201 * K4));
            assertThat(mm.pageAt(VA + 202 * K4)).isEqualTo(head + 202);
            List<String> f = new ArrayList<>();
            data(m, mm, VA, 0, 0, 0, f, "soft mm");
            data(m, a, VA, 0, 0, 0, f, "soft a");
            splitDone(m, a, VA, H, f, "soft a");
            splitDone(m, mm, VA, H, f, "soft mm");
            assertThat(m.migration().softOffline(head + 201)).isNegative();
            assertThat(m.checkInvariants()).isEmpty();
            closeAndCheck(m, free, f, "soft");
            assertThat(f).isEmpty();
        });
    }

    /** Bad input: ranges, foreign and closed address spaces, a closed machine. */
    @Test
    void badInput() {
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            Machine other = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            MigrationService ms = m.migration();
            assertThatThrownBy(() -> ms.splitHugePages(mm, -K4, VA)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA + 1, VA + H)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA, VA + H - 1)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA, VA)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA + H, VA)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, Long.MIN_VALUE, VA)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA, Long.MIN_VALUE)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.splitHugePages(null, VA, VA + H)).isInstanceOf(InvalidArgumentException.class);
            AddressSpace foreign = other.createAddressSpace();
            assertThatThrownBy(() -> ms.splitHugePages(foreign, VA, VA + H)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> other.migration().splitHugePages(mm, VA, VA + H)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.softOffline(-1)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> ms.softOffline(Long.MAX_VALUE)).isInstanceOf(InvalidArgumentException.class);
            // the whole address space (end at the top of the 64-bit range)
            assertThat(ms.splitHugePages(mm, 0, Long.MAX_VALUE & ~0xFFFL)).isEqualTo(1);
            AddressSpace closed = m.createAddressSpace();
            closed.close();
            assertThatThrownBy(() -> ms.splitHugePages(closed, VA, VA + H)).isInstanceOf(VmException.class);
            assertThat(m.checkInvariants()).isEmpty();
            List<String> f = new ArrayList<>();
            data(m, mm, VA, 0, 0, 0, f, "bad");
            closeAndCheck(m, free, f, "bad");
            other.close();
            assertThat(f).isEmpty();
            assertThatThrownBy(() -> ms.splitHugePages(mm, VA, VA + H)).isInstanceOf(ClosedException.class);
            assertThatThrownBy(() -> ms.softOffline(0)).isInstanceOf(ClosedException.class);
        });
    }

    /** failNthAllocation of every kind around splits: a split never allocates; faults after it may fail cleanly. */
    @Test
    void faultInjectionAroundSplits() {
        long seed = new Random().nextLong();
        System.out.println("Hostile20ThpSplitTest.faultInjectionAroundSplits seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            Random r = new Random(seed);
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 6; round++) {
                Machine m = machine();
                long free = m.freeFrames();
                AddressSpace mm = huge(m);
                AddressSpace child = mm.fork();
                AllocationKind kind = AllocationKind.values()[r.nextInt(AllocationKind.values().length)];
                m.failNthAllocation(kind, 1, 50);
                String tag = "inject " + kind + " round " + round;
                try {
                    if (split(m, mm, VA, VA + H) != 1) {
                        f.add(tag + ": the split failed under allocation failures");
                    }
                    splitDone(m, mm, VA, H, f, tag);
                    if (!m.checkInvariants().isEmpty()) {
                        f.add(tag + ": invariants " + m.checkInvariants());
                    }
                    try {
                        m.cpu(0).switchTo(child);
                        m.cpu(0).store(VA + r.nextInt(512) * K4 + 16, 8, 1); // COW may fail
                    } catch (VmException e) {
                        // an allocation failure, cleanly
                    }
                    try {
                        mm.madvise(VA, H, Advice.COLLAPSE);
                    } catch (VmException e) {
                        // ENOMEM
                    }
                } catch (Throwable t) {
                    f.add(tag + ": " + trace(t));
                }
                data(m, mm, VA, 0, 0, 0, f, tag);
                closeAndCheck(m, free, f, tag);
            }
            assertThat(f).isEmpty();
        });
    }

    // ---------------------------------------------------------------- notifier attacks

    interface Attack {
        void run(Machine m, AddressSpace mm, Cpu cpu);
    }

    interface Check {
        void check(Machine m, AddressSpace mm, List<String> f, String tag);
    }

    record Op(String name, Attack attack, Check check) {
    }

    static Check data(long from, long to, long dropped) {
        return (m, mm, f, tag) -> data(m, mm, VA, from, to, dropped, f, tag);
    }

    static final Check NOTHING = (m, mm, f, tag) -> { };

    static List<Op> ops() {
        List<Op> ops = new ArrayList<>();
        Check all = data(0, 0, 0);
        ops.add(new Op("throw", (m, mm, c) -> {
            throw new IllegalStateException("notifier refuses");
        }, all));
        ops.add(new Op("munmap head page", (m, mm, c) -> mm.munmap(VA, K4), data(VA, VA + K4, -1)));
        ops.add(new Op("munmap middle", (m, mm, c) -> mm.munmap(VA + 64 * K4, 2 * K4), data(VA + 64 * K4, VA + 66 * K4, -1)));
        ops.add(new Op("munmap whole", (m, mm, c) -> mm.munmap(VA, H), data(VA, VA + H, -1)));
        ops.add(new Op("mprotect tail NONE", (m, mm, c) -> mm.mprotect(VA + H - K4, K4, Protection.NONE),
                data(VA + H - K4, VA + H, -1)));
        ops.add(new Op("mprotect whole RO", (m, mm, c) -> mm.mprotect(VA, H, Protection.READ), all));
        ops.add(new Op("DONTNEED middle", (m, mm, c) -> mm.madvise(VA + 100 * K4, 3 * K4, Advice.DONTNEED),
                data(VA + 100 * K4, VA + 103 * K4, 0)));
        ops.add(new Op("DONTNEED whole", (m, mm, c) -> mm.madvise(VA, H, Advice.DONTNEED), data(VA, VA + H, 0)));
        ops.add(new Op("COLLAPSE", (m, mm, c) -> mm.madvise(VA, H, Advice.COLLAPSE), all));
        ops.add(new Op("khugepaged", (m, mm, c) -> m.khugepaged().scan(8), all));
        ops.add(new Op("mremap unaligned", (m, mm, c) -> mm.mremap(VA, H, H, MOVE, OTHER + 3 * K4),
                (m, mm, f, t) -> data(m, mm, OTHER + 3 * K4, 0, 0, 0, f, t)));
        ops.add(new Op("fork", (m, mm, c) -> mm.fork(), (m, mm, f, t) -> {
            data(m, mm, VA, 0, 0, 0, f, t);
            List<AddressSpace> spaces = m.addressSpaces();
            for (AddressSpace o : spaces) {
                data(m, o, VA, 0, 0, 0, f, t + " " + o);
            }
            AddressSpace newest = spaces.get(spaces.size() - 1); // the fork's child
            if (newest != mm) {
                writes(m.cpu(0), newest, VA + 4 * K4, 99);
                for (AddressSpace o : spaces) {
                    if (o != newest) {
                        data(m, o, VA, 0, 0, 0, f, t + " " + o + " after the new child's write");
                    }
                }
                writes(m.cpu(0), newest, VA + 4 * K4, value(VA + 4 * K4));
            }
        }));
        ops.add(new Op("fork child exits", (m, mm, c) -> mm.fork().close(), all));
        ops.add(new Op("another split", (m, mm, c) -> m.migration().splitHugePages(mm, VA, VA + H), all));
        ops.add(new Op("soft offline", (m, mm, c) -> m.migration().softOffline(mm.pageAt(VA + 3 * K4)), all));
        ops.add(new Op("move_pages", (m, mm, c) -> m.migration().movePages(mm, new long[] {VA}, new int[] {1},
                MigrationService.MPOL_MF_MOVE_ALL), all));
        ops.add(new Op("loads and stores", (m, mm, c) -> {
            c.switchTo(mm);
            for (long off : new long[] {0, 7 * K4, H - K4}) {
                try {
                    c.store(VA + off, 8, value(VA + off));
                } catch (VmException e) {
                    // cannot wait from inside the callback
                }
            }
        }, all));
        ops.add(new Op("getUserPageFast", (m, mm, c) -> {
            PageReference ref = mm.getUserPageFast(VA + 9 * K4, true);
            if (ref != null) {
                ref.close();
            }
        }, all));
        ops.add(new Op("GUP kept", (m, mm, c) -> mm.getUserPageFast(VA + 9 * K4, true), all));
        ops.add(new Op("fault populate", (m, mm, c) -> mm.fault(VA + 11 * K4, Access.WRITE), all));
        ops.add(new Op("close mm", (m, mm, c) -> mm.close(), NOTHING));
        ops.add(new Op("close machine", (m, mm, c) -> m.close(), NOTHING));
        return ops;
    }

    /**
     * Runs op once from the first invalidateRangeStart of the split (a notifier on {@code mm}, or
     * with {@code onChild} on a forked child that maps it too), via splitHugePages (how 0) or
     * soft offline of page 5 (how 1).
     */
    static void scenario(Op op, int how, boolean onChild, List<String> f) {
        scenario(op, how, onChild, onChild, f);
    }

    /** As above; with {@code attackChild} (and not {@code onChild}) mm's notifier attacks a forked child that PMD-maps the page too. */
    static void scenario(Op op, int how, boolean onChild, boolean attackChild, List<String> f) {
        Machine m = machine();
        long free = m.freeFrames();
        String tag = op.name() + " via " + (how == 0 ? "split" : "softOffline") + (onChild ? " (child notifier)" : "")
                + (attackChild && !onChild ? " (mm's notifier attacks the child)" : "");
        AddressSpace mm = huge(m);
        AddressSpace child = onChild || attackChild ? mm.fork() : null;
        AddressSpace target = attackChild ? child : mm;
        AddressSpace notified = onChild ? child : mm;
        AtomicBoolean fired = new AtomicBoolean();
        AtomicBoolean done = new AtomicBoolean();
        notified.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (fired.compareAndSet(false, true)) {
                    op.attack().run(m, target, m.cpu(1));
                    done.set(true);
                }
            }
        });
        long head = mm.pageAt(VA);
        long before = splits(m);
        Throwable thrown = null;
        int rc = 0;
        try {
            rc = how == 0 ? split(m, mm, VA, VA + H) : m.migration().softOffline(head + 5);
        } catch (Throwable t) {
            thrown = t;
        }
        if (!onlyCallbackFailures(thrown) && !(thrown instanceof ClosedException)) {
            f.add(tag + ": engine failure " + trace(thrown));
        }
        if (!fired.get()) {
            f.add(tag + ": the notifier never heard the split");
        }
        try {
            if (isOpen(m)) {
                List<String> inv = m.checkInvariants();
                if (!inv.isEmpty()) {
                    f.add(tag + ": invariants after the split " + inv);
                }
                boolean didSplit = splits(m) > before;
                if (thrown == null && how == 0 && didSplit != (rc >= 1)) {
                    f.add(tag + ": split returned " + rc + " but thp_split_page went " + before + " -> " + splits(m));
                }
                if (!target.isClosed()) {
                    (done.get() ? op.check() : data(0, 0, 0)).check(m, target, f, tag);
                }
                if (target != mm && !mm.isClosed()) {
                    data(m, mm, VA, 0, 0, 0, f, tag + " parent");
                }
                if (didSplit && !mm.isClosed()) {
                    splitDone(m, mm, VA, H, f, tag);
                }
            }
        } catch (Throwable t) {
            f.add(tag + ": check: " + trace(t));
        }
        closeAndCheck(m, free, f, tag);
    }

    static void matrix(List<String> names, int how, boolean onChild) {
        matrix(names, how, onChild, onChild);
    }

    static void matrix(List<String> names, int how, boolean onChild, boolean attackChild) {
        List<String> f = new ArrayList<>();
        for (Op op : ops()) {
            if (!names.isEmpty() && !names.contains(op.name()) || names.isEmpty() && DEFECTS.contains(op.name())) {
                continue;
            }
            scenario(op, how, onChild, attackChild, f);
        }
        assertThat(f).isEmpty();
    }

    static final List<String> DEFECTS = List.of();

    @Test
    void everyAttackFromTheSplitNotifier() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), 0, false));
    }

    @Test
    void everyAttackFromAChildsNotifierDuringTheSplit() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), 0, true));
    }

    @Test
    void everyAttackOnAForkChildFromTheSplittingSpacesNotifier() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), 0, false, true));
    }

    @Test
    void everyAttackOnAForkChildFromTheNotifierOfASoftOffline() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), 1, false, true));
    }

    @Test
    void everyAttackFromTheNotifierOfASoftOffline() {
        assertTimeoutPreemptively(WAIT, () -> matrix(List.of(), 1, false));
    }

    // ---------------------------------------------------------------- concurrency

    /** CPU threads write distinct values while the main thread splits and re-collapses repeatedly: no write lost. */
    @Test
    void concurrentWritersDuringRepeatedSplitAndCollapse() {
        long seed = new Random().nextLong();
        System.out.println("Hostile20ThpSplitTest.concurrentWritersDuringRepeatedSplitAndCollapse seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            int threads = 3;
            int words = 64;
            long[][] last = new long[threads][words];
            long[][] where = new long[threads][words];
            Random r = new Random(seed);
            for (int t = 0; t < threads; t++) {
                for (int k = 0; k < words; k++) {
                    // distinct words: thread t's slot k in page p at offset 8*(1 + t*words + k)
                    where[t][k] = VA + (long) r.nextInt(512) * K4 + 8L * (1 + t * words + k);
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
                    long n = 1;
                    try {
                        while (!stop.get()) {
                            int k = (int) (n % words);
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
            int split = 0;
            int collapsed = 0;
            for (int i = 0; i < 40; i++) {
                split += m.migration().splitHugePages(mm, VA, VA + H);
                if (i % 2 == 0) {
                    try {
                        mm.madvise(VA, H, Advice.COLLAPSE);
                    } catch (VmException e) {
                        // EAGAIN: a page held
                    }
                } else {
                    m.khugepaged().scan(4);
                }
                if (mm.counters().anonHugePages() == 512) {
                    collapsed++;
                }
            }
            stop.set(true);
            for (Thread th : ts) {
                th.join();
            }
            assertThat(errors).isEmpty();
            assertThat(split).as("splits that succeeded").isPositive();
            assertThat(collapsed).as("collapses that succeeded").isPositive();
            assertThat(m.checkInvariants()).isEmpty();
            Cpu c = m.cpu(0);
            c.switchTo(mm);
            for (int t = 0; t < threads; t++) {
                for (int k = 0; k < words; k++) {
                    if (last[t][k] != 0) {
                        assertThat(c.load(where[t][k], 8)).as("thread %d word %d at 0x%x", t, k, where[t][k]).isEqualTo(last[t][k]);
                    }
                }
            }
            for (long off = 0; off < H; off += K4) {
                assertThat(c.load(VA + off, 8)).as("page +0x%x", off).isEqualTo(value(VA + off));
            }
            assertThat(m.staleAccessCount()).isZero();
            List<String> f = new ArrayList<>();
            closeAndCheck(m, free, f, "concurrent");
            assertThat(f).isEmpty();
        });
    }

    /** Splits racing an operation on the same huge page from another thread (and GUP-fast): each round checked. */
    static void race(String name, int rounds, long seed, Attack other, Check check) {
        List<String> f = new ArrayList<>();
        Random r = new Random(seed);
        for (int round = 0; round < rounds; round++) {
            Machine m = machine();
            long free = m.freeFrames();
            AddressSpace mm = huge(m);
            AddressSpace child = mm.fork();
            writes(m.cpu(0), child, VA + 500 * K4, value(VA + 500 * K4)); // child PTE-maps, no data change
            String tag = name + " round " + round;
            CyclicBarrier go = new CyclicBarrier(3);
            List<Throwable> errors = new CopyOnWriteArrayList<>();
            AtomicBoolean closed = new AtomicBoolean();
            int spin = r.nextInt(50);
            Thread splitter = new Thread(() -> {
                try {
                    go.await();
                    for (int i = 0; i < 3; i++) {
                        m.migration().splitHugePages(i % 2 == 0 ? mm : child, VA, VA + H);
                        if (i == 1) {
                            m.migration().softOffline(mm.pageAt(VA + 77 * K4) >= 0 ? mm.pageAt(VA + 77 * K4) : 0);
                        }
                    }
                } catch (ClosedException e) {
                    closed.set(true);
                } catch (Throwable t) {
                    if (!(t instanceof InvalidArgumentException)) {
                        errors.add(t);
                    }
                }
            });
            Thread gup = new Thread(() -> {
                try {
                    go.await();
                    for (int i = 0; i < 20; i++) {
                        PageReference ref = child.getUserPageFast(VA + (i % 8) * K4, false);
                        if (ref != null) {
                            ref.close();
                        }
                    }
                } catch (ClosedException e) {
                    closed.set(true);
                } catch (Throwable t) {
                    errors.add(t);
                }
            });
            splitter.start();
            gup.start();
            try {
                go.await();
                for (int i = 0; i < spin; i++) {
                    Thread.onSpinWait();
                }
                other.run(m, mm, m.cpu(1));
                splitter.join();
                gup.join();
            } catch (ClosedException e) {
                closed.set(true);
            } catch (Throwable t) {
                errors.add(t);
            }
            try {
                splitter.join();
                gup.join();
            } catch (InterruptedException e) {
                throw new AssertionError(e);
            }
            for (Throwable t : errors) {
                f.add(tag + ": " + trace(t));
            }
            if (isOpen(m)) {
                try {
                    if (!mm.isClosed()) {
                        check.check(m, mm, f, tag);
                    }
                    data(m, child, VA, 0, 0, 0, f, tag + " child");
                } catch (Throwable t) {
                    f.add(tag + ": check " + trace(t));
                }
            }
            closeAndCheck(m, free, f, tag);
        }
        assertThat(f).isEmpty();
    }

    @Test
    void splitsRacingOtherOperations() {
        long seed = new Random().nextLong();
        System.out.println("Hostile20ThpSplitTest.splitsRacingOtherOperations seed=" + seed);
        assertTimeoutPreemptively(WAIT, () -> {
            race("munmap middle", 6, seed, (m, mm, c) -> mm.munmap(VA + 64 * K4, 2 * K4), data(VA + 64 * K4, VA + 66 * K4, -1));
            race("munmap whole", 6, seed, (m, mm, c) -> mm.munmap(VA, H), data(VA, VA + H, -1));
            race("mremap", 6, seed, (m, mm, c) -> mm.mremap(VA, H, H, MOVE, OTHER + 5 * K4),
                    (m, mm, f, t) -> data(m, mm, OTHER + 5 * K4, 0, 0, 0, f, t));
            race("fork and exit", 6, seed, (m, mm, c) -> {
                for (int i = 0; i < 3; i++) {
                    AddressSpace k = mm.fork();
                    writes(m.cpu(1), k, VA + i * K4, 3);
                    k.close();
                }
            }, data(0, 0, 0));
            race("DONTNEED", 6, seed, (m, mm, c) -> mm.madvise(VA + 8 * K4, 4 * K4, Advice.DONTNEED), data(VA + 8 * K4, VA + 12 * K4, 0));
            race("move_pages", 6, seed, (m, mm, c) -> {
                for (int i = 0; i < 3; i++) {
                    m.migration().movePages(mm, new long[] {VA + i * K4}, new int[] {(i + 1) % 2}, MigrationService.MPOL_MF_MOVE_ALL);
                }
            }, data(0, 0, 0));
            race("writes", 6, seed, (m, mm, c) -> {
                c.switchTo(mm);
                for (int i = 0; i < 200; i++) {
                    c.store(VA + (i % 512) * K4, 8, value(VA + (i % 512) * K4));
                }
            }, data(0, 0, 0));
            race("close mm", 4, seed, (m, mm, c) -> mm.close(), NOTHING);
            race("close machine", 4, seed, (m, mm, c) -> m.close(), NOTHING);
        });
    }

    /** Two threads split the same huge page through two address spaces at once: exactly one split counted, all consistent. */
    @Test
    void twoSplittersAtOnce() {
        assertTimeoutPreemptively(WAIT, () -> {
            List<String> f = new ArrayList<>();
            for (int round = 0; round < 10; round++) {
                Machine m = machine();
                long free = m.freeFrames();
                AddressSpace mm = huge(m);
                AddressSpace child = mm.fork();
                long before = splits(m);
                AtomicInteger total = new AtomicInteger();
                CyclicBarrier go = new CyclicBarrier(2);
                List<Throwable> errors = new CopyOnWriteArrayList<>();
                List<Thread> ts = new ArrayList<>();
                for (AddressSpace s : List.of(mm, child)) {
                    Thread t = new Thread(() -> {
                        try {
                            go.await();
                            total.addAndGet(m.migration().splitHugePages(s, VA, VA + H));
                        } catch (Throwable e) {
                            errors.add(e);
                        }
                    });
                    ts.add(t);
                    t.start();
                }
                for (Thread t : ts) {
                    t.join();
                }
                String tag = "two splitters " + round;
                for (Throwable e : errors) {
                    f.add(tag + ": " + trace(e));
                }
                if (total.get() > 1 || splits(m) - before != total.get()) {
                    f.add(tag + ": returned " + total.get() + ", counted " + (splits(m) - before));
                }
                if (total.get() == 0) {
                    m.migration().splitHugePages(mm, VA, VA + H);
                }
                splitDone(m, mm, VA, H, f, tag);
                splitDone(m, child, VA, H, f, tag + " child");
                data(m, mm, VA, 0, 0, 0, f, tag);
                data(m, child, VA, 0, 0, 0, f, tag + " child");
                closeAndCheck(m, free, f, tag);
            }
            assertThat(f).isEmpty();
        });
    }
}
