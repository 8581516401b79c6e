package org.vmcore.impl.swap;

import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * The swap cache (mm/swap_state.c) and the swap counts of the device's slots (mm/swapfile.c:
 * swap_duplicate, swap_free, free_swap_and_cache): a page being swapped out, read in, or read
 * ahead sits here under its slot, so that every swap entry naming the slot finds the same page.
 * The cache holds one reference on each of its pages.
 *
 * <p>A slot is given back when its swap count is 0 and no page stands for it; a page leaves the
 * cache once no swap entry names its slot any more. Whoever holds the page's folio lock decides
 * that ({@link #releaseIfUnused}); a swap_free that finds the page locked leaves it to the holder.
 *
 * <p>Locking: the device's monitor guards both maps and every swap_map word; it is a leaf lock
 * (taken under page-table locks). Freeing a page happens after it is dropped.
 */
public final class SwapCache {
    /** {@link #addFresh}: the page went in. */
    public static final int ADDED = 0;
    /** {@link #addFresh}: another page stands for the slot already; look it up again. */
    public static final int RACED = 1;
    /** {@link #addFresh}: no swap entry names the slot any more; nothing to read. */
    public static final int GONE = 2;

    private final SwapDevice device;
    private final MemMap descriptors;
    private final PhysicalMemory memory;
    private final DirectMap frames;
    private final LongLongHashMap pageOfSlot = new LongLongHashMap();
    private final LongLongHashMap slotOfPage = new LongLongHashMap();
    private volatile int pages; // pageOfSlot's size, for the paths that look only when the cache holds anything

    public SwapCache(SwapDevice device, PhysicalMemory memory) {
        this.device = device;
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.frames = SharedSecrets.directMap(memory);
    }

    public SwapDevice device() {
        return device;
    }

    /** Whether a swap device was configured. */
    public boolean enabled() {
        return device.totalPages() > 0;
    }

    /** Whether {@code e} is a swap entry of a swap device (not a migration, hwpoison or other special entry). */
    public static boolean isSwapEntry(long e) {
        return Pte.isSwap(e) && SwapEntry.type(e) < SwapEntry.MAX_SWAPFILES;
    }

    /** The swap entry of {@code slot} (type 0, the one device). */
    static long entryOf(long slot, long flags) {
        return SwapEntry.make(0, slot, flags);
    }

    // ---- lookups ----

    /** The page standing for {@code slot}, or -1; a snapshot. */
    public long peek(long slot) {
        synchronized (device) {
            return pageOfSlot.getIfAbsent(slot, -1);
        }
    }

    /** The slot the page {@code pfn} stands for, or -1 when it is not in the swap cache. */
    public long slotOf(long pfn) {
        synchronized (device) {
            return slotOfPage.getIfAbsent(pfn, -1);
        }
    }

    /** swap_cache_get_folio: the page of {@code slot} with a reference taken for the caller, or -1. */
    public long lookupAndGet(long slot) {
        synchronized (device) {
            long pfn = pageOfSlot.getIfAbsent(slot, -1);
            return pfn >= 0 && descriptors.getUnlessZero(pfn) ? pfn : -1;
        }
    }

    /** The swap count of {@code slot} (entries naming it). */
    public int count(long slot) {
        synchronized (device) {
            return device.word(slot) & SwapDevice.COUNT_MASK;
        }
    }

    /** Pages in the swap cache (SwapCached / 4 KiB). */
    public long cachedPages() {
        synchronized (device) {
            return pageOfSlot.size();
        }
    }

    /** Every (slot, count, page-or--1) in use, for the invariant checker; under the exclusive machine lock. */
    public void forEachSlotInUse(SlotVisitor visitor) {
        synchronized (device) {
            device.forEachInUse(slot -> {
                int w = device.word(slot);
                visitor.visit(slot, w & SwapDevice.COUNT_MASK, (w & SwapDevice.HAS_CACHE) != 0, pageOfSlot.getIfAbsent(slot, -1));
            });
        }
    }

    /** One slot in use. */
    @FunctionalInterface
    public interface SlotVisitor {
        void visit(long slot, int count, boolean hasCache, long pfn);
    }

    // ---- swap counts ----

    /** swap_duplicate: one more entry names {@code slot} (fork copies it). */
    public void duplicate(long slot) {
        synchronized (device) {
            int w = device.word(slot);
            if ((w & SwapDevice.COUNT_MASK) == SwapDevice.COUNT_MASK || w == 0) {
                throw new IllegalStateException("swap_duplicate of slot " + slot + " with swap_map word 0x" + Integer.toHexString(w));
            }
            device.setWord(slot, w + 1);
        }
    }

    /**
     * free_swap_and_cache, for a swap entry just cleared (zap): one entry fewer; when none is
     * left, the slot's page leaves the cache (if its folio lock is free: else its holder does it)
     * and the slot is given back. May be called under a page-table lock.
     */
    public void swapFree(long slot) {
        long put = -1;
        synchronized (device) {
            int w = decrement(slot);
            if (w == SwapDevice.HAS_CACHE) {
                long pfn = pageOfSlot.getIfAbsent(slot, -1);
                if (pfn >= 0 && FolioLock.tryLock(descriptors, pfn)) {
                    delete(slot, pfn);
                    put = pfn;
                }
            }
        }
        if (put >= 0) {
            putLocked(put);
        }
    }

    /** swap_free for the entry a swap-in just replaced by the page: returns the count left. */
    public int swapFreeForMap(long slot) {
        synchronized (device) {
            return decrement(slot) & SwapDevice.COUNT_MASK;
        }
    }

    private int decrement(long slot) {
        int w = device.word(slot);
        if ((w & SwapDevice.COUNT_MASK) == 0) {
            return w; // "swap_free: Unused swap offset entry": Linux logs it and goes on; the invariant checker names it
        }
        w--;
        device.setWord(slot, w);
        if (w == 0) {
            device.release(slot);
        }
        return w;
    }

    // ---- the cache (the caller holds the page's folio lock) ----

    /** add_to_swap for a page about to be swapped out: a free slot, the page under it; -1 when the device is full. */
    long addToSwap(long pfn) {
        synchronized (device) {
            long slot = device.allocSlot();
            if (slot >= 0) {
                insert(slot, pfn);
            }
            return slot;
        }
    }

    /** __read_swap_cache_async's insertion of a new locked page for {@code slot}: {@link #ADDED}, {@link #RACED} or {@link #GONE}. */
    public int addFresh(long slot, long pfn) {
        synchronized (device) {
            int w = device.word(slot);
            if ((w & SwapDevice.COUNT_MASK) == 0) {
                return GONE;
            }
            if ((w & SwapDevice.HAS_CACHE) != 0) {
                return RACED;
            }
            device.setWord(slot, w | SwapDevice.HAS_CACHE);
            insert(slot, pfn);
            return ADDED;
        }
    }

    private void insert(long slot, long pfn) {
        pages = pages + 1; // under the monitor
        pageOfSlot.put(slot, pfn);
        slotOfPage.put(pfn, slot);
        descriptors.addRefcount(pfn, 1); // the cache's reference
    }

    /** Removes the page from the cache and clears SWAP_HAS_CACHE; the caller drops the cache's reference. */
    private void delete(long slot, long pfn) {
        pages = pages - 1; // under the monitor
        pageOfSlot.remove(slot);
        slotOfPage.remove(pfn);
        int w = device.word(slot) & ~SwapDevice.HAS_CACHE;
        device.setWord(slot, w);
        if (w == 0) {
            device.release(slot);
        }
    }

    /**
     * free_swap_cache for a page whose last mapping is being zapped (the caller still holds that
     * mapping and its reference): if no swap entry names its slot, the page leaves the cache (its
     * folio lock only tried) and the slot is freed, so that the zap's put frees the page. Cheap
     * when the cache is empty.
     */
    public void freeSwapCacheOfLastMapping(long pfn) {
        if (pages == 0 || descriptors.mapcount(pfn) != 1) {
            return;
        }
        synchronized (device) {
            // the lock is tried only while the page is in the cache, whose reference keeps it allocated
            long slot = slotOfPage.getIfAbsent(pfn, -1);
            if (slot < 0 || (device.word(slot) & SwapDevice.COUNT_MASK) != 0 || !FolioLock.tryLock(descriptors, pfn)) {
                return;
            }
            delete(slot, pfn);
        }
        putLocked(pfn); // the last reference when the mapping went meanwhile (a DONTNEED beside a write fault)
    }

    /**
     * should_try_to_free_swap for a page a swap-in just mapped: the slot is let go at once when
     * the swap device is more than half full, the VMA is mlocked, or a write fault maps the page
     * exclusively; else the page stays in the cache (SwapCached) with its slot, so that reclaiming
     * it again while it stays clean costs no write.
     */
    public boolean shouldTryToFreeSwap(boolean locked, boolean exclusiveWrite) {
        return locked || exclusiveWrite || device.vmSwapFull();
    }

    /**
     * folio_free_swap for a locked page: if no swap entry names its slot any more, the page
     * leaves the cache and the cache's reference is dropped (never the last: the caller holds
     * one). Returns whether it left.
     */
    public boolean releaseIfUnused(long pfn) {
        synchronized (device) {
            long slot = slotOfPage.getIfAbsent(pfn, -1);
            if (slot < 0 || (device.word(slot) & SwapDevice.COUNT_MASK) != 0) {
                return false;
            }
            delete(slot, pfn);
        }
        descriptors.addRefcount(pfn, -1);
        return true;
    }

    /**
     * __remove_mapping for a locked, unmapped page whose contents are on the device: it leaves
     * the cache unless someone else took a reference meanwhile ({@code expectedRefs} counts the
     * cache's and the caller's). The cache's reference is dropped; the caller's is left.
     */
    boolean removeMapping(long pfn, int expectedRefs) {
        synchronized (device) {
            long slot = slotOfPage.getIfAbsent(pfn, -1);
            if (slot < 0 || descriptors.refcount(pfn) != expectedRefs || descriptors.mapcount(pfn) != 0) {
                return false;
            }
            delete(slot, pfn);
        }
        descriptors.addRefcount(pfn, -1);
        return true;
    }

    /**
     * folio_migrate_mapping of a swap-cache page: the slot and the cache's reference move from
     * {@code oldPfn} to {@code newPfn}; nothing when the old page is not in the cache. The caller
     * (a migration) holds both folio locks.
     */
    public void migrate(long oldPfn, long newPfn) {
        synchronized (device) {
            long slot = slotOfPage.getIfAbsent(oldPfn, -1);
            if (slot < 0) {
                return;
            }
            slotOfPage.remove(oldPfn);
            pageOfSlot.put(slot, newPfn);
            slotOfPage.put(newPfn, slot);
            descriptors.addRefcount(newPfn, 1);
            descriptors.addRefcount(oldPfn, -1);
        }
    }

    /** The slot gets the page's contents (pswpout); the caller holds the folio lock. */
    void writeOut(long slot, long pfn) {
        device.write(slot, frames, pfn);
    }

    /** The page gets the slot's contents (pswpin); the caller holds the folio lock of the new page. */
    public void readIn(long slot, long pfn) {
        device.read(slot, frames, pfn);
    }

    /** Unlocks a page and drops a reference, freeing it when that was the last. */
    private void putLocked(long pfn) {
        if (descriptors.addRefcount(pfn, -1) == 0) {
            memory.free(pfn); // clears the descriptor, the lock bit with it
        } else {
            FolioLock.unlock(descriptors, pfn);
        }
    }
}
