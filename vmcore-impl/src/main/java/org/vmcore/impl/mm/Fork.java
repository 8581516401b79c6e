package org.vmcore.impl.mm;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * fork's dup_mmap (kernel/fork.c): every VMA is copied into the child (anon_vma_fork links the
 * child's anon_vma), and copy_page_range copies the entries of the mappings that need it, inside
 * a notifier range that write-protects the parent's COW entries; then the parent's TLB is flushed
 * (flush_tlb_mm(oldmm)). Present entries are copied write-protected in both (copy-on-write),
 * migration entries as copy_nonpresent_pte does. A fork that fails, or whose notifiers threw,
 * closes the child again.
 *
 * <p>It may touch the parent's and the child's VMA trees and page tables, the notifier chain and
 * the TLB shootdown; the facade holds the machine lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class Fork {
    private final SimAddressSpace mm;
    private final MmContext ctx;

    Fork(SimAddressSpace mm, MmContext ctx) {
        this.mm = mm;
        this.ctx = ctx;
    }

    /** dup_mmap into {@code child}, a new address space; throws (with the child closed) if the fork fails. */
    void dupMmap(SimAddressSpace child) {
        assert ctx.lock().isHeldByCurrentThread();
        // From the first write-protect to flush_tlb_mm(oldmm), the parent's CPUs may still store through
        // cached writable entries (Linux leaves the same window: fork has not returned, so such a store
        // counts as made before it); tlb_flush_pending tells the stale detector the flush is owed.
        mm.incTlbFlushPending();
        if (mm.mayMapHugePmds()) {
            child.noteHugePmds(); // the huge pages the parent maps, by PMDs or PTEs, come along
        }
        try {
            copyAll(child);
        } finally {
            mm.decTlbFlushPending();
        }
        if (ctx.callbackFailures().any()) { // the fork completed, but the caller gets the exception, not the child
            throw closeChild(child, ctx.callbackFailures().take());
        }
    }

    /** Copies every VMA and the entries of those that need it, then flushes the parent's TLB. */
    private void copyAll(SimAddressSpace child) {
        try {
            for (VmArea v : mm.vmaTree().all()) {
                VmArea copy = v.forkCopy(child);
                anonVmaFork(v, copy);
                child.vmaTree().insert(copy);
                if (vmaNeedsCopy(v)) { // copy_page_range write-protects the parent's COW entries
                    try (Invalidation inv = Invalidation.start(mm.notifiers(), v.start(), v.end(), NotifierEvent.PROTECTION_PAGE)) {
                        copyLocked(v, copy);
                    }
                }
            }
        } catch (Throwable e) { // out of memory, or a notifier refused: the child goes, the parent stays usable
            ctx.shootdown().flushTlbMm(mm);
            throw closeChild(child, e);
        }
        ctx.shootdown().flushTlbMm(mm); // dup_mmap's flush_tlb_mm(oldmm)
    }

    /**
     * copy_page_range; for a hugetlb VMA under its VMA lock and i_mmap_rwsem held for read, so that
     * a truncation of the file (which holds neither mmap_lock) cannot zap the entries being copied.
     */
    private void copyLocked(VmArea v, VmArea copy) {
        if (!v.kind().isHugetlb()) {
            copyPageRange(v, copy);
            return;
        }
        v.hugetlbVmaLock().downRead();
        try {
            v.mapping().iMmapRwsem().downRead();
            try {
                copyPageRange(v, copy);
            } finally {
                v.mapping().iMmapRwsem().upRead();
            }
        } finally {
            v.hugetlbVmaLock().upRead();
        }
    }

    /** Closes a child that fork will not return; what the close throws joins {@code e}. */
    private RuntimeException closeChild(SimAddressSpace child, Throwable e) {
        try {
            child.close();
        } catch (Throwable c) {
            e.addSuppressed(c);
        }
        throw ctx.hook().operationFailed(e);
    }

    /** Links the child's VMA into the anon_vma family and gives it its own anon_vma (anon_vma_fork). */
    private void anonVmaFork(VmArea parent, VmArea child) {
        if (parent.anonVma() == null) {
            return;
        }
        AnonVma own = ctx.registry().newAnonVma(parent.anonVma());
        child.setAnonVma(own);
        child.anonChain().add(own);
    }

    /**
     * vma_needs_copy: only a private mapping with an anon_vma (one that has had a private page) is
     * copied at fork; shared mappings, and private ones that only map page-cache pages, are
     * faulted in by the child (for hugetlb since "hugetlb: lazy page table copies in fork()",
     * bcd51a3c679d).
     */
    private static boolean vmaNeedsCopy(VmArea parent) {
        return !parent.kind().isShared() && parent.anonVma() != null;
    }

    /**
     * copy_page_range for a mapping that {@link #vmaNeedsCopy needs a copy}: present entries are
     * copied write-protected in both address spaces (copy-on-write); migration entries are copied
     * as copy_nonpresent_pte and copy_hugetlb_page_range copy them.
     */
    void copyPageRange(VmArea parent, VmArea child) {
        if (!vmaNeedsCopy(parent)) {
            return;
        }
        RawPageTable from = parent.owner().pageTable();
        RawPageTable to = child.owner().pageTable();
        PageSize size = parent.pageSize();
        Level leaf = Level.ofLeaf(size);
        MmStruct childMm = child.owner();
        HugePmds huge = mm.pages.hugePmds; // copy_huge_pmd: huge entries whole, under the parent's PMD lock
        huge.forEachHugePmd(parent, parent.start(), parent.end(), (haddr, slot, pmd) -> huge.copyPmd(haddr, slot, pmd, childMm));
        // copy_pte_range: each parent table under its lock, so that a migration of one of its
        // pages (which meets the child's VMA through the rmap too) sees an entry copied or not yet
        PageOps.forEachLeafLocked(parent, parent.start(), parent.end(), (va, slot, e) -> {
            if (MigrationEntry.isMigration(e)) {
                copyNonpresentPte(from, slot, e, to, va, leaf, childMm, size);
                return;
            }
            if (SwapCache.isSwapEntry(e)) {
                copySwapPte(from, slot, e, to, va, childMm);
                return;
            }
            if (!Pte.isPresent(e)) {
                return; // vmcore makes no other non-present entries
            }
            if (ZeroPage.maps(e)) {
                to.install(va, leaf, e); // copy_present_pte: the zero page is shared as it is, uncounted
                return;
            }
            long wp = e & ~Pte.RW;
            while (!from.compareAndSetSlot(slot, e, wp)) {
                e = from.readSlot(slot);
                wp = e & ~Pte.RW;
            }
            long pfn = Pte.pfn(e, size);
            // counted before the child's entry exists: a walker that unmaps it finds the count to drop
            MemMap d = SharedSecrets.memMap(ctx.memory());
            d.addMapcount(pfn, 1);
            d.addRefcount(pfn, 1);
            try {
                to.install(va, leaf, wp);
            } catch (RuntimeException ex) { // no table for the child's entry: the counts go back
                d.addMapcount(pfn, -1);
                d.addRefcount(pfn, -1);
                throw ex;
            }
            if (size == PageSize.SIZE_4K) {
                childMm.addAnonPages(1);
            } else {
                childMm.addHugetlbBytes(size.bytes());
            }
        });
    }

    /**
     * copy_nonpresent_pte for a swap entry: swap_duplicate, and the entry loses its exclusive bit
     * in both address spaces (the page, once swapped in, is shared until a write copies it).
     */
    private void copySwapPte(RawPageTable from, long slot, long e, RawPageTable to, long va, MmStruct childMm) {
        long entry = e & ~SwapEntry.EXCLUSIVE;
        if (entry != e) {
            from.compareAndSetSlot(slot, e, entry); // no CPU writes a non-present entry: the CAS holds
        }
        ctx.swapCache().duplicate(SwapEntry.offset(e));
        try {
            to.install(va, Level.PTE, entry);
        } catch (RuntimeException ex) { // no table for the child's entry: the count goes back
            ctx.swapCache().swapFree(SwapEntry.offset(e));
            throw ex;
        }
        childMm.addSwapEntries(1);
    }

    /**
     * copy_nonpresent_pte for a migration entry: the child gets the entry and counts the page in
     * its RSS, without a page reference (the migration holds the page); a WRITE or READ_EXCLUSIVE
     * entry becomes READ in both, so that remove_migration_ptes maps the page read-only in both
     * and the first write copies it.
     */
    private static void copyNonpresentPte(RawPageTable from, long slot, long e, RawPageTable to, long va, Level leaf,
                                    MmStruct childMm, PageSize size) {
        long entry = e;
        if (MigrationEntry.kind(e) != MigrationEntry.Kind.READ) {
            entry = MigrationEntry.makeReadable(e);
            from.compareAndSetSlot(slot, e, entry); // no CPU writes a non-present entry: the CAS holds
        }
        to.install(va, leaf, entry);
        if (size == PageSize.SIZE_4K) {
            childMm.addAnonPages(1);
        } else {
            childMm.addHugetlbBytes(size.bytes());
        }
    }
}
