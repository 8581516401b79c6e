package org.vmcore.impl.mm;

import java.util.function.ObjLongConsumer;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.FaultResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.tlb.TlbGather;
import org.vmcore.impl.vma.AnonVma;
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
 * Transparent huge pages of one address space (mm/huge_memory.c): a 2 MiB anonymous folio mapped
 * by one PMD entry where the VMA allows it, the huge zero page for reads, and what every other path
 * does with such an entry: zap it whole (zap_huge_pmd), change its protection whole
 * (change_huge_pmd), copy it at fork (copy_huge_pmd), move it (move_huge_pmd) or split it into a
 * PTE table (split_huge_pmd) where an operation covers it only in part.
 *
 * <p>Each huge entry has a PTE table deposited with it when it is made (the table counts in the
 * address space's page tables, as in Linux), so that a split never needs memory. After a split the
 * folio stays whole, mapped by 512 PTEs: each PTE counts in its page's mapcount and holds a
 * reference on the folio; the PMD entries mapping the folio count in its entire mapcount.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class HugeMemory {
    /** HPAGE_PMD_SIZE. */
    static final long SIZE = PageSize.SIZE_2M.bytes();
    /** HPAGE_PMD_NR: 4 KiB pages in a transparent huge page. */
    static final int NR = 512;
    private static final long AD = Pte.ACCESSED | Pte.DIRTY;

    /** Visits a huge PMD entry under its PMD lock. */
    @FunctionalInterface
    interface PmdVisitor {
        void visit(long haddr, long pmdSlot, long pmd);
    }

    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final Thp thp;
    private final PhysicalMemory memory;
    private final MemMap descriptors;

    HugeMemory(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.ctx = ctx;
        this.thp = ctx.thp();
        this.memory = ctx.memory();
        this.descriptors = SharedSecrets.memMap(memory);
    }

    /** A present or PROT_NONE PMD entry with PS set: it maps 2 MiB rather than pointing to a table. */
    static boolean isHugePmd(long pmd) {
        return Pte.isPresent(pmd) && (pmd & Pte.PSE) != 0;
    }

    /** A huge PMD entry or a PMD migration entry of a huge page being migrated: what zap, fork and mremap take whole. */
    static boolean isHugeEntry(long pmd) {
        return isHugePmd(pmd) || MigrationEntry.isMigration(pmd);
    }

    /**
     * thp_vma_allowable_order for a fault: a private anonymous VMA covering the whole 2 MiB at
     * {@code haddr}, under the machine's mode and the VMA's MADV_HUGEPAGE/NOHUGEPAGE.
     */
    boolean allowed(VmArea v, long haddr) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE || haddr < v.start() || haddr + SIZE > v.end()) {
            return false;
        }
        int advice = v.hugepageAdvice();
        return switch (thp.mode()) {
            case ALWAYS -> advice != VmArea.VM_NOHUGEPAGE;
            case MADVISE -> advice == VmArea.VM_HUGEPAGE;
            case NEVER -> false;
        };
    }

    // ---- faults ----

    /**
     * The PMD level of __handle_mm_fault for private anonymous memory: an empty PMD the VMA allows
     * a huge page in gets one (a write) or the huge zero page (a read); a huge entry takes the
     * access or its write-protect fault. Null when the 4 KiB path is to handle the fault.
     */
    FaultResult fault(VmArea v, long va, boolean write) {
        long haddr = va & -SIZE;
        RawPageTable table = mm.pageTable();
        long pmdSlot = table.slot(haddr, Level.PMD);
        long pmd = pmdSlot < 0 ? 0 : table.readSlot(pmdSlot);
        if (Pte.isNone(pmd)) {
            if (!allowed(v, haddr)) {
                return null;
            }
            return write ? anonymousPage(v, haddr) : zeroPage(v, haddr);
        }
        if (MigrationEntry.isMigration(pmd)) {
            return FaultResult.MIGRATION_WAIT; // pmd_migration_entry_wait
        }
        if (!isHugePmd(pmd)) {
            return null;
        }
        if (!write || (pmd & Pte.RW) != 0) {
            return FaultResult.ALREADY_MAPPED;
        }
        return ZeroPage.maps(pmd) ? wpZeroPage(v, haddr, pmdSlot, pmd) : wpPage(v, haddr, pmdSlot, pmd);
    }

    /** do_huge_pmd_anonymous_page for a write: a zeroed 2 MiB folio, or null (4 KiB pages) when none is free. */
    private FaultResult anonymousPage(VmArea v, long haddr) {
        AnonVma anonVma = mm.pages.anonVmaPrepare(v);
        long folio = allocateFolio();
        if (folio < 0) {
            thp.count(Thp.Event.FAULT_FALLBACK);
            return null;
        }
        boolean mapped;
        try {
            mapped = install(haddr, Pte.leaf(folio, PageSize.SIZE_2M, FaultHandler.leafFlags(v, v.protection().write(), true)),
                    () -> prepareFolio(folio, anonVma, v.linearPageIndex(haddr)));
        } catch (RuntimeException e) { // no frame for a page table: nothing was mapped
            memory.free(folio);
            throw e;
        }
        if (!mapped) {
            memory.free(folio);
            return FaultResult.ALREADY_MAPPED; // another fault of this address space was first
        }
        mm.addAnonPages(NR);
        mm.addAnonHugePages(NR);
        thp.count(Thp.Event.FAULT_ALLOC);
        return FaultResult.NEW_PAGE;
    }

    /** do_huge_pmd_anonymous_page for a read: the huge zero page, read-only and special; no RSS. */
    private FaultResult zeroPage(VmArea v, long haddr) {
        long zero = thp.hugeZeroPfn();
        if (zero < 0) {
            thp.count(Thp.Event.FAULT_FALLBACK);
            return null;
        }
        boolean mapped = install(haddr, Pte.leaf(zero, PageSize.SIZE_2M, v.pteProtection(false) | Pte.SPECIAL), () -> { });
        return mapped ? FaultResult.ZERO_PAGE : FaultResult.ALREADY_MAPPED;
    }

    /**
     * set_pmd_at under the PMD lock, with a table deposited first; {@code prepare} runs under the
     * lock just before the entry goes in. False when the PMD was no longer empty.
     */
    private boolean install(long haddr, long leaf, Runnable prepare) {
        RawPageTable table = mm.pageTable();
        long pmdSlot = table.allocPmdSlotWithDeposit(haddr);
        mm.noteHugePmds();
        KMutex ptl = pmdLock(pmdSlot);
        ptl.lock();
        try {
            if (Pte.isNone(table.readSlot(pmdSlot))) {
                prepare.run(); // the folio is complete before a walker can find the entry
                if (table.installIfNone(pmdSlot, leaf)) {
                    return true;
                }
                throw new IllegalStateException("PMD at 0x" + Long.toHexString(haddr) + " filled under its lock");
            }
        } finally {
            ptl.unlock();
        }
        table.freeWithdrawn(table.withdrawTable(haddr));
        return false;
    }

    /**
     * do_huge_pmd_wp_page: the only mapping of its folio is made writable again; any other is split
     * and the 4 KiB path copies the one page written (null), as Linux does since it stopped copying
     * whole huge pages on COW.
     */
    private FaultResult wpPage(VmArea v, long haddr, long pmdSlot, long pmd) {
        RawPageTable table = mm.pageTable();
        long folio = Pte.pfn(pmd, PageSize.SIZE_2M);
        KMutex ptl = pmdLock(pmdSlot);
        ptl.lock();
        try {
            long cur = table.readSlot(pmdSlot);
            if ((cur & ~AD) != (pmd & ~AD)) {
                return FaultResult.ALREADY_MAPPED; // changed meanwhile: the access retries
            }
            if (descriptors.refcount(folio) == 1 && (descriptors.flags(folio) & FrameFlags.LOCKED) == 0) {
                while (!table.compareAndSetSlot(pmdSlot, cur, cur | Pte.RW | AD)) {
                    cur = table.readSlot(pmdSlot);
                }
                return FaultResult.COW_REUSE;
            }
        } finally {
            ptl.unlock();
        }
        splitPmd(v, haddr);
        return null;
    }

    /**
     * do_huge_zero_wp_pmd: a write to the huge zero page gets a new zeroed huge page in its place;
     * without one free, the entry is split to the 4 KiB zero page and the 4 KiB path copies (null).
     */
    private FaultResult wpZeroPage(VmArea v, long haddr, long pmdSlot, long pmd) {
        AnonVma anonVma = mm.pages.anonVmaPrepare(v);
        long folio = allocateFolio();
        if (folio < 0) {
            thp.count(Thp.Event.FAULT_FALLBACK);
            splitPmd(v, haddr);
            return null;
        }
        RawPageTable table = mm.pageTable();
        long leaf = Pte.leaf(folio, PageSize.SIZE_2M, FaultHandler.leafFlags(v, true, true));
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), haddr, haddr + SIZE, NotifierEvent.CLEAR)) {
            KMutex ptl = pmdLock(pmdSlot);
            ptl.lock();
            try {
                long cur = table.readSlot(pmdSlot);
                if ((cur & ~AD) != (pmd & ~AD)) {
                    memory.free(folio);
                    return FaultResult.ALREADY_MAPPED;
                }
                prepareFolio(folio, anonVma, v.linearPageIndex(haddr));
                while (!table.compareAndSetSlot(pmdSlot, cur, leaf)) {
                    cur = table.readSlot(pmdSlot);
                }
                ctx.shootdown().flushTlbMmRangeCpus(mm, haddr, haddr + SIZE, PageSize.SIZE_2M.shift());
            } finally {
                ptl.unlock();
            }
            mm.notifiers().secondaryTlbs(haddr, haddr + SIZE);
        }
        mm.addAnonPages(NR);
        mm.addAnonHugePages(NR);
        thp.count(Thp.Event.FAULT_ALLOC);
        return FaultResult.COW_COPY;
    }

    /** A zeroed order-9 block from the home node, else any node; -1 when none is free. */
    long allocateFolio() {
        int nodes = memory.nodes().size();
        for (int i = 0; i < nodes; i++) {
            long pfn = memory.tryAllocate((mm.homeNode() + i) % nodes, MemMap.LARGE_ORDER, true);
            if (pfn >= 0) {
                return pfn;
            }
        }
        return -1;
    }

    /** folio_add_new_anon_rmap at the PMD level: anonymous, under the VMA's anon_vma, mapped whole once. */
    void prepareFolio(long folio, AnonVma anonVma, long index) {
        descriptors.setFlags(folio, FrameFlags.ANON | FrameFlags.UPTODATE | FrameFlags.LARGE_RMAPPABLE);
        descriptors.setMapping(folio, anonVma.id(), index);
        descriptors.addEntireMapcount(folio, 1);
    }

    /** The head of the transparent huge page {@code pfn} belongs to, or -1 for any other page. */
    long largeFolio(long pfn) {
        long head = descriptors.folio(pfn);
        return (descriptors.flags(head) & FrameFlags.LARGE_RMAPPABLE) != 0 ? head : -1;
    }

    /**
     * deferred_split_folio after a zap took pages of the folio at {@code head} (which the caller
     * still holds): if no PMD maps it and some of its pages are still mapped, it is queued once.
     */
    void deferSplitIfPartlyMapped(long head) {
        if (descriptors.entireMapcount(head) > 0 || (descriptors.flags(head) & FrameFlags.PARTIALLY_MAPPED) != 0) {
            return;
        }
        for (int i = 0; i < NR; i++) {
            if (descriptors.mapcount(head + i) > 0) {
                if (descriptors.trySetFlag(head, FrameFlags.PARTIALLY_MAPPED)) {
                    thp.count(Thp.Event.DEFERRED_SPLIT_PAGE);
                }
                return;
            }
        }
    }

    // ---- splitting ----

    /**
     * __split_huge_pmd: the huge entry at {@code haddr}, if there still is one, becomes a PTE table
     * of 512 entries with its protection and accessed/dirty bits. A folio's pages each gain a PTE
     * mapping and the folio 511 references; the huge zero page becomes 512 entries of the 4 KiB zero
     * page. The deposited table is the new PTE table, so a split never fails.
     */
    void splitPmd(VmArea v, long haddr) {
        RawPageTable table = mm.pageTable();
        long pmdSlot = table.slot(haddr, Level.PMD);
        if (pmdSlot < 0 || !isHugeEntry(table.readSlot(pmdSlot))) {
            return;
        }
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), haddr, haddr + SIZE, NotifierEvent.CLEAR)) {
            KMutex ptl = pmdLock(pmdSlot);
            ptl.lock();
            try {
                long pmd = table.readSlot(pmdSlot);
                if (isHugeEntry(pmd)) {
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
            descriptors.addMapcounts(folio, NR, 1);
            descriptors.addRefcount(folio, NR - 1);
        }
        long pte = table.withdrawTable(haddr);
        table.splitLeaf(pmdSlot, pmd, pte, ptes);
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
        table.splitLeaf(pmdSlot, pmd, table.withdrawTable(haddr), ptes);
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
            if (!isHugeEntry(table.readSlot(pmdSlot))) {
                continue;
            }
            if (whole == null || haddr < from || haddr + SIZE > to) {
                splitPmd(v, haddr);
                continue;
            }
            KMutex ptl = pmdLock(pmdSlot);
            ptl.lock();
            try {
                long pmd = table.readSlot(pmdSlot);
                if (isHugeEntry(pmd)) {
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
        table.freeWithdrawn(table.withdrawTable(haddr));
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
        long childSlot = to.allocPmdSlotWithDeposit(haddr);
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
            if (isHugeEntry(table.entry(haddr, Level.PMD)) && !Pte.isNone(table.entry(to + (haddr - from), Level.PMD))) {
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
        if (oldSlot < 0 || !isHugeEntry(t.readSlot(oldSlot))) {
            return false;
        }
        long newSlot = t.allocSlot(newVa, Level.PMD); // the tables above first: a failure here changes nothing
        long e = t.getAndClearSlot(oldSlot);
        t.installIfNone(newSlot, e);
        t.redepositTable(newVa, t.withdrawTable(oldVa));
        return true;
    }

    /**
     * The huge pages {@code v} maps with PMD entries (not the huge zero page), with their
     * addresses: for migrate_pages, beside the 4 KiB pages. For reading only.
     */
    static void forEachHugePage(VmArea v, ObjLongConsumer<Long> visitor) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE || !v.owner().mayMapHugePmds()) {
            return;
        }
        RawPageTable table = v.owner().pageTable();
        for (long haddr = (v.start() + SIZE - 1) & -SIZE; haddr + SIZE <= v.end(); haddr += SIZE) {
            long pmd = table.entry(haddr, Level.PMD);
            if (isHugePmd(pmd) && !ZeroPage.maps(pmd)) {
                visitor.accept(haddr, Pte.pfn(pmd, PageSize.SIZE_2M));
            }
        }
    }

    /** pmd_lock: the split lock of the PMD table holding the entry. */
    private KMutex pmdLock(long pmdSlot) {
        return mm.ptlOf(pmdSlot, PageSize.SIZE_2M);
    }
}
