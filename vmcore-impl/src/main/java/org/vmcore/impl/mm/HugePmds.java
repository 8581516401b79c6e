package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.tlb.TlbGather;
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
 * What the paths of one address space do with a huge PMD entry (a transparent huge page, the
 * huge zero page, or a PMD migration entry) in mm/huge_memory.c's *_huge_pmd functions: split it
 * into a PTE table (split_huge_pmd) where an operation covers it only in part or a VMA is cut
 * inside it, and otherwise zap it whole (zap_huge_pmd), change its protection whole
 * (change_huge_pmd), copy it at fork (copy_huge_pmd) or move it (move_huge_pmd).
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class HugePmds {
    private static final long SIZE = HugeMemory.SIZE;
    private static final int NR = HugeMemory.NR;

    /** Visits a huge PMD entry under its PMD lock. */
    @FunctionalInterface
    interface PmdVisitor {
        void visit(long haddr, long pmdSlot, long pmd);
    }

    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final Thp thp;
    private final MemMap descriptors;

    HugePmds(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.ctx = ctx;
        this.thp = ctx.thp();
        this.descriptors = SharedSecrets.memMap(ctx.memory());
    }

    /**
     * __split_huge_pmd: the huge entry at {@code haddr}, if there still is one, becomes a PTE table
     * of 512 entries with its protection and accessed/dirty bits. A folio's pages each gain a PTE
     * mapping and the folio 511 references; the huge zero page becomes 512 entries of the 4 KiB zero
     * page. The deposited table is the new PTE table, so a split never fails.
     */
    void splitPmd(VmArea v, long haddr) {
        RawPageTable table = mm.pageTable();
        long pmdSlot = table.slot(haddr, Level.PMD);
        if (pmdSlot < 0 || !HugeMemory.isHugeEntry(table.readSlot(pmdSlot))) {
            return;
        }
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), haddr, haddr + SIZE, NotifierEvent.CLEAR)) {
            KMutex ptl = pmdLock(pmdSlot);
            ptl.lock();
            try {
                long pmd = table.readSlot(pmdSlot);
                if (HugeMemory.isHugeEntry(pmd)) {
                    splitLocked(haddr, pmdSlot, pmd);
                }
            } finally {
                ptl.unlock();
            }
        }
    }

    private void splitLocked(long haddr, long pmdSlot, long pmd) {
        if (MigrationEntry.isMigration(pmd)) {
            splitMigrationEntry(haddr, pmdSlot, pmd);
            return;
        }
        RawPageTable table = mm.pageTable();
        boolean zero = ZeroPage.maps(pmd);
        long folio = Pte.pfn(pmd, PageSize.SIZE_2M);
        long flags = pmd & Pte.LEAF_HUGE_FLAGS & ~Pte.PAT_LARGE; // PS and the large PAT bit have no place in a PTE
        long[] ptes = new long[NR];
        for (int i = 0; i < NR; i++) {
            ptes[i] = Pte.leaf(zero ? ctx.zeroPfn() : folio + i, PageSize.SIZE_4K, flags);
        }
        if (!zero) { // counted before the entries exist: a walker that finds one finds its count
            if (descriptors.refcount(folio) == 1) { // this entry alone maps it: nothing else changes its pages' counts
                descriptors.setMapcountsExclusive(folio, NR, 1);
            } else {
                descriptors.addMapcounts(folio, NR, 1);
            }
            descriptors.addRefcount(folio, NR - 1);
        }
        long pte = table.hugePmds().withdrawTable(haddr);
        table.hugePmds().splitLeaf(pmdSlot, pmd, pte, ptes);
        if (!zero) {
            descriptors.addEntireMapcount(folio, -1);
            mm.addAnonHugePages(-NR);
        }
        thp.count(Thp.Event.SPLIT_PMD);
        // pmdp_invalidate's flush: no CPU may keep the 2 MiB translation beside the new 4 KiB ones
        ctx.shootdown().flushTlbMmRangeCpus(mm, haddr, haddr + SIZE, PageSize.SIZE_2M.shift());
    }

    /**
     * __split_huge_pmd_locked for a PMD migration entry: 512 PTE migration entries to the pages of
     * the folio, of the same kind; remove_migration_ptes maps each page of the new folio (or of the
     * old one, if the migration fails) by its PTE. Migration entries hold no mapcount or
     * reference; the RSS stays.
     */
    private void splitMigrationEntry(long haddr, long pmdSlot, long pmd) {
        RawPageTable table = mm.pageTable();
        long folio = MigrationEntry.pfn(pmd);
        MigrationEntry.Kind kind = MigrationEntry.kind(pmd);
        boolean young = MigrationEntry.young(pmd);
        boolean dirty = MigrationEntry.dirty(pmd);
        long flags = SwapEntry.flags(pmd);
        long[] ptes = new long[NR];
        for (int i = 0; i < NR; i++) {
            ptes[i] = MigrationEntry.make(kind, folio + i, young, dirty, flags);
        }
        table.hugePmds().splitLeaf(pmdSlot, pmd, table.hugePmds().withdrawTable(haddr), ptes);
        mm.addAnonHugePages(-NR);
        thp.count(Thp.Event.SPLIT_PMD);
    }

    /**
     * vma_adjust_trans_huge: a VMA about to be cut at {@code addr} keeps no huge entry across the
     * cut.
     */
    void splitAcross(VmArea v, long addr) {
        if ((addr & (SIZE - 1)) != 0 && v.kind() == VmaKind.ANONYMOUS_PRIVATE && mm.mayMapHugePmds()) {
            splitPmd(v, addr & -SIZE);
        }
    }

    /**
     * The huge PMD entries of {@code [from, to)} in {@code v}: those the range covers in part are
     * split (as zap_pmd_range, change_pmd_range and madvise split them); those it covers whole go to
     * {@code whole} under their PMD lock, or are split too when {@code whole} is null.
     */
    void forEachHugePmd(VmArea v, long from, long to, PmdVisitor whole) {
        walkHugePmds(v, from, to, whole, true);
    }

    /**
     * The huge PMD entries {@code [from, to)} covers whole go to {@code whole} under their PMD
     * lock; those it covers in part are left as they are.
     */
    void forEachWholeHugePmd(VmArea v, long from, long to, PmdVisitor whole) {
        walkHugePmds(v, from, to, whole, false);
    }

    private void walkHugePmds(VmArea v, long from, long to, PmdVisitor whole, boolean splitPart) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE || !mm.mayMapHugePmds()) {
            return;
        }
        RawPageTable table = mm.pageTable();
        for (long haddr = from & -SIZE; haddr < to; haddr += SIZE) {
            long pmdSlot = table.slot(haddr, Level.PMD);
            if (pmdSlot < 0) {
                haddr = (haddr | ((1L << 30) - 1)) - SIZE + 1; // no PMD table: on to the next 1 GiB
                continue;
            }
            if (!HugeMemory.isHugeEntry(table.readSlot(pmdSlot))) {
                continue;
            }
            if (whole == null || haddr < from || haddr + SIZE > to) {
                if (splitPart) {
                    splitPmd(v, haddr);
                }
                continue;
            }
            KMutex ptl = pmdLock(pmdSlot);
            ptl.lock();
            try {
                long pmd = table.readSlot(pmdSlot);
                if (HugeMemory.isHugeEntry(pmd)) {
                    whole.visit(haddr, pmdSlot, pmd);
                }
            } finally {
                ptl.unlock();
            }
        }
    }

    // ---- whole entries ----

    /**
     * zap_huge_pmd under the PMD lock: the entry and its deposited table go, the folio loses its
     * PMD mapping and reference. A PMD migration entry holds neither: its page goes to
     * {@code orphans}, for the caller to free once nothing holds it. Returns the RSS pages it drops.
     */
    long zapPmd(long haddr, long pmdSlot, TlbGather gather, LongArrayList orphans) {
        RawPageTable table = mm.pageTable();
        long old = table.getAndClearSlot(pmdSlot);
        table.hugePmds().freeWithdrawn(table.hugePmds().withdrawTable(haddr));
        gather.add(haddr, haddr + SIZE, PageSize.SIZE_2M.shift());
        if (MigrationEntry.isMigration(old)) {
            mm.addAnonHugePages(-NR);
            orphans.add(MigrationEntry.pfn(old));
            return NR;
        }
        if (ZeroPage.maps(old)) {
            return 0;
        }
        mm.addAnonHugePages(-NR);
        long folio = Pte.pfn(old, PageSize.SIZE_2M);
        descriptors.addEntireMapcount(folio, -1);
        mm.pages.putReference(folio, false);
        return NR;
    }

    /**
     * change_huge_pmd under the PMD lock: the new protection, writable only for a folio nothing else
     * holds (the huge zero page never).
     */
    void changePmd(long pmdSlot, long pmd, boolean write, long readOnly, long readWrite) {
        if (MigrationEntry.isMigration(pmd)) {
            return; // keeps its permissions: remove_migration_pmd asks the VMA again
        }
        boolean writable = write && !ZeroPage.maps(pmd) && descriptors.refcount(Pte.pfn(pmd, PageSize.SIZE_2M)) == 1;
        mm.pageTable().protectSlot(pmdSlot, PageSize.SIZE_2M, writable ? readWrite : readOnly);
    }

    /**
     * copy_huge_pmd under the parent's PMD lock: the child gets the entry, write-protected in both
     * (the huge zero page as it is), with a table deposited of its own; the folio gains a PMD
     * mapping and a reference.
     */
    void copyPmd(long haddr, long pmdSlot, long pmd, MmStruct child) {
        RawPageTable to = child.pageTable();
        long childSlot = to.hugePmds().allocPmdSlotWithDeposit(haddr);
        child.noteHugePmds();
        if (Pte.isPresent(pmd) && ZeroPage.maps(pmd)) {
            to.installIfNone(childSlot, pmd);
            return;
        }
        RawPageTable from = mm.pageTable();
        if (MigrationEntry.isMigration(pmd)) { // copy_huge_pmd's is_swap_pmd case: both get a read entry
            long readable = MigrationEntry.makeReadable(pmd);
            from.compareAndSetSlot(pmdSlot, pmd, readable);
            to.installIfNone(childSlot, readable);
            child.addAnonPages(NR);
            child.addAnonHugePages(NR);
            return;
        }
        long wp = pmd & ~Pte.RW;
        while (!from.compareAndSetSlot(pmdSlot, pmd, wp)) {
            pmd = from.readSlot(pmdSlot);
            wp = pmd & ~Pte.RW;
        }
        long folio = Pte.pfn(pmd, PageSize.SIZE_2M);
        descriptors.addEntireMapcount(folio, 1);
        descriptors.addRefcount(folio, 1);
        to.installIfNone(childSlot, wp);
        child.addAnonPages(NR);
        child.addAnonHugePages(NR);
    }

    /**
     * Before move_page_tables moves {@code [from, from + len)} to {@code to}: a huge entry moves
     * whole only to a 2 MiB-aligned place whose PMD is empty (move_huge_pmd); any other is split
     * first, and its PTEs move one by one.
     */
    void prepareMove(VmArea v, long from, long to, long len) {
        boolean aligned = ((from - to) & (SIZE - 1)) == 0;
        forEachHugePmd(v, from, from + len, aligned ? (haddr, slot, pmd) -> { } : null);
        if (!aligned || !mm.mayMapHugePmds()) {
            return;
        }
        RawPageTable table = mm.pageTable();
        for (long haddr = from; haddr < from + len; haddr += SIZE) {
            if (HugeMemory.isHugeEntry(table.entry(haddr, Level.PMD)) && !Pte.isNone(table.entry(to + (haddr - from), Level.PMD))) {
                splitPmd(v, haddr);
            }
        }
    }

    /**
     * move_huge_pmd, for move_page_tables under the mmap and rmap locks: the huge entry at
     * {@code oldVa} and its deposit go to the empty PMD at {@code newVa}. False when there is no
     * huge entry at {@code oldVa}.
     */
    static boolean movePmd(RawPageTable t, long oldVa, long newVa) {
        long oldSlot = t.slot(oldVa, Level.PMD);
        if (oldSlot < 0 || !HugeMemory.isHugeEntry(t.readSlot(oldSlot))) {
            return false;
        }
        long newSlot = t.allocSlot(newVa, Level.PMD); // the tables above first: a failure here changes nothing
        long e = t.getAndClearSlot(oldSlot);
        t.installIfNone(newSlot, e);
        t.hugePmds().redepositTable(newVa, t.hugePmds().withdrawTable(oldVa));
        return true;
    }

    /** pmd_lock: the split lock of the PMD table holding the entry. */
    private KMutex pmdLock(long pmdSlot) {
        return mm.ptlOf(pmdSlot, PageSize.SIZE_2M);
    }
}
