package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * The madvise advice that feeds reclaim and swap-in (mm/madvise.c): MADV_COLD
 * (madvise_cold_or_pageout_pte_range without pageout: the accessed bits of the pages only this
 * mapping maps are cleared and PG_referenced with them, so reclaim takes them first) and
 * MADV_WILLNEED (madvise_willneed's swapin_walk_pmd_entry: the slots the range's swap entries
 * name are read into the swap cache, not mapped). Both run under the mmap_lock for read, each
 * table under its page-table lock; the reads happen after the walk, with no page-table lock.
 */
final class MadviseSwap {
    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final MemMap descriptors;
    private final SwapCache cache;
    private final MadviseThp huge;

    MadviseSwap(MmContext ctx, SimAddressSpace mm, MadviseThp huge) {
        this.huge = huge;
        this.ctx = ctx;
        this.mm = mm;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
        this.cache = ctx.swapCache();
    }

    /** MADV_COLD over {@code [from, to)} of a VMA that takes it (not hugetlb, not mlocked). */
    void cold(VmArea v, long from, long to) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
            return; // shmem pages are not swapped by vmcore: nothing to deactivate for reclaim
        }
        huge.splitPartlyCovered(v, from, to);
        huge.cold(v, from, to);
        RawPageTable t = mm.pageTable();
        PageOps.forEachLeafLocked(v, from, to, (va, slot, e) -> {
            if (!Pte.isPresent(e) || ZeroPage.maps(e)) {
                return;
            }
            long pfn = Pte.pfn(e);
            int flags = descriptors.flags(pfn);
            if ((flags & FrameFlags.ANON) == 0 || descriptors.mapcount(pfn) != 1) {
                return; // folio_maybe_mapped_shared: other mappings' use is not ours to forget
            }
            long cur = e;
            while ((cur & Pte.ACCESSED) != 0 && !t.compareAndSetSlot(slot, cur, cur & ~Pte.ACCESSED)) {
                cur = t.readSlot(slot);
            }
            descriptors.clearFlags(pfn, FrameFlags.REFERENCED);
        });
        ctx.shootdown().flushTlbMmRange(mm, from, to, 12); // tlb_remove_tlb_entry: the next use sets A again
    }

    /** MADV_WILLNEED over {@code [from, to)}: readahead of the swapped-out pages of private anonymous memory. */
    void willneed(VmArea v, long from, long to) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE || !cache.enabled()) {
            return;
        }
        LongArrayList slots = new LongArrayList(0);
        PageOps.forEachLeafLocked(v, from, to, (va, slot, e) -> {
            if (SwapCache.isSwapEntry(e)) {
                slots.add(SwapEntry.offset(e));
            }
        });
        for (int i = 0; i < slots.size() && readahead(slots.get(i)); i++) {
            // until memory runs out: readahead is best effort
        }
    }

    /**
     * __read_swap_cache_async for readahead: the page of {@code slot} into the swap cache if it is
     * not there, unmapped. False when no frame was free.
     */
    private boolean readahead(long slot) {
        if (cache.peek(slot) >= 0) {
            return true;
        }
        long fresh = ctx.memory().tryAllocate(mm.homeNode(), 0, true);
        if (fresh < 0) {
            return false;
        }
        FolioLock.tryLock(descriptors, fresh);
        if (cache.addFresh(slot, fresh) != SwapCache.ADDED) {
            ctx.memory().free(fresh); // swapped in meanwhile, or the entry went
            return true;
        }
        descriptors.setFlags(fresh, FrameFlags.UPTODATE);
        cache.readIn(slot, fresh);
        cache.releaseIfUnused(fresh); // the entry went while it was read
        FolioLock.unlock(descriptors, fresh);
        mm.pages.putReference(fresh, false); // the allocation's: the cache holds it now
        return true;
    }
}
