package org.vmcore.impl.rmap;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.notifier.Invalidation;
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
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * The PTEs that map the pages of a transparent huge page, wherever they lie (page_vma_mapped_walk
 * over a large folio): in every VMA of its anon_vma family that overlaps it, the 512 addresses
 * its pages would have there, which may lie partly outside the VMA (a cut inside the huge page)
 * or across two PTE tables (its pages moved by mremap). {@link #migrate} turns each PTE that maps
 * one of its pages into a migration entry to that page (try_to_migrate for a large folio);
 * {@link #restore} turns them back into PTEs, to the same pages or to those of a new folio
 * (remove_migration_ptes). Each VMA under the rmap lock for read, each table under its lock; the
 * notifiers hear of each range with no engine lock held but the machine lock and the folio lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
public final class HugePagePtes {
    private static final int NR = 512;
    private static final long SIZE = PageSize.SIZE_2M.bytes();

    private final MemMap descriptors;
    private final RmapWalk rmap;
    private final TlbShootdown shootdown;

    /** With a null {@code shootdown}, for {@link #pointedAt} only. */
    public HugePagePtes(PhysicalMemory memory, RmapWalk rmap, TlbShootdown shootdown) {
        this.descriptors = SharedSecrets.memMap(memory);
        this.rmap = rmap;
        this.shootdown = shootdown;
    }

    /** What to do with one entry; returns whether it changed it. */
    @FunctionalInterface
    private interface EntryOp {
        boolean apply(VmArea vma, RawPageTable table, long slot, long entry, long page);
    }

    /**
     * try_to_migrate for the huge page at {@code head} where PTEs map it: each such PTE becomes a
     * migration entry to its page; the page's mapcount and the folio's references drop, RSS
     * stays. Returns how many entries it replaced.
     */
    public int migrate(long head) {
        return forEachPte(head, true, (vma, table, slot, e, page) -> {
            if (!Pte.isPresent(e) || Pte.pfn(e) != page) {
                return false;
            }
            long old = table.getAndClearSlot(slot);
            if ((old & Pte.DIRTY) != 0) {
                descriptors.setFlags(head, FrameFlags.DIRTY);
            }
            MigrationEntry.Kind kind = (old & Pte.RW) != 0 ? MigrationEntry.Kind.WRITE : MigrationEntry.Kind.READ;
            long swapFlags = (old & Pte.SOFT_DIRTY) != 0 ? SwapEntry.SOFT_DIRTY : 0;
            table.compareAndSetSlot(slot, 0, MigrationEntry.make(kind, page, (old & Pte.ACCESSED) != 0,
                    (old & Pte.DIRTY) != 0, swapFlags));
            descriptors.addMapcount(page, -1);
            descriptors.addRefcount(head, -1);
            return true;
        });
    }

    /**
     * remove_migration_ptes for the PTE migration entries to the pages of the huge page at
     * {@code oldHead}: each maps the same page of the folio at {@code newHead} again (the same
     * folio when a migration failed, or a split one), with a mapcount and a reference for that
     * page. Returns how many entries it restored.
     */
    public int restore(long oldHead, long newHead) {
        return forEachPte(newHead, false, (vma, table, slot, e, page) -> {
            long target = page - newHead + oldHead;
            if (!MigrationEntry.isMigration(e) || MigrationEntry.pfn(e) != target) {
                return false;
            }
            boolean writable = MigrationEntry.isWrite(e) && vma.protection().write();
            long flags = vma.pteProtection(writable) | (MigrationEntry.young(e) ? Pte.ACCESSED : 0)
                    | (MigrationEntry.dirty(e) ? Pte.DIRTY : 0);
            descriptors.addMapcount(page, 1);
            descriptors.addRefcount(page, 1);
            table.compareAndSetSlot(slot, e, Pte.leaf(page, PageSize.SIZE_4K, flags));
            return true;
        });
    }

    /**
     * remove_migration_pmd for a huge page split while PMD migration entries mapped it (split_huge_page
     * of a PMD-mapped page): each such entry becomes the deposited PTE table with 512 PTEs, one per
     * page, each with a mapcount and a reference of its own; AnonHugePages drops. Returns how many
     * PMD entries it replaced.
     */
    public int restoreSplitPmds(long head) {
        MappingOwner owner = rmap.owner(head);
        if (owner == null) {
            return 0;
        }
        long index = descriptors.index(head);
        int restored = 0;
        RwSem rmapLock = RmapWalk.lockOf(owner);
        for (VmArea vma : rmap.candidates(owner, head)) {
            long address = vma.address(index);
            if (address < 0 || (address & (SIZE - 1)) != 0 || address + SIZE > vma.end()) {
                continue;
            }
            rmapLock.downRead();
            try {
                if (!vma.detached() && splitPmd(vma, address, head)) {
                    restored++;
                }
            } finally {
                rmapLock.upRead();
            }
        }
        return restored;
    }

    private boolean splitPmd(VmArea vma, long address, long head) {
        MmStruct mm = vma.owner();
        RawPageTable table = mm.pageTable();
        long slot = table.slot(address, Level.PMD);
        if (slot < 0) {
            return false;
        }
        KMutex ptl = mm.ptlOf(slot, PageSize.SIZE_2M);
        ptl.lock();
        try {
            long e = table.readSlot(slot);
            if (!MigrationEntry.isMigration(e) || MigrationEntry.pfn(e) != head) {
                return false;
            }
            boolean writable = MigrationEntry.isWrite(e) && vma.protection().write();
            long flags = vma.pteProtection(writable) | (MigrationEntry.young(e) ? Pte.ACCESSED : 0)
                    | (MigrationEntry.dirty(e) ? Pte.DIRTY : 0);
            long[] leaves = new long[NR];
            for (int i = 0; i < NR; i++) {
                leaves[i] = Pte.leaf(head + i, PageSize.SIZE_4K, flags);
                descriptors.addMapcount(head + i, 1);
                descriptors.addRefcount(head + i, 1);
            }
            table.hugePmds().splitLeaf(slot, e, table.hugePmds().withdrawTable(address), leaves);
            mm.addAnonHugePages(-NR);
            return true;
        } finally {
            ptl.unlock();
        }
    }

    /**
     * folio_referenced for reclaim's second chance: whether an entry mapping the huge page at
     * {@code head} (its PMD entries, or PTEs mapping its pages) was accessed since the last look,
     * clearing the accessed bits it finds; true as well when a VMA mapping it is mlocked (reclaim
     * must leave it: VM_LOCKED pages are not evictable).
     */
    public boolean referencedOrLocked(long head) {
        MappingOwner owner = rmap.owner(head);
        if (owner == null) {
            return false;
        }
        long index = descriptors.index(head);
        boolean[] young = {false};
        for (VmArea vma : rmap.candidates(owner, index, NR)) {
            if (vma.locked()) {
                return true;
            }
            long address = vma.address(index);
            if (address >= 0 && (address & (SIZE - 1)) == 0 && !vma.detached()) {
                RawPageTable table = vma.owner().pageTable();
                long slot = table.slot(address, Level.PMD);
                long e = slot < 0 ? 0 : table.readSlot(slot);
                if (Pte.isPresent(e) && (e & Pte.PSE) != 0 && Pte.pfn(e, PageSize.SIZE_2M) == head && (e & Pte.ACCESSED) != 0) {
                    young[0] |= table.compareAndSetSlot(slot, e, e & ~Pte.ACCESSED);
                }
            }
        }
        forEachPte(head, false, (vma, table, slot, e, page) -> {
            if (Pte.isPresent(e) && Pte.pfn(e) == page && (e & Pte.ACCESSED) != 0) {
                young[0] |= table.compareAndSetSlot(slot, e, e & ~Pte.ACCESSED);
            }
            return false;
        });
        return young[0];
    }

    /** Whether a PTE migration entry to one of the pages of the huge page at {@code head} is left. */
    public boolean pointedAt(long head) {
        boolean[] found = {false};
        forEachPte(head, false, (vma, table, slot, e, page) -> {
            found[0] |= MigrationEntry.isMigration(e) && MigrationEntry.pfn(e) == page;
            return false;
        });
        return found[0];
    }

    /**
     * Calls {@code op} for each PTE slot where a page of the huge page at {@code head} would be
     * mapped (passing the page it would map); with {@code notify}, inside a notifier range per
     * VMA, and the CPUs' TLBs flushed for each table changed.
     */
    private int forEachPte(long head, boolean notify, EntryOp op) {
        MappingOwner owner = rmap.owner(head);
        if (owner == null) {
            return 0;
        }
        long index = descriptors.index(head);
        int changed = 0;
        for (VmArea vma : rmap.candidates(owner, index, NR)) { // by the range: the folio may be split already
            long start = vma.start() + ((index - vma.pgoff()) << 12); // where the head would be
            long lo = Math.max(start, vma.start());
            long hi = Math.min(start + SIZE, vma.end());
            if (lo >= hi || vma.detached()) {
                continue;
            }
            if (!notify) {
                changed += inVma(owner, vma, start, lo, hi, head, op, false);
                continue;
            }
            MmStruct mm = vma.owner();
            try (Invalidation inv = Invalidation.start(mm.notifiers(), lo, hi, NotifierEvent.CLEAR)) {
                int n = inVma(owner, vma, start, lo, hi, head, op, true);
                if (n > 0) {
                    mm.notifiers().secondaryTlbs(lo, hi); // outside the rmap and page-table locks
                }
                changed += n;
            }
        }
        return changed;
    }

    private int inVma(MappingOwner owner, VmArea vma, long start, long lo, long hi, long head, EntryOp op, boolean flush) {
        MmStruct mm = vma.owner();
        RawPageTable table = mm.pageTable();
        RwSem rmapLock = RmapWalk.lockOf(owner);
        rmapLock.downRead();
        try {
            if (vma.detached()) {
                return 0;
            }
            int changed = 0;
            for (long va = lo; va < hi; ) {
                long tableEnd = Math.min(hi, (va | (SIZE - 1)) + 1);
                long slot = table.slot(va, Level.PTE);
                if (slot >= 0) {
                    int before = changed;
                    KMutex ptl = mm.ptlOf(slot, PageSize.SIZE_4K);
                    ptl.lock();
                    try {
                        for (long a = va; a < tableEnd; a += 4096, slot += 8) {
                            if (op.apply(vma, table, slot, table.readSlot(slot), head + ((a - start) >>> 12))) {
                                changed++;
                            }
                        }
                        if (changed > before && flush) { // ptep_clear_flush, this mm's CPUs
                            shootdown.flushTlbMmRangeCpus(mm, va, tableEnd, PageSize.SIZE_4K.shift());
                        }
                    } finally {
                        ptl.unlock();
                    }
                }
                va = tableEnd;
            }
            return changed;
        } finally {
            rmapLock.upRead();
        }
    }
}
