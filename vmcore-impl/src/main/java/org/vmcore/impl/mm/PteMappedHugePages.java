package org.vmcore.impl.mm;

import org.vmcore.api.PageSize;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * Transparent huge pages mapped by PTEs (after a split_huge_pmd) that a madvise range covers
 * whole, each page at its place in one 2 MiB-aligned PTE table, and that only this mapping maps:
 * what madvise_free_pte_range and madvise_cold_or_pageout_pte_range do with such a folio when
 * their PTE batch covers all of it (folio_pte_batch: nr == folio_nr_pages), without splitting it.
 * Everything runs under the table's page-table lock, where the 512 entries can change only by a
 * CPU setting their accessed and dirty bits.
 */
final class PteMappedHugePages {
    private static final long SIZE = HugeMemory.SIZE;
    private static final int NR = HugeMemory.NR;

    /** Visits one such huge page under its PTE table's lock. */
    @FunctionalInterface
    interface Visitor {
        void visit(long haddr, long ptSlot, long head);
    }

    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final MemMap descriptors;

    PteMappedHugePages(MmContext ctx, SimAddressSpace mm) {
        this.ctx = ctx;
        this.mm = mm;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
    }

    /** Each huge page {@code [from, to)} of {@code v} covers whole and maps by PTEs, as above. */
    void forEachWhole(VmArea v, long from, long to, Visitor visitor) {
        if (!mm.mayMapHugePmds()) {
            return;
        }
        RawPageTable t = mm.pageTable();
        for (long haddr = (from + SIZE - 1) & -SIZE; haddr + SIZE <= to && haddr + SIZE <= v.end(); haddr += SIZE) {
            long ptSlot = t.slot(haddr, Level.PTE);
            if (ptSlot < 0 || head(t, ptSlot) < 0) {
                continue; // no PTE table (none, or a huge entry), or no such huge page: checked again under the lock
            }
            KMutex ptl = ctx.lock().ptLocks().ofSlot(ptSlot);
            ptl.lock();
            try {
                long head = head(t, ptSlot);
                if (head >= 0) {
                    visitor.visit(haddr, ptSlot, head);
                }
            } finally {
                ptl.unlock();
            }
        }
    }

    /** Whether the 512 PTEs from the 2 MiB-aligned {@code haddr} map the huge page at {@code head} page by page, and only they. */
    boolean mapsWhole(long haddr, long head) {
        if ((haddr & (SIZE - 1)) != 0) {
            return false;
        }
        RawPageTable t = mm.pageTable();
        long ptSlot = t.slot(haddr, Level.PTE);
        return ptSlot >= 0 && head(t, ptSlot) == head;
    }

    /** The huge page the table's 512 entries from {@code ptSlot} map page by page, if only they map it; else -1. */
    private long head(RawPageTable t, long ptSlot) {
        long e = t.readSlot(ptSlot);
        if (!Pte.isPresent(e) || ZeroPage.maps(e)) {
            return -1;
        }
        long head = Pte.pfn(e);
        int flags = descriptors.flags(head);
        if ((flags & FrameFlags.LARGE_RMAPPABLE) == 0 || (flags & (FrameFlags.LOCKED | FrameFlags.ISOLATED)) != 0
                || descriptors.entireMapcount(head) != 0) {
            return -1;
        }
        for (int i = 1; i < NR; i++) {
            long x = t.readSlot(ptSlot + ((long) i << 3));
            if (!Pte.isPresent(x) || Pte.pfn(x) != head + i) {
                return -1;
            }
        }
        return ctx.memory().descriptors().folioMappedShared(head) ? -1 : head;
    }

    /** Clears {@code bits} of the 512 entries from {@code ptSlot}, whatever a CPU sets meanwhile. */
    void clearBits(long ptSlot, long bits) {
        RawPageTable t = mm.pageTable();
        for (int i = 0; i < NR; i++) {
            long slot = ptSlot + ((long) i << 3);
            long cur = t.readSlot(slot);
            while ((cur & bits) != 0 && !t.compareAndSetSlot(slot, cur, cur & ~bits)) {
                cur = t.readSlot(slot);
            }
        }
    }

    /**
     * The lazy-free case of try_to_unmap_one for a whole folio mapped by PTEs (batched, as for
     * lazy-free large folios): the 512 entries are cleared and the TLBs flushed; if none was
     * written and nothing but the entries holds the folio, its pages lose their mappings and true
     * is returned: the caller puts the 512 references after the notifier scope. Otherwise the
     * entries go back, and a written folio is swap-backed again (not lazy free).
     */
    boolean tryDrop(long haddr, long ptSlot, long head) {
        RawPageTable t = mm.pageTable();
        long[] old = new long[NR];
        boolean dirty = (descriptors.flags(head) & FrameFlags.DIRTY) != 0;
        for (int i = 0; i < NR; i++) {
            old[i] = t.getAndClearSlot(ptSlot + ((long) i << 3));
        }
        ctx.shootdown().flushTlbMmRangeCpus(mm, haddr, haddr + SIZE, PageSize.SIZE_4K.shift());
        for (int i = 0; i < NR; i++) {
            dirty |= (old[i] & Pte.DIRTY) != 0; // read after the flush: no CPU writes through a stale entry any more
        }
        if (!dirty && descriptors.refcount(head) == NR) {
            for (int i = 0; i < NR; i++) {
                descriptors.addMapcount(head + i, -1);
            }
            mm.addAnonPages(-NR);
            return true;
        }
        for (int i = 0; i < NR; i++) {
            t.compareAndSetSlot(ptSlot + ((long) i << 3), 0, old[i]); // under the lock: no fault filled them
        }
        if (dirty) {
            descriptors.clearFlags(head, FrameFlags.LAZYFREE); // folio_set_swapbacked
        }
        return false;
    }
}
