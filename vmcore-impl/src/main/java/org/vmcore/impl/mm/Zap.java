package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.Regression;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.HugetlbReservation;
import org.vmcore.impl.hugetlb.HugetlbVmdelete;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.tlb.TlbGather;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * Clearing the entries of a range (mm/memory.c zap_page_range_single / unmap_page_range with
 * zap_nonpresent_ptes, and mm/hugetlb.c __unmap_hugepage_range with huge_pmd_unshare): RSS and
 * HugetlbPages drop, page references are put, migration entries release a page nothing else holds,
 * a private owner gives back its hugetlb reservations, and a {@link TlbGather} collects what the
 * TLBs must forget. {@link #unmapHugepageRange} is hugetlb_vmdelete_list's per-VMA work for a
 * truncated hugetlbfs file.
 *
 * <p>It may touch its address space's page table and counters, the page references
 * ({@link PageOps}), the hugetlb pools of the VMA's file and, for truncation, the notifier chain
 * and the TLB shootdown; callers hold the machine lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class Zap {
    /** hugetlb_vmdelete_list's per-VMA work, for truncation in the hugetlb package. */
    static final HugetlbVmdelete VMDELETE = new HugetlbVmdelete() {
        @Override
        public void unmapHugepageRange(VmArea v, long from, long to) {
            ((SimAddressSpace) v.owner()).zap.unmapHugepageRange(v, from, to);
        }
    };

    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final PageOps pages;
    private final MigrationEntryRefs migrationRefs;
    /** Whether the notifier range of unmap_hugepage_range covers the PUD windows unsharing may remove (dff11abe280b). */
    private final boolean widenForSharing;
    /** Whether an unshared PUD window is flushed in whole, not just the entries zapped (a4a118f2eead). */
    private final boolean flushUnsharedWindow;

    Zap(SimAddressSpace mm, MmContext ctx) {
        this.mm = mm;
        this.ctx = ctx;
        this.pages = mm.pages;
        this.migrationRefs = ctx.migrationRefs();
        this.widenForSharing = !ctx.config().regressions().contains(Regression.PRE_DFF11ABE);
        this.flushUnsharedWindow = !ctx.config().regressions().contains(Regression.PRE_A4A118F2);
    }

    /**
     * Clears every entry of {@code vma} in {@code [from, to)} and drops the page references;
     * {@code gather} learns what the TLBs must forget (an unshared window in whole; with
     * {@link Regression#PRE_A4A118F2} only the entries cleared here). A migration
     * entry is cleared like zap_nonpresent_ptes does: its RSS counter drops, and since the entry
     * holds no reference the page is freed only if nothing else holds it
     * ({@link MigrationEntryRefs}).
     */
    void zapPageRange(VmArea vma, long from, long to, TlbGather gather, boolean releaseReservations) {
        zapPageRange(vma, from, to, gather, releaseReservations, false);
    }

    /**
     * As {@link #zapPageRange(VmArea, long, long, TlbGather, boolean)}; with
     * {@code restoreReservations} (MADV_DONTNEED) a private hugetlb owner gets a reservation back
     * for each page of its own it drops, so the next fault there finds one, as Linux does.
     */
    private void zapPageRange(VmArea vma, long from, long to, TlbGather gather, boolean releaseReservations,
                              boolean restoreReservations) {
        assert mm.lock().isHeldByCurrentThread();
        if (vma.kind().isHugetlb()) {
            // __unmap_hugepage_range_final: the VMA lock, then i_mmap_rwsem, both for write, so that
            // no fault fills an entry and no sibling shares a table while the range goes.
            vma.hugetlbVmaLock().downWrite();
            try {
                vma.mapping().iMmapRwsem().downWrite();
                try {
                    if (releaseReservations) {
                        // __unmap_hugepage_range_final frees the VMA lock: from here on no sibling's
                        // huge_pmd_share takes this VMA's table, though it stays in i_mmap a while
                        vma.markUnshareable();
                    }
                    long dropped = zapHugetlb(vma, from, to, gather, releaseReservations);
                    if (restoreReservations && vma.reservationOwner() && dropped > 0) {
                        HugetlbFileImpl.of(vma).pool().reserve(dropped); // the owner's pages went back to the pool just now
                    }
                } finally {
                    vma.mapping().iMmapRwsem().upWrite();
                }
            } finally {
                vma.hugetlbVmaLock().upWrite();
            }
            return;
        }
        zapAnon(vma, from, to, gather);
    }

    /** Returns how many of the owner's own pages (anonymous, inside its reservations) it dropped. */
    private long zapHugetlb(VmArea vma, long from, long to, TlbGather gather, boolean releaseReservations) {
        RawPageTable table = mm.pageTable();
        PageSize size = vma.pageSize();
        if (size == PageSize.SIZE_2M) {
            // A shared window is unshared, not cleared: the other sharers keep its entries.
            for (long window = from & PmdSharing.PUD_MASK; window < to; window += PmdSharing.PUD_SIZE) {
                long w = Math.max(window, from);
                boolean unshared = PmdSharing.hugePmdUnshare(vma, w);
                if (unshared && flushUnsharedWindow) { // tlb_flush_pmd_range over the window, a4a118f2eead
                    gather.add(window, window + PmdSharing.PUD_SIZE, size.shift());
                }
            }
        }
        if (vma.reservationOwner() && releaseReservations) {
            HugetlbReservation.releasePrivate(vma, from, to);
        }
        LongArrayList orphans = new LongArrayList(0);
        long reservable = Math.min(HugetlbFileImpl.of(vma).pageCount(), vma.reservationsEnd());
        long[] owned = {0};
        PageOps.forEachLeafLocked(vma, from, to, (va, slot, e) -> {
            table.getAndClearSlot(slot);
            gather.add(va, va + size.bytes(), size.shift());
            if (Pte.isPresent(e)) {
                mm.hugetlbCountSub(size.bytes());
                long pfn = Pte.pfn(e, size);
                if (pages.isAnon(pfn) && vma.hugePageIndex(va) < reservable) {
                    owned[0]++;
                }
                pages.putMapped(pfn, true);
            } else if (MigrationEntry.isMigration(e)) {
                mm.hugetlbCountSub(size.bytes());
                orphans.add(MigrationEntry.pfn(e));
            }
        });
        releaseIfUnreferenced(orphans);
        return owned[0];
    }

    /**
     * zap_page_range_single for MADV_DONTNEED: the entries of {@code [from, to)} go (a shared PMD
     * window is unshared), the VMA and its page tables stay. The notifiers hear of the range
     * first (widened for PMD sharing) and may refuse it, with nothing of this VMA changed.
     */
    void dontneed(VmArea v, long from, long to) {
        PmdSharing.Range r = v.kind().isHugetlb() && widenForSharing ? PmdSharing.adjustRangeIfPmdSharingPossible(v, from, to)
                : new PmdSharing.Range(from, to);
        TlbGather gather = new TlbGather();
        try (Invalidation inv = Invalidation.start(mm.notifiers(), r.start(), r.end(), NotifierEvent.CLEAR)) {
            zapPageRange(v, from, to, gather, false, true);
            gather.flush(ctx.shootdown(), mm);
        }
    }

    /**
     * After the page-table locks are dropped (the check walks the page's rmap, whose locks come
     * before them): frees the pages of the migration entries just cleared that nothing holds.
     */
    private void releaseIfUnreferenced(LongArrayList orphans) {
        for (int i = 0; i < orphans.size(); i++) {
            migrationRefs.releaseIfUnreferenced(orphans.get(i));
        }
    }

    private void zapAnon(VmArea vma, long from, long to, TlbGather gather) {
        RawPageTable table = mm.pageTable();
        long[] rss = {0, 0}; // add_mm_rss_vec: the counters change once per range, not per page (RSS, MM_SWAPENTS)
        HugeMemory huge = pages.huge;
        HugePmds hugePmds = pages.hugePmds;
        LongArrayList orphans = new LongArrayList(0);
        hugePmds.forEachHugePmd(vma, from, to, (haddr, pmdSlot, pmd) -> rss[0] += hugePmds.zapPmd(haddr, pmdSlot, gather, orphans));
        LongArrayList large = new LongArrayList(0); // transparent huge pages losing pages, held to the end
        boolean mayMapHuge = mm.mayMapHugePmds();
        PageOps.forEachLeafLocked(vma, from, to, (va, slot, e) -> {
            table.getAndClearSlot(slot);
            gather.add(va, va + 4096, 12);
            if (SwapCache.isSwapEntry(e)) { // zap_nonpresent_ptes: free_swap_and_cache
                ctx.swapCache().swapFree(SwapEntry.offset(e));
                rss[1]++;
                return;
            }
            boolean migration = MigrationEntry.isMigration(e);
            if (Pte.isPresent(e) && ZeroPage.maps(e)) {
                return; // zap_present_ptes: no page behind a special entry, nothing to count or put
            }
            if (Pte.isPresent(e) || migration) {
                rss[0]++;
            }
            if (Pte.isPresent(e)) {
                long pfn = Pte.pfn(e);
                long head = mayMapHuge ? huge.largeFolio(pfn) : -1;
                if (head >= 0 && (large.isEmpty() || large.getLast() != head)) {
                    SharedSecrets.memMap(ctx.memory()).addRefcount(head, 1);
                    large.add(head);
                }
                ctx.swapCache().freeSwapCacheOfLastMapping(pfn); // free_pages_and_swap_cache
                pages.putMapped(pfn, false);
            } else if (migration) {
                orphans.add(MigrationEntry.pfn(e));
            }
        });
        releaseIfUnreferenced(orphans);
        for (int i = 0; i < large.size(); i++) { // zap_pte_range unmaps a folio's pages as one batch
            huge.deferSplitIfPartlyMapped(large.get(i));
            pages.putReference(large.get(i), false);
        }
        mm.addSwapEntries(-rss[1]);
        if (vma.kind() == VmaKind.ANONYMOUS_SHARED) {
            mm.addShmemPages(-rss[0]);
        } else {
            mm.addAnonPages(-rss[0]);
        }
    }

    /**
     * hugetlb_vmdelete_list for one VMA: zaps [from, to) of a hugetlb mapping whose file
     * shrank, with the notifier range widened for PMD sharing and shared windows unshared; the
     * VMA stays; the caller settles a private owner's reservations. With
     * {@link Regression#PRE_DFF11ABE} the notifiers hear of [from, to) only; the TLB flush still
     * covers an unshared window in whole (tlb_flush_pmd_range, a4a118f2eead), secondary TLBs
     * included, unless {@link Regression#PRE_A4A118F2} narrows it to the entries cleared.
     */
    void unmapHugepageRange(VmArea v, long from, long to) {
        assert mm.lock().isHeldByCurrentThread();
        if (from >= to) {
            return;
        }
        PmdSharing.Range r = widenForSharing ? PmdSharing.adjustRangeIfPmdSharingPossible(v, from, to)
                : new PmdSharing.Range(from, to);
        TlbGather gather = new TlbGather();
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), r.start(), r.end(), NotifierEvent.UNMAP)) {
            zapPageRange(v, from, to, gather, false); // the caller settles private reservations
            gather.flush(ctx.shootdown(), mm);
        }
    }

    /**
     * Removes v from the tree; the last VMA of a shmem object takes the object and its pages with
     * it, and the last VMA of an unlinked hugetlbfs file evicts its inode.
     */
    void removeVma(VmArea v) {
        mm.vmaTree().remove(v);
        if (v.kind().isHugetlb()) {
            ctx.hugetlbfs().evictIfUnused(HugetlbFileImpl.of(v));
        }
        if (v.kind() == VmaKind.ANONYMOUS_SHARED) {
            FileMapping shmem = v.mapping();
            shmem.iMmapRwsem().downWrite(); // a forked sibling may map the object still
            try {
                if (!shmem.iMmap().isEmpty()) {
                    return;
                }
            } finally {
                shmem.iMmapRwsem().upWrite();
            }
            // shmem_evict_inode: nothing maps the object, and nothing can map it again (only its
            // VMAs reach it). Its pages go one by one under their folio locks, without i_mmap_rwsem,
            // which a migration holding one of those locks may need to finish.
            long[] indexes;
            synchronized (shmem) {
                indexes = shmem.pageCache().keySet().toArray();
            }
            for (long index : indexes) {
                long pfn = shmem.removeLocked(index, SharedSecrets.memMap(ctx.memory()), ctx.migrating());
                if (pfn >= 0) {
                    mm.pages.putReference(pfn, false);
                }
            }
            ctx.registry().unregister(shmem.id());
        }
    }
}
