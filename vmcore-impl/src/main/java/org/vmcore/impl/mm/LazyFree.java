package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * Lazy free (mm/madvise.c: madvise_free_pte_range; mm/vmscan.c: shrink_folio_list's lazy-free
 * case): MADV_FREE makes the private anonymous pages only this mapping maps lazy free, clearing
 * the accessed and dirty bits of their entries, and discards swapped-out pages
 * (free_swap_and_cache); MADV_PAGEOUT drops the lazy-free pages that stayed clean, gives a
 * written one back its swap-backed state, and with swap has the other pages swapped out
 * ({@code Reclaim.pageout}). Pages shared with a forked child (for FREE also through the swap
 * cache, with a relative's swap entry), the zero page and pages locked by a migration are passed by;
 * transparent huge pages are {@link MadviseThp}'s. Both run under the mmap_lock for read, each
 * table under its page-table lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class LazyFree {
    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final MemMap descriptors;
    private final ReclaimCounts counts;
    private final MadviseThp huge;

    LazyFree(MmContext ctx, SimAddressSpace mm, MadviseThp huge) {
        this.huge = huge;
        this.ctx = ctx;
        this.mm = mm;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
        this.counts = ctx.reclaimCounts();
    }

    /** madvise_free_single_vma over {@code [from, to)} of a private anonymous VMA. */
    void markLazyFree(VmArea v, long from, long to) {
        RawPageTable t = mm.pageTable();
        long[] marked = {0, 0};
        huge.splitPartlyCovered(v, from, to);
        try (Invalidation inv = Invalidation.start(mm.notifiers(), from, to, NotifierEvent.CLEAR)) {
            marked[0] += huge.free(v, from, to); // madvise_free_huge_pmd: those covered whole stay whole
            PageOps.forEachLeafLocked(v, from, to, (va, slot, e) -> {
                if (SwapCache.isSwapEntry(e)) { // madvise_free_pte_range: a swapped-out page is discarded now
                    t.getAndClearSlot(slot);
                    ctx.swapCache().swapFree(SwapEntry.offset(e));
                    marked[1]++;
                    return;
                }
                long pfn = ownPage(e, false);
                if (pfn < 0) {
                    return;
                }
                long cur = e;
                while (!t.compareAndSetSlot(slot, cur, cur & ~(Pte.ACCESSED | Pte.DIRTY))) {
                    cur = t.readSlot(slot); // a CPU set A or D meanwhile
                }
                descriptors.clearFlags(pfn, FrameFlags.DIRTY);
                if ((descriptors.setFlags(pfn, FrameFlags.LAZYFREE) & FrameFlags.LAZYFREE) == 0) {
                    marked[0]++; // folio_mark_lazyfree counts a swap-backed page only, once
                }
            });
            ctx.shootdown().flushTlbMmRange(mm, from, to, 12); // a CPU's next write must set D again
        }
        mm.addSwapEntries(-marked[1]);
        counts.addLazyfree(marked[0]);
    }

    /** reclaim_pages over {@code [from, to)}: the clean lazy-free pages go, after the flush. */
    void pageout(VmArea v, long from, long to) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
            return; // shmem would need swap
        }
        RawPageTable t = mm.pageTable();
        LongArrayList victims = new LongArrayList();
        LongArrayList swapVictims = new LongArrayList(0);
        boolean swap = ctx.swapCache().enabled();
        huge.pageout(v, from, to); // huge pages: dropped if lazy free and clean, else split
        try (Invalidation inv = Invalidation.start(mm.notifiers(), from, to, NotifierEvent.CLEAR)) {
            // a huge entry left here (shared, pinned, the huge zero page) stays whole, as in Linux
            PageOps.forEachLeafLocked(v, from, to, (va, slot, e) -> {
                long pfn = ownPage(e, true);
                if (pfn < 0) {
                    return;
                }
                if ((descriptors.flags(pfn) & FrameFlags.LAZYFREE) == 0) {
                    if (swap && ctx.reclaim().isolate(pfn)) {
                        swapVictims.add(pfn); // swapped out after the walk, by reclaim_pages
                    }
                    return;
                }
                if ((e & Pte.DIRTY) != 0 || (descriptors.flags(pfn) & FrameFlags.DIRTY) != 0) {
                    descriptors.clearFlags(pfn, FrameFlags.LAZYFREE); // written since: folio_set_swapbacked, it stays
                    return;
                }
                long old = t.getAndClearSlot(slot);
                if ((old & Pte.DIRTY) != 0) { // a CPU wrote as it went: put the entry back, the page stays
                    t.compareAndSetSlot(slot, 0, old);
                    descriptors.clearFlags(pfn, FrameFlags.LAZYFREE);
                    return;
                }
                mm.addAnonPages(-1);
                victims.add(pfn);
            });
            ctx.shootdown().flushTlbMmRange(mm, from, to, 12);
        }
        for (int i = 0; i < victims.size(); i++) {
            mm.pages.putMapped(victims.get(i), false); // after the flush: no CPU reaches it any more
        }
        counts.addLazyfreed(victims.size());
        ctx.reclaim().pageout(swapVictims);
    }

    /**
     * The anonymous page {@code e} maps if only this mapping maps it and no migration holds it;
     * else -1. A swap-cache page qualifies for PAGEOUT; for FREE only once it could leave the
     * cache (madvise_free_pte_range's folio_free_swap: no swap entry names its slot).
     */
    private long ownPage(long e, boolean swapCacheToo) {
        if (!Pte.isPresent(e) || ZeroPage.maps(e)) {
            return -1;
        }
        long pfn = Pte.pfn(e);
        int flags = descriptors.flags(pfn);
        boolean own = (flags & FrameFlags.ANON) != 0
                && (flags & (FrameFlags.LOCKED | FrameFlags.ISOLATED | FrameFlags.LARGE_RMAPPABLE)) == 0
                && descriptors.mapcount(pfn) == 1; // tail pages of a transparent huge page carry no flags: not own
        if (own && !swapCacheToo) {
            ctx.swapCache().freeSwapCacheOfLastMapping(pfn);
            own = ctx.swapCache().slotOf(pfn) < 0; // still cached: a relative's swap entry names it
        }
        return own ? pfn : -1;
    }
}
