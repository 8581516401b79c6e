package org.vmcore.impl.mm;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * unmap_ref_private: when a private hugetlb reservation owner must copy a page it shares (with
 * children after fork) and the pool has no page left, the owner's mapping is the one that must
 * not fail, so the page is taken from the others. Every other private, non-owner VMA of the
 * file that maps the same file index through an entry for this very page loses that entry and
 * is marked HPAGE_RESV_UNMAPPED: a later fault there gets SIGBUS, since faulting in a fresh page
 * would look like lost data. Shared mappings are left alone (they map the page cache, not this
 * anonymous page). Runs under the machine lock, from the owner's fault.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class UnmapRefPrivate {
    private UnmapRefPrivate() {
    }

    /** Unmaps huge page {@code pfn}, which {@code owner} maps at {@code addr}, from every other private mapping. */
    static void unmapRefPrivate(VmArea owner, long addr, long pfn, TlbShootdown shootdown, PageOps pages) {
        assert owner.owner().lock().isHeldByCurrentThread();
        long pgoff = owner.linearPageIndex(addr);
        boolean changed = false;
        owner.mapping().iMmapRwsem().downWrite(); // i_mmap_lock_write: the other mappings stay while they lose the page
        try {
            for (VmArea other : owner.mapping().iMmap().overlapping(pgoff, pgoff)) {
                if (other == owner || other.kind() != VmaKind.HUGETLB_PRIVATE || other.reservationOwner()) {
                    continue;
                }
                long va = other.address(pgoff);
                if (va >= 0) {
                    changed |= unmapIfMapped(other, va, pfn, shootdown, pages, changed);
                }
            }
        } finally {
            owner.mapping().iMmapRwsem().upWrite();
        }
    }

    /**
     * __unmap_hugepage_range with a ref_page: clears the entry at va only if it maps {@code pfn};
     * returns whether it did. Until a first child lost its entry, a notifier may refuse and abort
     * the owner's fault with nothing changed; after that the take-back completes.
     */
    private static boolean unmapIfMapped(VmArea vma, long va, long pfn, TlbShootdown shootdown, PageOps pages,
                                         boolean completing) {
        MmStruct mm = vma.owner();
        PageSize size = vma.pageSize();
        RawPageTable table = mm.pageTable();
        long slot = table.slot(va, Level.ofLeaf(size));
        if (slot < 0) {
            return false;
        }
        long e = table.readSlot(slot);
        if (!Pte.isPresent(e) || Pte.pfn(e, size) != pfn) {
            return false;
        }
        try (Invalidation inv = completing ? Invalidation.startCompleting(mm.notifiers(), va, va + size.bytes(), NotifierEvent.UNMAP)
                : Invalidation.start(mm.notifiers(), va, va + size.bytes(), NotifierEvent.UNMAP)) {
            KMutex ptl = mm.ptlOf(slot, size);
            ptl.lock(); // a migration of the page (under the anon_vma lock only) may have replaced the entry
            try {
                long cur = table.readSlot(slot);
                if (!Pte.isPresent(cur) || Pte.pfn(cur, size) != pfn) {
                    return false;
                }
                table.getAndClearSlot(slot);
                vma.setReservationUnmapped();
                mm.addHugetlbBytes(-size.bytes());
                shootdown.flushTlbMmRangeCpus(mm, va, va + size.bytes(), size.shift());
            } finally {
                ptl.unlock();
            }
            mm.notifiers().secondaryTlbs(va, va + size.bytes()); // outside the ptl: a notifier may call back
            pages.putMapped(pfn, true);
        }
        return true;
    }
}
