package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * What MADV_FREE, MADV_COLD and MADV_PAGEOUT do with transparent huge pages (mm/madvise.c:
 * madvise_free_huge_pmd, the PMD branch of madvise_cold_or_pageout_pte_range; mm/vmscan.c:
 * shrink_folio_list's THP cases, with no THP swap), as Linux 6.18 on the reference machine does
 * them (docs/kernel-parity/thp_madvise.c):
 * <ul>
 *   <li>a huge page mapped by anything besides this mapping (after fork) is left alone, whole;
 *   <li>one the range covers in part is split (split_folio), so that the advice reaches its
 *       4 KiB pages;
 *   <li>one the range covers whole stays whole: FREE makes it lazy free (its PMD clean and old,
 *       512 pages to pglazyfree), COLD makes its PMD old, and PAGEOUT either drops it, if lazy
 *       free and still clean (its PMD split by try_to_unmap, then the whole folio freed: 512 pages
 *       to pglazyfreed), or gives a written lazy-free page back its swap-backed state (its PMD
 *       split, the folio kept), or splits it to swap its pages one by one (thp_swpout_fallback),
 *       with or without a swap device, as folio_alloc_swap refuses a huge page either way.
 * </ul>
 * A huge page mapped by PTEs that the range covers whole is treated as one mapped by a PMD, without
 * a split ({@link PteMappedHugePages}; dropping it counts no thp_split_pmd). The huge zero page and
 * PMD migration entries are passed by. Runs under the mmap_lock for read;
 * splits run with no page-table lock, the rest under the PMD lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class MadviseThp {
    private static final long SIZE = HugeMemory.SIZE;
    private static final int NR = HugeMemory.NR;

    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final MemMap descriptors;
    private final PteMappedHugePages ptes;

    MadviseThp(MmContext ctx, SimAddressSpace mm) {
        this.ctx = ctx;
        this.mm = mm;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
        this.ptes = new PteMappedHugePages(ctx, mm);
    }

    /**
     * split_folio for the huge pages only this mapping maps that {@code [from, to)} covers in
     * part (FREE and COLD), so that the advice reaches their 4 KiB pages. Runs before the
     * advice's notifier scope: a split has its own.
     */
    void splitPartlyCovered(VmArea v, long from, long to) {
        if (mm.mayMapHugePmds()) {
            splitOwn(v, from, to, true, null);
        }
    }

    /** MADV_FREE's part, in its notifier scope: the huge pages the range covers whole become lazy free. */
    long free(VmArea v, long from, long to) {
        long[] marked = {0};
        mm.pages.hugePmds.forEachWholeHugePmd(v, from, to, (haddr, pmdSlot, pmd) -> {
            long head = ownHead(pmd);
            if (head < 0) {
                return;
            }
            clearPmdBits(pmdSlot, pmd, Pte.ACCESSED | Pte.DIRTY); // a CPU's next write sets D again: the page stays
            descriptors.clearFlags(head, FrameFlags.DIRTY);
            if ((descriptors.setFlags(head, FrameFlags.LAZYFREE) & FrameFlags.LAZYFREE) == 0) {
                marked[0] += NR; // folio_mark_lazyfree counts a swap-backed folio only, once
            }
        });
        ptes.forEachWhole(v, from, to, (haddr, ptSlot, head) -> {
            ptes.clearBits(ptSlot, Pte.ACCESSED | Pte.DIRTY);
            descriptors.clearFlags(head, FrameFlags.DIRTY);
            if ((descriptors.setFlags(head, FrameFlags.LAZYFREE) & FrameFlags.LAZYFREE) == 0) {
                marked[0] += NR;
            }
        });
        return marked[0];
    }

    /** MADV_COLD's part: the PMDs of the huge pages the range covers whole become old. */
    void cold(VmArea v, long from, long to) {
        mm.pages.hugePmds.forEachWholeHugePmd(v, from, to, (haddr, pmdSlot, pmd) -> {
            long head = ownHead(pmd);
            if (head >= 0) {
                clearPmdBits(pmdSlot, pmd, Pte.ACCESSED);
                descriptors.clearFlags(head, FrameFlags.REFERENCED);
            }
        });
        ptes.forEachWhole(v, from, to, (haddr, ptSlot, head) -> {
            ptes.clearBits(ptSlot, Pte.ACCESSED);
            descriptors.clearFlags(head, FrameFlags.REFERENCED);
        });
    }

    /**
     * MADV_PAGEOUT's part, before the 4 KiB walk and outside its notifier scope: drops the clean
     * lazy-free huge pages the range covers whole, and splits every other huge page only this
     * mapping maps, counting in thp_swpout_fallback those it covers whole.
     */
    void pageout(VmArea v, long from, long to) {
        if (!mm.mayMapHugePmds()) {
            return;
        }
        LongArrayList dropped = new LongArrayList(0);
        LongArrayList droppedPtes = new LongArrayList(0);
        LongArrayList written = new LongArrayList(0);
        LongHashSet keep = new LongHashSet();
        RawPageTable table = mm.pageTable();
        try (Invalidation inv = Invalidation.start(mm.notifiers(), from, to, NotifierEvent.CLEAR)) {
            mm.pages.hugePmds.forEachWholeHugePmd(v, from, to, (haddr, pmdSlot, pmd) -> {
                long head = ownHead(pmd);
                if (head < 0 || (descriptors.flags(head) & FrameFlags.LAZYFREE) == 0) {
                    return;
                }
                keep.add(head); // dropped, or kept whole: never split for swap
                // __discard_anon_folio_pmd_locked: cleared and flushed first, then checked, so that
                // neither a CPU's write nor a GUP-fast reference gets in unseen
                long old = table.getAndClearSlot(pmdSlot);
                ctx.shootdown().flushTlbMmRangeCpus(mm, haddr, haddr + SIZE, PageSize.SIZE_2M.shift());
                boolean dirty = (old & Pte.DIRTY) != 0 || (descriptors.flags(head) & FrameFlags.DIRTY) != 0;
                if (!dirty && descriptors.refcount(head) == 1) {
                    table.hugePmds().freeWithdrawn(table.hugePmds().withdrawTable(haddr));
                    descriptors.addEntireMapcount(head, -1);
                    mm.addAnonPages(-NR);
                    mm.addAnonHugePages(-NR);
                    dropped.add(head);
                    return;
                }
                table.compareAndSetSlot(pmdSlot, 0, old); // under the PMD lock: no fault filled it
                if (dirty) {
                    descriptors.clearFlags(head, FrameFlags.LAZYFREE); // written since MADV_FREE: folio_set_swapbacked
                    written.add(haddr);
                } // else pinned: it stays lazy free, and mapped
            });
            ptes.forEachWhole(v, from, to, (haddr, ptSlot, head) -> {
                if ((descriptors.flags(head) & FrameFlags.LAZYFREE) != 0) {
                    keep.add(head);
                    if (ptes.tryDrop(haddr, ptSlot, head)) {
                        droppedPtes.add(head);
                    }
                }
            });
        }
        for (int i = 0; i < dropped.size(); i++) {
            ctx.thp().countSplitPmds(1); // Linux 6.18's try_to_unmap splits the PMD before it drops the folio
            mm.pages.putReference(dropped.get(i), false); // after the flush: no CPU reaches it any more
        }
        for (int i = 0; i < droppedPtes.size(); i++) {
            for (int p = 0; p < NR; p++) {
                mm.pages.putReference(droppedPtes.get(i), false); // each entry's reference; the last frees the folio
            }
        }
        ctx.reclaimCounts().addLazyfreed((long) (dropped.size() + droppedPtes.size()) * NR);
        for (int i = 0; i < written.size(); i++) {
            mm.pages.hugePmds.splitPmd(v, written.get(i)); // try_to_unmap's split; the folio stays whole, mapped by PTEs
        }
        splitOwn(v, from, to, false, keep);
    }

    /**
     * split_folio for each huge page of the range that only this mapping maps, but those in
     * {@code keep}; with {@code partOnly}, only those the range covers in part. A huge page the
     * range covers whole counts in thp_swpout_fallback (its split is reclaim's, for swap).
     */
    private void splitOwn(VmArea v, long from, long to, boolean partOnly, LongHashSet keep) {
        LongHashSet heads = new LongHashSet();
        LongHashSet whole = new LongHashSet();
        RawPageTable t = mm.pageTable();
        for (long haddr = from & -SIZE; haddr < to; haddr += SIZE) {
            long pmd = t.entry(haddr, Level.PMD);
            if (HugeMemory.isHugePmd(pmd) && !ZeroPage.maps(pmd)) {
                add(heads, whole, Pte.pfn(pmd, PageSize.SIZE_2M), haddr >= from && haddr + SIZE <= to);
            }
        }
        PageOps.forEachLeaf(v, from, to, (va, slot, e) -> {
            if (Pte.isPresent(e) && !ZeroPage.maps(e)) {
                long pfn = Pte.pfn(e);
                long head = descriptors.folio(pfn);
                if ((descriptors.flags(head) & FrameFlags.LARGE_RMAPPABLE) != 0) {
                    long start = va - (pfn - head) * 4096;
                    // folio_pte_batch: covered only if all its pages are mapped here, each at its place
                    add(heads, whole, head, start >= from && start + SIZE <= to && ptes.mapsWhole(start, head));
                }
            }
        });
        for (long head : heads.toArray()) {
            boolean covered = whole.contains(head);
            if (partOnly && covered || keep != null && keep.contains(head)
                    || ctx.memory().descriptors().folioMappedShared(head)) {
                continue;
            }
            if (ctx.thp().split(head) == 0 && covered) {
                ctx.thp().countSwapoutFallback();
            }
        }
    }

    /** Records the huge page at {@code head}, and whether the range covers it whole. */
    private static void add(LongHashSet heads, LongHashSet whole, long head, boolean covered) {
        if (heads.add(head) && covered) {
            whole.add(head);
        }
    }

    /** The head of the huge page a huge PMD entry maps, if only this mapping maps it and no migration holds it; else -1. */
    private long ownHead(long pmd) {
        if (!HugeMemory.isHugePmd(pmd) || ZeroPage.maps(pmd)) {
            return -1;
        }
        long head = Pte.pfn(pmd, PageSize.SIZE_2M);
        int flags = descriptors.flags(head);
        if ((flags & (FrameFlags.LOCKED | FrameFlags.ISOLATED)) != 0 || ctx.memory().descriptors().folioMappedShared(head)) {
            return -1; // folio_trylock fails, or folio_maybe_mapped_shared
        }
        return head;
    }

    /** Clears {@code bits} of the PMD entry at {@code pmdSlot} (under its lock), whatever a CPU set meanwhile. */
    private void clearPmdBits(long pmdSlot, long pmd, long bits) {
        RawPageTable t = mm.pageTable();
        long cur = pmd;
        while ((cur & bits) != 0 && !t.compareAndSetSlot(pmdSlot, cur, cur & ~bits)) {
            cur = t.readSlot(pmdSlot);
        }
    }
}
