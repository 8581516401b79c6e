package org.vmcore.impl.mm;

import org.vmcore.api.FaultResult;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * do_swap_page (mm/memory.c) and swapin_readahead's insertion (mm/swap_state.c): a fault on a
 * swap entry finds the page in the swap cache or reads it from the device into a new page put
 * there, then maps it under the entry's page-table lock if the entry is still the one faulted
 * on. The swap count drops by one. When no entry names the slot any more, the page leaves the
 * cache and the slot is freed if should_try_to_free_swap says so (a write fault mapping it
 * exclusively, an mlocked VMA, a swap device more than half full); else it stays in the cache
 * (SwapCached), and a later reclaim of it while clean writes nothing. A page nothing else shares
 * (no other entry, no other mapping) is mapped writable in a writable VMA, as do_swap_page
 * reuses an exclusive page; a shared one is mapped read-only, and a write fault then copies it
 * at once (do_wp_page).
 *
 * <p>Called under the mmap_lock for read, with no page-table lock; the page's folio lock is
 * held from the cache lookup to the mapping. A page locked by another thread (a reclaim writing
 * it out, a migration) is waited for with nothing but the mmap_lock held, or, from inside a
 * callback, answered with {@link FaultResult#MIGRATION_WAIT}.
 */
final class SwapIn {
    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final MemMap descriptors;
    private final SwapCache cache;
    private final FaultHandler faults;

    SwapIn(MmContext ctx, SimAddressSpace mm, FaultHandler faults) {
        this.mm = mm;
        this.ctx = ctx;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
        this.cache = ctx.swapCache();
        this.faults = faults;
    }

    /** do_swap_page for the swap entry {@code e} at {@code ptSlot}. */
    FaultResult doSwapPage(VmArea vma, long addr, long ptSlot, long e, boolean write) {
        long slot = SwapEntry.offset(e);
        RawPageTable table = mm.pageTable();
        while (true) {
            boolean read = false;
            long pfn = cache.lookupAndGet(slot);
            if (pfn < 0) {
                if (table.readSlot(ptSlot) != e) {
                    return FaultResult.ALREADY_MAPPED; // swapped in or zapped by another thread meanwhile
                }
                pfn = readPage(slot);
                if (pfn == -2) {
                    continue; // another fault put a page there first
                }
                if (pfn < 0) {
                    return FaultResult.ALREADY_MAPPED; // the entry went meanwhile
                }
                read = true;
            } else if (!FolioLock.tryLock(descriptors, pfn)) {
                mm.pages.putReference(pfn, false);
                if (ctx.callbackFailures().inCallback() || ctx.migrating().isCurrent()) {
                    return FaultResult.MIGRATION_WAIT; // the holder may need this operation's locks
                }
                FolioLock.waitUnlocked(descriptors, pfn);
                if (Thread.currentThread().isInterrupted()) {
                    return FaultResult.MIGRATION_WAIT; // its interrupt status stays set: the caller decides
                }
                continue;
            } else if (cache.slotOf(pfn) != slot) { // left the cache before we had it locked
                FolioLock.unlock(descriptors, pfn);
                mm.pages.putReference(pfn, false);
                continue;
            }
            long mapped = 0;
            try {
                mapped = map(vma, addr, ptSlot, e, pfn, slot, write);
            } finally {
                if (mapped == 0 || cache.shouldTryToFreeSwap(vma.locked(), write && (mapped & Pte.RW) != 0)) {
                    cache.releaseIfUnused(pfn); // folio_free_swap: only once no entry names the slot
                }
                FolioLock.unlock(descriptors, pfn);
                mm.pages.putReference(pfn, false);
            }
            if (mapped == 0) {
                return FaultResult.ALREADY_MAPPED;
            }
            if (write && (mapped & Pte.RW) == 0 && vma.protection().write()) {
                faults.writeProtectFault(vma, addr, ptSlot, mapped); // shared with a fork relative: copy it now
            }
            return read ? FaultResult.SWAP_IN : FaultResult.SWAP_CACHE;
        }
    }

    /**
     * The swap-cache part of wp_can_reuse_anon_folio: a page this mapping alone maps leaves the
     * swap cache (folio_free_swap, its folio lock only tried) when no swap entry names its slot,
     * so the write reuses it rather than copy it. Cheap when the cache is empty.
     */
    void freeSwapForReuse(long pfn) {
        if ((descriptors.flags(pfn) & FrameFlags.ANON) != 0) {
            cache.freeSwapCacheOfLastMapping(pfn);
        }
    }

    /**
     * __read_swap_cache_async: a new page, locked, into the cache under {@code slot}, then the
     * slot's contents into it. The new page, or -2 when another page got there first, -1 when no
     * entry names the slot any more. Throws OutOfMemoryException with nothing changed.
     */
    private long readPage(long slot) {
        long fresh = mm.pages.allocateBasePage(); // zeroed: a slot never written reads as zero
        FolioLock.tryLock(descriptors, fresh);
        int r = cache.addFresh(slot, fresh);
        if (r != SwapCache.ADDED) {
            ctx.memory().free(fresh);
            return r == SwapCache.RACED ? -2 : -1;
        }
        descriptors.setFlags(fresh, FrameFlags.UPTODATE);
        cache.readIn(slot, fresh);
        return fresh;
    }

    /** The mapping itself, under the page-table lock; the new entry, or 0 when the swap entry changed meanwhile. */
    private long map(VmArea vma, long addr, long ptSlot, long e, long pfn, long slot, boolean write) {
        AnonVma anonVma = mm.pages.anonVmaPrepare(vma); // before the page-table lock, which ranks below it
        RawPageTable table = mm.pageTable();
        KMutex ptl = ctx.lock().ptLocks().ofSlot(ptSlot);
        ptl.lock();
        try {
            if (table.readSlot(ptSlot) != e) {
                return 0;
            }
            boolean exclusive = cache.swapFreeForMap(slot) == 0 && descriptors.mapcount(pfn) == 0;
            if (descriptors.mapping(pfn) == 0) {
                // __folio_set_anon: a page others may map goes under the family's root anon_vma, which reaches them all
                AnonVma owner = exclusive ? anonVma : anonVma.root();
                descriptors.setFlags(pfn, FrameFlags.ANON | FrameFlags.UPTODATE);
                descriptors.setMapping(pfn, owner.id(), vma.linearPageIndex(addr));
            }
            boolean writable = exclusive && vma.protection().write();
            long entry = Pte.leaf(pfn, PageSize.SIZE_4K, FaultHandler.leafFlags(vma, writable, write && writable));
            table.compareAndSetSlot(ptSlot, e, entry);
            descriptors.addMapcount(pfn, 1);
            descriptors.addRefcount(pfn, 1);
            mm.addAnonPages(1);
            mm.addSwapEntries(-1);
            return entry;
        } finally {
            ptl.unlock();
        }
    }
}
