package org.vmcore.impl.mm;

import java.util.function.ObjLongConsumer;
import org.vmcore.api.FaultResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * Transparent huge pages of one address space (mm/huge_memory.c), their faults: a 2 MiB
 * anonymous folio mapped by one PMD entry where the VMA allows it, the huge zero page for reads,
 * and write faults on either. What the other paths do with a huge entry is {@link HugePmds}.
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
        if (!mm.mayMapHugePmds() && !allowed(v, haddr)) {
            return null; // no huge entry here, and none to make: the 4 KiB path, with no walk
        }
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
        long pmdSlot = table.hugePmds().allocPmdSlotWithDeposit(haddr);
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
        table.hugePmds().freeWithdrawn(table.hugePmds().withdrawTable(haddr));
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
        mm.pages.hugePmds.splitPmd(v, haddr);
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
            mm.pages.hugePmds.splitPmd(v, haddr);
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
     * still holds): if no PMD maps it and it is partly mapped now (some of its pages mapped, some
     * not: a page another process still maps does not count as gone), it is queued once.
     */
    void deferSplitIfPartlyMapped(long head) {
        if (descriptors.entireMapcount(head) > 0 || (descriptors.flags(head) & FrameFlags.PARTIALLY_MAPPED) != 0) {
            return;
        }
        boolean mapped = false;
        boolean unmapped = false;
        for (int i = 0; i < NR && !(mapped && unmapped); i++) {
            if (descriptors.mapcount(head + i) > 0) {
                mapped = true;
            } else {
                unmapped = true;
            }
        }
        if (mapped && unmapped && descriptors.trySetFlag(head, FrameFlags.PARTIALLY_MAPPED)) {
            thp.count(Thp.Event.DEFERRED_SPLIT_PAGE);
            thp.queueDeferred(head);
        }
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
