package org.vmcore.impl.swap;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.impl.base.HugePageSplitter;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.NumaNode;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * Reclaim driven by a call (mm/vmscan.c: shrink_node over the anonymous LRU, as direct reclaim
 * or a write to memory.reclaim runs it; reclaim_pages for MADV_PAGEOUT). vmcore keeps no LRU
 * lists: a clock hand per node goes over its frames in order, and the accessed bits stand for
 * the LRU's aging, as in the second-chance scheme the LRU approximates: a page used since the
 * last lap is passed over once (its bits cleared), so at most two laps reclaim what can be.
 * Each candidate is isolated (a reference and PG_isolated, as folio_isolate_lru takes) and
 * handed to {@link SwapOut}.
 *
 * <p>Locking: the machine lock shared for the whole call; nothing else between pages.
 */
public final class Reclaim {
    private static final int SKIP = FrameFlags.HUGETLB | FrameFlags.PGTABLE | FrameFlags.RESERVED | FrameFlags.HWPOISON
            | FrameFlags.ISOLATED | FrameFlags.LOCKED | FrameFlags.MLOCKED;

    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final SwapCache cache;
    private final SwapOut swapOut;
    private final MigrationEntryRefs migrationRefs;
    private final OperationHook hook;
    private final long[] hands;
    private volatile HugePageSplitter splits;

    public Reclaim(MachineLock lock, PhysicalMemory memory, RmapWalk rmap, TlbShootdown shootdown, SwapCache cache,
                   MigrationEntryRefs migrationRefs, Runnable lazyfreed, OperationHook hook) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.cache = cache;
        this.swapOut = new SwapOut(memory, rmap, shootdown, cache, lazyfreed);
        this.migrationRefs = migrationRefs;
        this.hook = hook;
        this.hands = new long[memory.nodes().size()];
        for (int n = 0; n < hands.length; n++) {
            hands[n] = memory.node(n).startPfn();
        }
    }

    /**
     * Sets how reclaim splits transparent huge pages: the deferred split shrinker runs before each
     * scan (shrink_slab's part of reclaim), and a huge page the scan meets is split and its pages
     * reclaimed one by one, as shrink_folio_list does without THP swap.
     */
    public void useSplits(HugePageSplitter splits) {
        this.splits = splits;
    }

    /** Machine.reclaim: validates, then reclaims under the machine lock; callbacks' failures reach the caller. */
    @SuppressWarnings("try") // a lock hold is used only for its scope
    public long reclaim(int node, long pages) {
        long reclaimed;
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            Nodes.check(hands.length, node);
            if (pages < 0) {
                throw new InvalidArgumentException("pages", pages, "must not be negative");
            }
            try {
                if (splits != null) {
                    splits.runDeferred(); // partly unmapped huge pages give back their unmapped pages first
                }
                reclaimed = shrinkNode(node, pages);
            } catch (Throwable e) { // a notifier refused an invalidation: what was reclaimed stays reclaimed
                throw hook.operationFailed(e);
            }
        }
        hook.afterOperation("reclaim");
        return reclaimed;
    }

    private long shrinkNode(int node, long pages) {
        NumaNode n = memory.node(node);
        long start = n.startPfn();
        long end = n.endPfn();
        long pfn = hands[node];
        long reclaimed = 0;
        try {
            for (long scanned = 0; reclaimed < pages && scanned < 2 * n.frames(); ) {
                if (pfn >= end) {
                    pfn = start;
                }
                if ((pfn & (FrameDescriptors.SECTION_FRAMES - 1)) == 0 && !descriptors.isMaterialised(pfn)) {
                    long next = Math.min(end, pfn + FrameDescriptors.SECTION_FRAMES); // never written: nothing allocated there
                    scanned += next - pfn;
                    pfn = next;
                    continue;
                }
                int flags = descriptors.flags(pfn);
                long step = (flags & FrameFlags.ALLOCATED) != 0 ? 1L << descriptors.order(pfn) : 1;
                long at = pfn;
                pfn += step;
                scanned += step;
                // shrink_folio_list without THP swap: a huge page not used since the last look, and
                // not mlocked, is split when a swap slot is free (thp_swpout_fallback), or when it is
                // lazy free (Linux drops it whole); its pages are then taken one by one
                boolean lazy = (flags & FrameFlags.LAZYFREE) != 0;
                if (step == 1L << MemMap.LARGE_ORDER && (flags & FrameFlags.LARGE_RMAPPABLE) != 0 && splits != null
                        && (lazy || cache.enabled() && cache.device().freePages() > 0) && !splits.referencedOrLocked(at)
                        && splits.split(at) == 0) {
                    if (!lazy) {
                        splits.countSwapoutFallback();
                    }
                    pfn = at; // split_folio_to_list: its pages are 4 KiB pages now, scanned next
                    scanned -= step;
                    continue;
                }
                if (step != 1 || !isolate(at)) {
                    continue;
                }
                int r;
                try {
                    r = swapOut.shrinkFolio(at, false);
                } finally {
                    putback(at);
                }
                if (r == SwapOut.RECLAIMED) {
                    reclaimed++;
                } else if (r == SwapOut.FULL) {
                    break;
                }
            }
        } finally {
            hands[node] = pfn;
        }
        return reclaimed;
    }

    /**
     * reclaim_pages for MADV_PAGEOUT: each page of {@code isolated} (isolated by the caller with
     * {@link #isolate}) is reclaimed whether used recently or not, then put back.
     * Returns the pages reclaimed.
     */
    public long pageout(LongArrayList isolated) {
        long reclaimed = 0;
        boolean full = false;
        for (int i = 0; i < isolated.size(); i++) {
            long pfn = isolated.get(i);
            try {
                if (!full) {
                    int r = swapOut.shrinkFolio(pfn, true);
                    reclaimed += r == SwapOut.RECLAIMED ? 1 : 0;
                    full = r == SwapOut.FULL;
                }
            } catch (Throwable e) {
                for (int j = i; j < isolated.size(); j++) {
                    putback(isolated.get(j));
                }
                throw e;
            }
            putback(pfn);
        }
        return reclaimed;
    }

    /**
     * folio_isolate_lru for a base page that reclaim may take (anonymous, or in the swap cache;
     * not hugetlb, a table, mlocked, or locked or isolated by a migration): a reference and
     * PG_isolated. May be called under a page-table lock.
     */
    public boolean isolate(long pfn) {
        if (!candidate(pfn) || !descriptors.getUnlessZero(pfn)) {
            return false;
        }
        if (!candidate(pfn) || descriptors.order(pfn) != 0 || !descriptors.trySetFlag(pfn, FrameFlags.ISOLATED)) {
            put(pfn); // freed and reused meanwhile, or another isolation was first
            return false;
        }
        return true;
    }

    private boolean candidate(long pfn) {
        int flags = descriptors.flags(pfn);
        return (flags & FrameFlags.ALLOCATED) != 0 && (flags & SKIP) == 0
                && ((flags & FrameFlags.ANON) != 0 || cache.slotOf(pfn) >= 0);
    }

    /** folio_putback_lru: PG_isolated goes, then the reference; the last one frees the page. */
    private void putback(long pfn) {
        descriptors.clearFlags(pfn, FrameFlags.ISOLATED);
        put(pfn);
    }

    private void put(long pfn) {
        if (descriptors.addRefcount(pfn, -1) == 0) {
            migrationRefs.releaseIfUnreferenced(pfn);
        }
    }
}
