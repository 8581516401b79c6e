package org.vmcore.impl.swap;

import org.vmcore.api.NotifierEvent;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MappingOwner;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * Reclaim of one anonymous page (mm/vmscan.c shrink_folio_list, with folio_referenced,
 * add_to_swap, try_to_unmap and __remove_mapping; mm/rmap.c try_to_unmap_one's anonymous case):
 * the page goes into the swap cache under a new slot, every mapping of it in every address space
 * of its anon_vma family is replaced by a swap entry (the notifiers hear of each, the TLBs forget
 * it before it is freed), its contents are written to the slot if dirty, and it leaves the cache
 * and is freed. A clean lazy-free page is dropped instead, a written one gets its swap-backed
 * state back and stays.
 *
 * <p>What stops it halfway leaves a consistent state, as in Linux: entries already replaced stay
 * swap entries and the page stays in the swap cache, where their faults find it. A notifier that
 * refuses an invalidation stops it there and its exception goes to the caller.
 *
 * <p>The caller holds the machine lock shared and a reference to the page; this takes the folio
 * lock (only tried), and for each mapping the rmap lock for read and the page-table lock, with
 * the notifiers called outside both.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class SwapOut {
    /** The page was freed (swapped out or dropped). */
    static final int RECLAIMED = 0;
    /** The page stays (referenced, locked, mlocked, still mapped, or held by someone else). */
    static final int KEPT = 1;
    /** No free slot on the swap device: reclaim stops. */
    static final int FULL = 2;

    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final RmapWalk rmap;
    private final TlbShootdown shootdown;
    private final SwapCache cache;
    private final Runnable lazyfreed;

    SwapOut(PhysicalMemory memory, RmapWalk rmap, TlbShootdown shootdown, SwapCache cache, Runnable lazyfreed) {
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.rmap = rmap;
        this.shootdown = shootdown;
        this.cache = cache;
        this.lazyfreed = lazyfreed;
    }

    /**
     * shrink_folio_list for one isolated page the caller holds a reference to: {@link #RECLAIMED}
     * (the caller's put frees it), {@link #KEPT} or {@link #FULL}. With {@code ignoreReferences}
     * (MADV_PAGEOUT) recently used pages go too.
     */
    int shrinkFolio(long pfn, boolean ignoreReferences) {
        if (!FolioLock.tryLock(descriptors, pfn)) {
            return KEPT; // a migration, a fault or another reclaim has it
        }
        boolean added = false;
        try {
            int flags = descriptors.flags(pfn);
            if ((flags & FrameFlags.ALLOCATED) == 0 || (flags & (FrameFlags.HUGETLB | FrameFlags.HWPOISON | FrameFlags.MLOCKED)) != 0
                    || descriptors.order(pfn) != 0) {
                return KEPT;
            }
            long slot = cache.slotOf(pfn);
            if ((flags & FrameFlags.ANON) == 0 || descriptors.mapping(pfn) == 0) {
                return slot >= 0 && descriptors.mapcount(pfn) == 0 ? finish(pfn, slot) : KEPT; // read ahead, never mapped
            }
            if (!ignoreReferences && referenced(pfn)) {
                return KEPT; // folio_check_references: used since the last scan, it stays this time
            }
            if ((flags & FrameFlags.LAZYFREE) != 0) {
                return dropLazyFree(pfn, flags);
            }
            if (slot < 0) {
                slot = cache.addToSwap(pfn);
                if (slot < 0) {
                    return FULL;
                }
                added = true;
                descriptors.setFlags(pfn, FrameFlags.DIRTY); // add_to_swap dirties it: the slot has nothing yet
            }
            long s = slot;
            rmap.walkVmas(pfn, (vma, address) -> unmapOne(vma, address, pfn, s, false));
            if (descriptors.mapcount(pfn) != 0) {
                return KEPT; // the entries replaced stay swap entries, and their faults find the page here
            }
            return finish(pfn, slot);
        } finally {
            if (added) {
                cache.releaseIfUnused(pfn); // stopped before any entry named the new slot (a notifier refused): it goes back
            }
            FolioLock.unlock(descriptors, pfn);
        }
    }

    /** pageout and __remove_mapping: the contents go to the slot if dirty, and the page leaves the cache. */
    private int finish(long pfn, long slot) {
        if (cache.count(slot) == 0) {
            cache.releaseIfUnused(pfn); // no entry names it: nothing to write
            return descriptors.mapcount(pfn) == 0 && descriptors.refcount(pfn) == 1 ? RECLAIMED : KEPT;
        }
        if ((descriptors.flags(pfn) & FrameFlags.DIRTY) != 0) {
            cache.writeOut(slot, pfn);
            descriptors.clearFlags(pfn, FrameFlags.DIRTY);
        }
        return cache.removeMapping(pfn, 2) ? RECLAIMED : KEPT; // the cache's reference and the caller's
    }

    /** The lazy-free case of shrink_folio_list: a clean page is unmapped and dropped; a written one becomes swap-backed again. */
    private int dropLazyFree(long pfn, int flags) {
        if ((flags & FrameFlags.DIRTY) != 0) {
            descriptors.clearFlags(pfn, FrameFlags.LAZYFREE);
            return KEPT;
        }
        rmap.walkVmas(pfn, (vma, address) -> unmapOne(vma, address, pfn, -1, true));
        if (descriptors.mapcount(pfn) != 0 || descriptors.refcount(pfn) != 1) {
            return KEPT;
        }
        lazyfreed.run();
        return RECLAIMED;
    }

    /**
     * try_to_unmap_one for an anonymous page: the entry at {@code address} becomes the swap
     * entry of {@code slot} (or, dropping a lazy-free page, none). The notifiers hear of it
     * first, outside the rmap and page-table locks. Returns false to stop the walk.
     */
    private boolean unmapOne(VmArea vma, long address, long pfn, long slot, boolean lazyFree) {
        MmStruct mm = vma.owner();
        if (vma.detached()) {
            return true;
        }
        try (Invalidation inv = Invalidation.start(mm.notifiers(), address, address + 4096, NotifierEvent.CLEAR)) {
            int outcome = unmapLocked(vma, address, pfn, slot, lazyFree);
            if (outcome == UNMAPPED) {
                mm.notifiers().secondaryTlbs(address, address + 4096); // before the page may be freed
            }
            return outcome != STOP;
        }
    }

    private static final int UNMAPPED = 0;
    private static final int NOT_MAPPED = 1;
    private static final int STOP = 2;

    private int unmapLocked(VmArea vma, long address, long pfn, long slot, boolean lazyFree) {
        return underPtl(vma, address, pfn, false, ptSlot -> unmapEntry(vma, address, ptSlot, pfn, slot, lazyFree));
    }

    /** What runs on the entry's slot under its page-table lock. */
    @FunctionalInterface
    private interface EntryOp {
        int apply(long ptSlot);
    }

    /**
     * The rmap lock for read, the VMA still mapping the page at {@code address}, then its PTE's
     * page-table lock around {@code op}; NOT_MAPPED when the VMA or its table is gone, STOP for an
     * mlocked VMA when {@code stopIfLocked}.
     */
    private int underPtl(VmArea vma, long address, long pfn, boolean stopIfLocked, EntryOp op) {
        MappingOwner owner = rmap.owner(pfn);
        if (owner == null) {
            return NOT_MAPPED;
        }
        RwSem rmapLock = RmapWalk.lockOf(owner);
        rmapLock.downRead();
        try {
            if (vma.detached() || vma.address(descriptors.index(pfn)) != address) {
                return NOT_MAPPED;
            }
            MmStruct mm = vma.owner();
            long ptSlot = mm.pageTable().slot(address, Level.PTE);
            if (ptSlot < 0) {
                return NOT_MAPPED;
            }
            if (stopIfLocked && vma.locked()) {
                return STOP;
            }
            KMutex ptl = mm.lock().ptLocks().ofSlot(ptSlot);
            ptl.lock();
            try {
                return op.apply(ptSlot);
            } finally {
                ptl.unlock();
            }
        } finally {
            rmapLock.upRead();
        }
    }

    private int unmapEntry(VmArea vma, long address, long ptSlot, long pfn, long slot, boolean lazyFree) {
        MmStruct mm = vma.owner();
        RawPageTable table = mm.pageTable();
        long e = table.readSlot(ptSlot);
        if (!Pte.isPresent(e) || Pte.pfn(e) != pfn) {
            return NOT_MAPPED;
        }
        if (vma.locked()) {
            return STOP; // mlocked: the page stays (try_to_unmap_one's VM_LOCKED check)
        }
        long old = table.getAndClearSlot(ptSlot);
        shootdown.flushTlbMmRangeCpus(mm, address, address + 4096, 12); // ptep_clear_flush
        if (lazyFree) {
            if ((old & Pte.DIRTY) != 0) { // written since MADV_FREE: it is swap-backed again and stays
                table.compareAndSetSlot(ptSlot, 0, old);
                descriptors.clearFlags(pfn, FrameFlags.LAZYFREE);
                return STOP;
            }
        } else {
            if ((old & Pte.DIRTY) != 0) {
                descriptors.setFlags(pfn, FrameFlags.DIRTY);
            }
            // PG_anon_exclusive goes into the entry: no other mapping and no other swap entry shares the page
            boolean exclusive = descriptors.mapcount(pfn) == 1 && cache.count(slot) == 0;
            cache.duplicate(slot);
            long flags = (exclusive ? SwapEntry.EXCLUSIVE : 0) | ((old & Pte.SOFT_DIRTY) != 0 ? SwapEntry.SOFT_DIRTY : 0);
            table.compareAndSetSlot(ptSlot, 0, SwapCache.entryOf(slot, flags));
            mm.addSwapEntries(1);
        }
        mm.addAnonPages(-1);
        descriptors.addMapcount(pfn, -1);
        descriptors.addRefcount(pfn, -1);
        return UNMAPPED;
    }

    /**
     * folio_referenced: whether any entry mapping the page was accessed since the last look (or a
     * secondary MMU saw it used), clearing what it finds, so the next scan takes the page unless
     * it is used again. An mlocked mapping counts as referenced.
     */
    private boolean referenced(long pfn) {
        boolean[] young = {false};
        rmap.walkVmas(pfn, (vma, address) -> {
            if (vma.detached()) {
                return true;
            }
            int r = clearYoungLocked(vma, address, pfn);
            if (r == STOP) {
                young[0] = true;
                return false;
            }
            if (r == UNMAPPED) {
                young[0] = true;
            }
            young[0] |= vma.owner().notifiers().clearFlushYoung(address, address + 4096);
            return true;
        });
        return young[0];
    }

    /** ptep_clear_flush_young under the rmap and page-table locks: UNMAPPED when it was young, STOP when mlocked. */
    private int clearYoungLocked(VmArea vma, long address, long pfn) {
        RawPageTable table = vma.owner().pageTable();
        return underPtl(vma, address, pfn, true, ptSlot -> {
            long e = table.readSlot(ptSlot);
            if (!Pte.isPresent(e) || Pte.pfn(e) != pfn || (e & Pte.ACCESSED) == 0) {
                return NOT_MAPPED;
            }
            while (!table.compareAndSetSlot(ptSlot, e, e & ~Pte.ACCESSED)) {
                e = table.readSlot(ptSlot);
            }
            shootdown.flushTlbMmRangeCpus(vma.owner(), address, address + 4096, 12); // the next access sets A again
            return UNMAPPED;
        });
    }
}
