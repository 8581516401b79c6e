package org.vmcore.impl.mm;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Khugepaged;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.impl.vma.VmaTree;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * Collapsing 4 KiB pages into transparent huge pages (mm/khugepaged.c): {@link #collapse}, which
 * MADV_COLLAPSE runs for each 2 MiB of its range, and {@link #scan}, one step of the khugepaged
 * thread, which a caller drives: it visits the 2 MiB ranges of every VMA that may have huge pages,
 * address space by address space, from where the last step stopped.
 *
 * <p>A range collapses when its PTE table maps only private anonymous pages (4 KiB pages, or pages
 * of a huge page mapped by PTEs, copied like the others), the zero page or nothing, no page is
 * under migration, locked or held by anything but its mappings, and a
 * 2 MiB block is free: the pages are copied into the new folio, the PMD entry maps it and the old
 * PTE table becomes its deposit. khugepaged also wants at least one page present and at most
 * half of them shared with another process (max_ptes_none 511, max_ptes_shared 256); MADV_COLLAPSE
 * takes shared pages too, and leaves their other mappings as they are.
 */
@SuppressWarnings("try") // a lock hold or an Invalidation is used only for its scope
public final class KhugepagedImpl implements Khugepaged {
    private static final int MAX_PTES_SHARED = 256;

    private final MmContext ctx;
    private final Supplier<List<SimAddressSpace>> spaces;
    private final ThpMode mode;
    private int cursorMm = -1; // khugepaged_scan.mm_slot, as the id of an address space
    private long cursorAddress; // khugepaged_scan.address

    public KhugepagedImpl(MmContext ctx, Supplier<List<SimAddressSpace>> spaces) {
        this.ctx = ctx;
        this.spaces = spaces;
        this.mode = ctx.config().thp();
    }

    @Override
    public int scan(int ranges) {
        if (ranges < 1) {
            throw new InvalidArgumentException("ranges", ranges, "must be 1 or more");
        }
        int collapsed;
        try (MachineLock.Held locked = ctx.lock().shared()) {
            ctx.lock().ensureOpen();
            try {
                collapsed = scan(spaces.get(), ranges);
            } catch (Throwable e) { // a notifier refused a range: the ranges before it collapsed
                throw ctx.hook().operationFailed(e);
            }
        }
        ctx.hook().afterOperation("khugepaged");
        return collapsed;
    }

    /**
     * One step of khugepaged: visits up to {@code ranges} 2 MiB ranges that may hold a huge page
     * (khugepaged_pages_to_scan / 512), collapsing those that qualify; returns how many it
     * collapsed. The caller holds the machine lock shared; each address space's mmap_lock is
     * taken for write around its collapses.
     */
    private synchronized int scan(Iterable<SimAddressSpace> spaces, int ranges) {
        int collapsed = 0;
        int left = ranges;
        boolean wrapped = false;
        while (left > 0) {
            SimAddressSpace next = nextSpace(spaces);
            if (next == null) {
                if (wrapped || cursorMm < 0) {
                    break;
                }
                wrapped = true; // a full scan ended: start again from the first address space
                cursorMm = -1;
                cursorAddress = 0;
                continue;
            }
            if (next.id() != cursorMm) {
                cursorMm = next.id();
                cursorAddress = 0;
            }
            int[] result = scanSpace(next, left);
            left -= result[0];
            collapsed += result[1];
            if (result[0] == 0 || cursorAddress < 0) { // this address space is done
                cursorAddress = -1;
            }
        }
        return collapsed;
    }

    /** The address space the cursor is in (unless done with), else the next one by id; null at the end. */
    private SimAddressSpace nextSpace(Iterable<SimAddressSpace> spaces) {
        SimAddressSpace best = null;
        for (SimAddressSpace mm : spaces) {
            boolean candidate = mm.id() > cursorMm || mm.id() == cursorMm && cursorAddress >= 0;
            if (candidate && !mm.isClosed() && (best == null || mm.id() < best.id())) {
                best = mm;
            }
        }
        return best;
    }

    /** Scans {@code mm} from the cursor; returns {ranges visited, ranges collapsed}. */
    private int[] scanSpace(SimAddressSpace mm, int budget) {
        int visited = 0;
        int collapsed = 0;
        try (MachineLock.Held mmap = mm.mmapWrite("khugepaged")) {
            if (mm.isClosed()) {
                return new int[] {0, 0};
            }
            for (VmArea v : mm.vmaTree().all()) {
                for (long haddr = (Math.max(v.start(), cursorAddress) + HugeMemory.SIZE - 1) & -HugeMemory.SIZE;
                     haddr + HugeMemory.SIZE <= v.end(); haddr += HugeMemory.SIZE) {
                    if (!eligible(v)) {
                        break;
                    }
                    if (visited == budget) {
                        cursorAddress = haddr;
                        return new int[] {visited, collapsed};
                    }
                    visited++;
                    if (collapse(ctx, mm, v, haddr, true) > 0) {
                        collapsed++;
                    }
                }
            }
        }
        cursorAddress = -1;
        return new int[] {visited, collapsed};
    }

    /** hugepage_vma_check for khugepaged: the mode and the VMA's advice allow huge pages. */
    private boolean eligible(VmArea v) {
        if (v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
            return false;
        }
        return mode == ThpMode.ALWAYS && v.hugepageAdvice() != VmArea.VM_NOHUGEPAGE
                || mode == ThpMode.MADVISE && v.hugepageAdvice() == VmArea.VM_HUGEPAGE;
    }

    /**
     * collapse_huge_page for the 2 MiB at {@code haddr} of {@code v}, under the mmap_lock held for
     * write: 1 when it collapsed, 0 when a huge entry is already there, else -EINVAL (nothing to
     * collapse, or an entry that cannot be), -EAGAIN (a page is busy) or -ENOMEM (no 2 MiB block).
     * With {@code khugepaged} the ranges a khugepaged step would pass by are passed by (-EINVAL).
     * A notifier that refuses the range leaves it as it was and its exception reaches the caller.
     */
    static int collapse(MmContext ctx, SimAddressSpace mm, VmArea v, long haddr, boolean khugepaged) {
        RawPageTable table = mm.pageTable();
        long pmdSlot = table.slot(haddr, Level.PMD);
        long pmd = pmdSlot < 0 ? 0 : table.readSlot(pmdSlot);
        if (HugeMemory.isHugePmd(pmd)) {
            return 0; // SCAN_PMD_MAPPED
        }
        if (!RawPageTable.isTablePointer(pmd, Level.PMD)) {
            return -Errno.EINVAL; // SCAN_PMD_NULL: nothing there
        }
        MemMap d = SharedSecrets.memMap(ctx.memory());
        int rc = check(table, table.slot(haddr, Level.PTE), d, ctx.memory().descriptors(), khugepaged);
        if (rc != 0) {
            return rc;
        }
        HugeMemory huge = mm.pages.huge;
        long folio = huge.allocateFolio();
        if (folio < 0) {
            return -Errno.ENOMEM; // SCAN_ALLOC_HUGE_PAGE_FAIL
        }
        boolean mapped = false;
        LongArrayList old = new LongArrayList(HugeMemory.NR);
        try (Invalidation inv = Invalidation.start(mm.notifiers(), haddr, haddr + HugeMemory.SIZE, NotifierEvent.CLEAR)) {
            AnonVma anonVma = mm.pages.anonVmaPrepare(v);
            AnonVma locked = VmaTree.lockRmap(v); // anon_vma_lock_write: no rmap walker meets the range half collapsed
            try {
                // pmdp_collapse_flush: the PTE table leaves the tree, every CPU forgets the range and
                // every lockless walker (GUP-fast) that may have read the table ends, all before the
                // pages are checked and copied: no store and no new reference reaches them after that
                long pte;
                KMutex ptl = mm.ptlOf(pmdSlot, PageSize.SIZE_2M);
                ptl.lock();
                try {
                    pte = table.hugePmds().detachTable(pmdSlot);
                } finally {
                    ptl.unlock();
                }
                ctx.shootdown().flushTlbMmRangeCpus(mm, haddr, haddr + HugeMemory.SIZE, PageSize.SIZE_4K.shift());
                ctx.lock().locklessWalkers().sync();
                if (check(table, pte << 12, d, ctx.memory().descriptors(), khugepaged) != 0) {
                    table.hugePmds().reattachTable(pmdSlot, pte);
                    return -Errno.EAGAIN; // a GUP reference got in meanwhile
                }
                copyAndClear(ctx, table, pte << 12, folio, old);
                huge.prepareFolio(folio, anonVma, v.linearPageIndex(haddr));
                mm.noteHugePmds();
                table.hugePmds().installCollapsed(pmdSlot, Pte.leaf(folio, PageSize.SIZE_2M,
                        FaultHandler.leafFlags(v, v.protection().write(), true)), pte);
                mapped = true;
            } finally {
                VmaTree.unlockRmap(v, locked);
            }
            mm.notifiers().secondaryTlbs(haddr, haddr + HugeMemory.SIZE); // outside the rmap lock: a notifier may call back
        } finally {
            if (!mapped) {
                ctx.memory().free(folio); // refused or raced before anything changed
            }
        }
        LongArrayList large = new LongArrayList(0); // huge pages whose pages were copied, held to the end
        for (int i = 0; i < old.size(); i++) {
            long head = huge.largeFolio(old.get(i));
            if (head >= 0 && (large.isEmpty() || large.getLast() != head)) {
                d.addRefcount(head, 1);
                large.add(head);
            }
        }
        for (int i = 0; i < old.size(); i++) {
            mm.pages.putMapped(old.get(i), false); // after the flush: no CPU reaches them any more
        }
        for (int i = 0; i < large.size(); i++) { // pages of it mapped elsewhere (after mremap): split later
            huge.deferSplitIfPartlyMapped(large.get(i));
            mm.pages.putReference(large.get(i), false);
        }
        mm.addAnonPages(HugeMemory.NR - old.size());
        mm.addAnonHugePages(HugeMemory.NR);
        ctx.thp().count(Thp.Event.COLLAPSE_ALLOC);
        return 1;
    }

    /** __collapse_huge_page_isolate's checks over the 512 entries from slot {@code base}; 0 when the range can collapse. */
    private static int check(RawPageTable table, long base, MemMap d, FrameDescriptors descriptors, boolean khugepaged) {
        int none = 0;
        int shared = 0;
        long checked = -1;
        boolean checkedShared = false;
        for (int i = 0; i < HugeMemory.NR; i++) {
            long e = table.readSlot(base + ((long) i << 3));
            if (Pte.isNone(e) || Pte.isPresent(e) && ZeroPage.maps(e)) {
                none++;
                continue;
            }
            if (!Pte.isPresent(e) || (e & Pte.PRESENT) == 0) {
                return -Errno.EINVAL; // a migration entry, or PROT_NONE: SCAN_PTE_NON_PRESENT
            }
            long pfn = Pte.pfn(e);
            long folio = d.folio(pfn); // a page of a PTE-mapped huge page is copied like any other
            int flags = d.flags(folio);
            if ((flags & FrameFlags.ANON) == 0) {
                return -Errno.EINVAL; // SCAN_PAGE_ANON
            }
            if ((flags & (FrameFlags.LOCKED | FrameFlags.ISOLATED)) != 0) {
                return -Errno.EAGAIN; // SCAN_PAGE_LOCK
            }
            boolean large = folio != pfn || (flags & FrameFlags.LARGE_RMAPPABLE) != 0;
            if (folio != checked) { // a huge page's pages come in a row: it is looked at once
                if (d.refcount(folio) != (large ? descriptors.folioMapcount(folio) : d.mapcount(pfn))) {
                    return -Errno.EAGAIN; // held by something besides its mappings: SCAN_PAGE_COUNT (is_refcount_suitable)
                }
                checked = large ? folio : -1;
                checkedShared = descriptors.folioMappedShared(folio);
            }
            if (checkedShared) { // folio_maybe_mapped_shared: a page counts as shared if any part of its folio is
                shared++;
            }
        }
        if (khugepaged && (none == HugeMemory.NR || shared > MAX_PTES_SHARED)) {
            return -Errno.EINVAL; // SCAN_EXCEED_NONE_PTE, SCAN_EXCEED_SHARED_PTE
        }
        return none == HugeMemory.NR ? -Errno.EINVAL : 0;
    }

    /** __collapse_huge_page_copy: each page into the folio, its entry cleared; the pages go to {@code old}. */
    private static void copyAndClear(MmContext ctx, RawPageTable table, long base, long folio, LongArrayList old) {
        for (int i = 0; i < HugeMemory.NR; i++) {
            long e = table.getAndClearSlot(base + ((long) i << 3));
            if (Pte.isPresent(e) && !ZeroPage.maps(e)) {
                long pfn = Pte.pfn(e);
                ctx.memory().contents().copy(pfn, folio + i, 1);
                old.add(pfn);
            }
        }
    }
}
