package org.vmcore.impl.mm;

import org.vmcore.api.Access;
import org.vmcore.api.FaultResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.RacePoint;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.base.RaceHooks;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.PtLocks;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.stat.FaultEvent;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.FileMapping;
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
 * The page-fault handler of one address space (handle_mm_fault), called once the VMA and its
 * protection have been checked: demand-zero anonymous pages, shmem and hugetlbfs page-cache
 * faults (hugetlb_fault, with huge_pmd_share on the way), and write-protect faults that break
 * copy-on-write (do_wp_page, hugetlb_wp). A failed fault leaves no trace.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class FaultHandler {
    private final SimAddressSpace mm;
    private final PhysicalMemory memory;
    private final MemMap descriptors;

    private final TlbShootdown shootdown;
    private final PtLocks ptLocks;
    private final RaceHooks races;
    private final HugetlbFault hugetlb;
    private final SwapIn swapIn;
    private final long zeroPfn;

    FaultHandler(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.shootdown = ctx.shootdown();
        this.memory = ctx.memory();
        this.descriptors = SharedSecrets.memMap(memory);
        this.ptLocks = ctx.lock().ptLocks();
        this.races = ctx.lock().raceHooks();
        this.hugetlb = new HugetlbFault(ctx, mm, this);
        this.swapIn = new SwapIn(ctx, mm, this);
        this.zeroPfn = ctx.zeroPfn();
    }

    /**
     * do_user_addr_fault for an access the caller asked for: a non-canonical address, an address
     * outside every VMA or an access the VMA does not allow is a SIGSEGV; anything else goes to
     * {@link #handle} (handle_mm_fault), recorded as a JFR fault event.
     */
    FaultResult userFault(long va, Access access) {
        if (!mm.pageTable().mode().isCanonical(va)) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.NON_CANONICAL);
        }
        VmArea vma = mm.vma(va);
        if (vma == null) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.NO_VMA);
        }
        if (!vma.protection().allows(access)) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.PROTECTION);
        }
        mm.faultCounts.entered();
        FaultEvent event = new FaultEvent();
        event.begin();
        FaultResult result = handle(vma, va, access);
        mm.faultCounts.handled(result); // a failed fault threw: it counts in pgfault only, as mm_account_fault does
        if (event.shouldCommit()) {
            event.addressSpace = mm.id();
            event.address = va;
            event.access = access.name();
            event.result = result.name();
            event.commit();
        }
        return result;
    }

    /**
     * handle_mm_fault under the mmap_lock held for read: faults of one address space run in
     * parallel, so each fills its entry under the entry's page-table lock, after checking that
     * no other fault filled it first (the pte_same check); the loser gives back what it
     * allocated and reports the entry as already mapped.
     */
    FaultResult handle(VmArea vma, long va, Access access) {
        boolean write = access == Access.WRITE;
        races.reach(RacePoint.FAULT_AFTER_VMA_LOOKUP, mm, va);
        if (vma.kind().isHugetlb()) {
            return hugetlb.hugetlbFault(vma, vma.pageSize().alignDown(va), write);
        }
        if (vma.kind() == VmaKind.ANONYMOUS_PRIVATE) {
            FaultResult huge = mm.pages.huge.fault(vma, va, write);
            if (huge != null) {
                return huge;
            }
        }
        long addr = va & ~0xFFFL;
        RawPageTable table = mm.pageTable();
        long slot = table.slot(addr, Level.PTE);
        long e = slot < 0 ? 0 : table.readSlot(slot);
        if (MigrationEntry.isMigration(e)) {
            return FaultResult.MIGRATION_WAIT;
        }
        if (SwapCache.isSwapEntry(e)) {
            return swapIn.doSwapPage(vma, addr, slot, e, write);
        }
        if (!Pte.isNone(e)) {
            return !write || (e & Pte.RW) != 0 ? FaultResult.ALREADY_MAPPED : writeProtectFault(vma, addr, slot, e);
        }
        if (vma.kind() == VmaKind.ANONYMOUS_SHARED) {
            return shmemFault(vma, addr, write);
        }
        if (!write) {
            return zeroPageFault(addr, slot, vma);
        }
        mm.pages.anonVmaPrepare(vma); // before the page-table lock, as vmf_anon_prepare
        long pfn = mm.pages.allocateBasePage();
        long newSlot = slot;
        if (newSlot < 0) { // pte_alloc; a table found above stays: only munmap, under mmap_lock for write, frees it
            try {
                newSlot = table.tryAllocSlot(addr, Level.PTE);
            } catch (RuntimeException ex) {
                memory.free(pfn);
                throw ex;
            }
            if (newSlot < 0) { // a huge page was mapped there meanwhile
                memory.free(pfn);
                return FaultResult.ALREADY_MAPPED;
            }
        }
        KMutex ptl = ptLocks.ofSlot(newSlot);
        ptl.lock();
        try {
            if (!Pte.isNone(table.readSlot(newSlot))) { // another fault of this address space was first
                memory.free(pfn);
                return FaultResult.ALREADY_MAPPED;
            }
            mm.pages.newAnonRmap(vma, pfn, addr);
            table.compareAndSetSlot(newSlot, 0, Pte.leaf(pfn, PageSize.SIZE_4K, leafFlags(vma, vma.protection().write(), write)));
            mm.addAnonPages(1);
        } finally {
            ptl.unlock();
        }
        return FaultResult.NEW_PAGE;
    }

    /**
     * do_anonymous_page for a read: the shared zero page, read-only and special, under the
     * entry's lock; no page, no anon_vma, no RSS.
     */
    private FaultResult zeroPageFault(long addr, long slot, VmArea vma) {
        RawPageTable table = mm.pageTable();
        long at = slot >= 0 ? slot : table.tryAllocSlot(addr, Level.PTE);
        if (at < 0) {
            return FaultResult.ALREADY_MAPPED; // a huge page was mapped there meanwhile
        }
        KMutex ptl = ptLocks.ofSlot(at);
        ptl.lock();
        try {
            if (!table.compareAndSetSlot(at, 0, Pte.leaf(zeroPfn, PageSize.SIZE_4K, vma.pteProtection(false) | Pte.SPECIAL))) {
                return FaultResult.ALREADY_MAPPED; // another fault of this address space was first
            }
        } finally {
            ptl.unlock();
        }
        return FaultResult.ZERO_PAGE;
    }

    /**
     * shmem_fault: maps the page-cache page of the index, adding a new one if there is none. The
     * page is mapped under its folio lock; when another thread holds that (a migration, or a
     * fault of another address space mapping it), the fault waits for it with nothing held and
     * tries again, or, where it must not wait, reports {@link FaultResult#MIGRATION_WAIT}.
     */
    private FaultResult shmemFault(VmArea vma, long addr, boolean write) {
        return mm.migrationWait.retryWhileLocked(() -> shmemFaultOnce(vma, addr, write), vma.mapping(),
                vma.linearPageIndex(addr));
    }

    /** One try of {@link #shmemFault}; null when the page's folio lock was taken. */
    private FaultResult shmemFaultOnce(VmArea vma, long addr, boolean write) {
        FileMapping mapping = vma.mapping();
        long index = vma.linearPageIndex(addr);
        long fresh = -1;
        if (mapping.find(index) < 0) {
            fresh = mm.pages.allocateBasePage(); // refcount 1: the page cache's reference, if it gets in
            descriptors.setFlags(fresh, FrameFlags.UPTODATE);
            descriptors.setMapping(fresh, mapping.id(), index);
        }
        RawPageTable table = mm.pageTable();
        long slot = table.slot(addr, Level.PTE);
        if (slot < 0) {
            try {
                slot = table.allocSlot(addr, Level.PTE);
            } catch (RuntimeException ex) {
                if (fresh >= 0) {
                    memory.free(fresh);
                }
                throw ex;
            }
        }
        KMutex ptl = ptLocks.ofSlot(slot);
        ptl.lock();
        try {
            long pfn = -1;
            boolean inserted = false;
            if (Pte.isNone(table.readSlot(slot))) {
                synchronized (mapping) { // two address spaces may fault the same index: one page gets in
                    pfn = mapping.find(index);
                    if (pfn < 0 && fresh >= 0) {
                        FolioLock.tryLock(descriptors, fresh); // a new page goes into the cache locked
                        mapping.add(index, fresh);
                        pfn = fresh;
                        fresh = -1;
                        inserted = true;
                    }
                }
            }
            if (fresh >= 0) {
                memory.free(fresh);
            }
            if (pfn < 0) {
                return FaultResult.ALREADY_MAPPED; // filled by another fault (or the page went): the access retries
            }
            if (!inserted && !FolioLock.tryLock(descriptors, pfn)) {
                return null; // being migrated, or mapped by another fault: wait without the lock
            }
            if (!inserted && mapping.find(index) != pfn) { // migrated between the lookup and the lock: look again
                FolioLock.unlock(descriptors, pfn);
                return null;
            }
            try {
                table.compareAndSetSlot(slot, 0, Pte.leaf(pfn, PageSize.SIZE_4K, leafFlags(vma, vma.protection().write(), write)));
                descriptors.addMapcount(pfn, 1);
                descriptors.addRefcount(pfn, 1);
            } finally {
                FolioLock.unlock(descriptors, pfn); // finish_fault's folio_unlock: mapped and counted
            }
            mm.addShmemPages(1);
            return inserted ? FaultResult.NEW_PAGE : FaultResult.PAGE_CACHE;
        } finally {
            ptl.unlock();
        }
    }

    /** do_wp_page / hugetlb_wp: a write to a present entry without RW in a writable VMA. */
    FaultResult writeProtectFault(VmArea vma, long addr, long slot, long e) {
        RawPageTable table = mm.pageTable();
        PageSize size = vma.pageSize();
        long pfn = Pte.pfn(e, size);
        KMutex ptl = mm.ptlOf(slot, size);
        swapIn.freeSwapForReuse(pfn); // wp_can_reuse_anon_folio: a swap-cache page nothing else names may be reused
        if (vma.kind().isShared() || mm.pages.exclusiveAnon(pfn)) {
            ptl.lock();
            try {
                long cur = table.readSlot(slot);
                if (!sameEntry(cur, e)) {
                    return FaultResult.ALREADY_MAPPED; // another fault changed it first: the access retries
                }
                while (!table.compareAndSetSlot(slot, cur, cur | Pte.RW | Pte.ACCESSED | Pte.DIRTY)) {
                    cur = table.readSlot(slot);
                }
            } finally {
                ptl.unlock();
            }
            return vma.kind().isShared() ? FaultResult.ALREADY_MAPPED : FaultResult.COW_REUSE;
        }
        boolean huge = size != PageSize.SIZE_4K;
        long copy;
        if (huge) {
            // The owner's slot held a reservation unless it already held an anonymous page: then
            // the copy comes from outside the reserve (hugetlb_wp's outside_reserve).
            boolean outsideReserve = vma.reservationOwner() && mm.pages.isAnon(pfn);
            copy = HugetlbFileImpl.of(vma).pool().allocate(mm.homeNode(), vma.reservationOwner() && !outsideReserve);
            if (copy < 0 && outsideReserve) {
                return reuseAfterUnmapRefPrivate(vma, addr, slot, pfn);
            }
            if (copy < 0) {
                throw hugetlb.privateHugeOom(vma, addr);
            }
        } else {
            copy = mm.pages.allocateBasePage(); // zeroed: the zero page needs no copy (wp_page_copy)
        }
        boolean zero = ZeroPage.maps(e);
        if (!zero) {
            // wp_page_copy copies under a reference taken under the page-table lock: a migration
            // or unmap meanwhile cannot free (and reuse) the page being copied
            ptl.lock();
            try {
                if (!sameEntry(table.readSlot(slot), e)) {
                    undoCopy(vma, copy, huge);
                    return FaultResult.ALREADY_MAPPED;
                }
                descriptors.addRefcount(pfn, 1);
            } finally {
                ptl.unlock();
            }
        }
        try {
            return copyOnWrite(vma, addr, slot, e, pfn, copy, zero);
        } finally {
            if (!zero) {
                mm.pages.putReference(pfn, huge);
            }
        }
    }

    /** wp_page_copy after the old page is held: copy, then replace the entry if it is still the one copied. */
    private FaultResult copyOnWrite(VmArea vma, long addr, long slot, long e, long pfn, long copy, boolean zero) {
        RawPageTable table = mm.pageTable();
        PageSize size = vma.pageSize();
        boolean huge = size != PageSize.SIZE_4K;
        KMutex ptl = mm.ptlOf(slot, size);
        if (!zero) {
            memory.contents().copy(pfn, copy, size.frames());
            Initiator.pageCopy(size.bytes());
        }
        long entry = Pte.leaf(copy, size, leafFlags(vma, true, true));
        mm.pages.anonVmaPrepare(vma); // before the page-table lock: the anon_vma lock ranks above it
        // wp_page_copy / hugetlb_wp: notify, replace the entry, flush the old translation everywhere.
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), addr, addr + size.bytes(), NotifierEvent.CLEAR)) {
            ptl.lock();
            try {
                long cur = table.readSlot(slot);
                if (!sameEntry(cur, e)) { // another fault of this address space broke the COW first
                    undoCopy(vma, copy, huge);
                    return FaultResult.ALREADY_MAPPED;
                }
                while (!table.compareAndSetSlot(slot, cur, entry)) {
                    cur = table.readSlot(slot);
                }
                mm.pages.newAnonRmap(vma, copy, addr);
                shootdown.flushTlbMmRangeCpus(mm, addr, addr + size.bytes(), size.shift());
            } finally {
                ptl.unlock();
            }
            // Outside the ptl, since a notifier may call back; before the old page may be freed
            // (as ptep_clear_flush tells them before folio_put).
            mm.notifiers().secondaryTlbs(addr, addr + size.bytes());
            if (zero) {
                mm.addAnonPages(1); // the zero page counted nowhere; its copy counts as anonymous
            } else {
                mm.pages.putMapped(pfn, huge);
            }
        }
        return FaultResult.COW_COPY;
    }

    /** The copy of a COW fault that lost its race goes back. */
    private void undoCopy(VmArea vma, long copy, boolean huge) {
        if (huge) {
            hugetlb.undoPrivateHuge(vma, copy, false);
        } else {
            memory.free(copy);
        }
    }

    /**
     * hugetlb_wp when the reservation owner finds no page for its copy: it takes the page back
     * from the other private mappings that share it (they get SIGBUS on their next fault), and
     * then, as the page's only mapper, writes it in place.
     */
    private FaultResult reuseAfterUnmapRefPrivate(VmArea vma, long addr, long slot, long pfn) {
        UnmapRefPrivate.unmapRefPrivate(vma, addr, pfn, shootdown, mm.pages);
        RawPageTable table = mm.pageTable();
        long cur = table.readSlot(slot);
        if (!Pte.isPresent(cur) || Pte.pfn(cur, vma.pageSize()) != pfn || !mm.pages.exclusiveAnon(pfn)) {
            throw hugetlb.privateHugeOom(vma, addr); // someone else still holds the page
        }
        while (!table.compareAndSetSlot(slot, cur, cur | Pte.RW | Pte.ACCESSED | Pte.DIRTY)) {
            cur = table.readSlot(slot);
        }
        return FaultResult.COW_REUSE;
    }

    /** pte_same, ignoring the accessed and dirty bits a CPU's walk may have set meanwhile. */
    private static boolean sameEntry(long a, long b) {
        long ad = Pte.ACCESSED | Pte.DIRTY;
        return (a & ~ad) == (b & ~ad);
    }

    /** Leaf bits for a new entry: A always, D on a write fault, RW when {@code writable}. */
    static long leafFlags(VmArea vma, boolean writable, boolean dirty) {
        return vma.pteProtection(writable) | Pte.ACCESSED | (dirty ? Pte.DIRTY : 0);
    }
}
