package org.vmcore.impl.mm;

import org.vmcore.api.Access;
import org.vmcore.api.FaultResult;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.RacePoint;
import org.vmcore.api.Regression;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.VmException;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.base.RaceHooks;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.lock.FaultMutexTable;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.PtLocks;
import org.vmcore.impl.notifier.CallbackFailures;
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
 * hugetlb_fault for one address space: the fault mutex of the file page, the hugetlb VMA lock,
 * huge_pte_alloc (sharing a sibling's PMD table where it can), then the page cache or a private
 * copy, filled in under the table's lock. A write to a present read-only entry goes to the
 * write-protect fault of {@link FaultHandler}; the private-page helpers here serve it too.
 */
final class HugetlbFault {
    private final SimAddressSpace mm;
    private final FaultHandler faults;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final PtLocks ptLocks;
    private final FaultMutexTable faultMutexes;
    private final RaceHooks races;
    private final CallbackFailures callbacks;
    // Before c0d0381ade79 a hugetlb fault holds nothing that keeps its PMD table from being unshared.
    private final boolean hugetlbFaultUnlocked;

    HugetlbFault(MmContext ctx, SimAddressSpace mm, FaultHandler faults) {
        this.mm = mm;
        this.faults = faults;
        this.memory = ctx.memory();
        this.descriptors = SharedSecrets.memMap(memory);
        this.ptLocks = ctx.lock().ptLocks();
        this.faultMutexes = ctx.lock().hugetlbFaultMutexes();
        this.races = ctx.lock().raceHooks();
        this.callbacks = ctx.callbackFailures();
        this.hugetlbFaultUnlocked = ctx.config().regressions().contains(Regression.PRE_C0D0381A);
    }

    /**
     * hugetlb_fault: the fault mutex of the file page serialises faults on it from every address
     * space (and its truncation); the hugetlb VMA lock, held for read, keeps the PMD table from
     * being unshared until the entry is filled (not held with {@link Regression#PRE_C0D0381A}).
     */
    FaultResult hugetlbFault(VmArea vma, long addr, boolean write) {
        // a page-cache page locked by a migration is waited for with nothing held, then tried again
        return mm.migrationWait.retryWhileLocked(() -> hugetlbFaultOnce(vma, addr, write), vma.mapping(),
                vma.hugePageIndex(addr));
    }

    /** One try of {@link #hugetlbFault}; null when the page-cache page's folio lock was taken. */
    private FaultResult hugetlbFaultOnce(VmArea vma, long addr, boolean write) {
        KMutex faultMutex = faultMutexes.of(vma.mapping().id(), vma.hugePageIndex(addr));
        // From inside a callback the operation below may hold i_mmap_rwsem and a VMA lock (a
        // truncation), or another page's fault mutex (a COW fault): these rank above them, so
        // they are only tried, and the fault shares no PMD table (huge_pmd_share's i_mmap_rwsem).
        boolean tryOnly = callbacks.inCallback();
        if (!tryOnly) {
            faultMutex.lock();
        } else if (!faultMutex.tryLock()) {
            throw busy(addr, "the page's fault mutex");
        }
        try {
            if (hugetlbFaultUnlocked) {
                return hugetlbFaultLocked(vma, addr, write, tryOnly);
            }
            if (!tryOnly) {
                vma.hugetlbVmaLock().downRead();
            } else if (!vma.hugetlbVmaLock().tryDownRead()) {
                throw busy(addr, "its VMA lock");
            }
            try {
                return hugetlbFaultLocked(vma, addr, write, tryOnly);
            } finally {
                vma.hugetlbVmaLock().upRead();
            }
        } finally {
            faultMutex.unlock();
        }
    }

    private VmException busy(long addr, String what) {
        return new VmException("a hugetlb fault at 0x" + Long.toHexString(addr) + " in " + mm + " from inside a callback,"
                + " while another thread holds " + what + ": a callback does not wait for it (it could wait for itself)");
    }

    private FaultResult hugetlbFaultLocked(VmArea vma, long addr, boolean write, boolean tryOnly) {
        PageSize size = vma.pageSize();
        Level leaf = Level.ofLeaf(size);
        RawPageTable table = mm.pageTable();
        boolean sharedNow = false;
        if (size == PageSize.SIZE_2M && !tryOnly && Pte.isNone(table.entry(addr & PmdSharing.PUD_MASK, Level.PUD))) {
            sharedNow = PmdSharing.hugePmdShare(vma, addr) >= 0;
        }
        // huge_pte_alloc's answer: the slot is used from here on without walking again.
        long slot = table.slot(addr, leaf);
        races.reach(RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC, mm, addr);
        long e = slot < 0 ? 0 : table.readSlot(slot);
        if (MigrationEntry.isMigration(e)) {
            return FaultResult.MIGRATION_WAIT;
        }
        if (!Pte.isNone(e)) {
            if (!write || (e & Pte.RW) != 0) {
                return sharedNow ? FaultResult.SHARED_TABLE : FaultResult.ALREADY_MAPPED;
            }
            return faults.writeProtectFault(vma, addr, slot, e);
        }
        if (vma.reservationUnmapped()) { // hugetlb_no_page: the owner took this VMA's page back
            throw new SegmentationFaultException(addr, write ? Access.WRITE : Access.READ,
                    SegmentationFaultException.Cause.HUGETLB_RESV_UNMAPPED);
        }
        HugetlbFileImpl file = HugetlbFileImpl.of(vma);
        long index = vma.hugePageIndex(addr);
        if (index >= file.pageCount()) {
            throw new SegmentationFaultException(addr, write ? Access.WRITE : Access.READ,
                    SegmentationFaultException.Cause.BEYOND_EOF);
        }
        long cached = file.mapping().find(index);
        // filemap_lock_hugetlb_folio: a page-cache page is mapped (or copied) under its folio lock,
        // which a migration of it holds from before its unmap to after its remap.
        if (cached >= 0 && !FolioLock.tryLock(descriptors, cached)) {
            return null;
        }
        if (cached >= 0 && file.mapping().find(index) != cached) {
            // filemap_lock_folio's recheck: migrated (or truncated) between the lookup and the
            // lock, so the frame may be free or another page's by now; look again
            FolioLock.unlock(descriptors, cached);
            return null;
        }
        try {
            return vma.kind() == VmaKind.HUGETLB_SHARED ? sharedNoPage(vma, addr, slot, write, file, index, cached)
                    : privateNoPage(vma, addr, slot, write, cached);
        } finally {
            if (cached >= 0) {
                FolioLock.unlock(descriptors, cached);
            }
        }
    }

    /** hugetlb_no_page of a shared mapping: the page-cache page, or a new one added to the cache. */
    private FaultResult sharedNoPage(VmArea vma, long addr, long slot, boolean write, HugetlbFileImpl file, long index,
                                     long cached) {
        PageSize size = vma.pageSize();
        HugePagePool pool = file.pool();
        boolean fresh = cached < 0;
        long pfn = cached;
        boolean reserved = false;
        if (fresh) {
            synchronized (file.reservedIndexes()) {
                reserved = file.reservedIndexes().contains(index);
            }
            pfn = pool.allocate(mm.homeNode(), reserved);
            if (pfn < 0) {
                throw new OutOfMemoryException("hugetlb pool of " + size.label() + " pages is empty (fault at 0x"
                        + Long.toHexString(addr) + " in mm" + mm.id() + ")");
            }
            descriptors.setFlags(pfn, FrameFlags.UPTODATE | FrameFlags.LOCKED); // a new page enters the cache locked
            descriptors.setMapping(pfn, file.mapping().id(), index << size.order());
        }
        try {
            try {
                installHuge(addr, slot, pfn, size, FaultHandler.leafFlags(vma, vma.protection().write(), write));
            } catch (RuntimeException ex) {
                if (fresh) {
                    descriptors.clearFlags(pfn, FrameFlags.LOCKED);
                    pool.free(pfn);
                    if (reserved) {
                        pool.reserve(1);
                    }
                }
                throw ex;
            }
            if (fresh) {
                // One step under resv_map's lock: a reservation that leaves the map is in the page
                // cache at once, so an mmap counting the file's unreserved pages never sees neither.
                synchronized (file.reservedIndexes()) {
                    file.reservedIndexes().remove(index);
                    file.mapping().add(index, pfn); // the page cache's reference is the allocation's
                }
            }
            descriptors.addMapcount(pfn, 1);
            descriptors.addRefcount(pfn, 1);
        } finally {
            if (fresh) {
                FolioLock.unlock(descriptors, pfn);
            }
        }
        mm.addHugetlbBytes(size.bytes());
        return fresh ? FaultResult.NEW_PAGE : FaultResult.PAGE_CACHE;
    }

    /**
     * hugetlb_no_page of a private mapping: a read maps the file's page until the mapping writes;
     * a write (or a page the file lacks) gets a private anonymous page, copied from the file's.
     */
    private FaultResult privateNoPage(VmArea vma, long addr, long slot, boolean write, long cached) {
        PageSize size = vma.pageSize();
        if (cached >= 0 && !write) { // a private mapping reads the file's page until it writes
            installHuge(addr, slot, cached, size, FaultHandler.leafFlags(vma, false, false));
            descriptors.addMapcount(cached, 1);
            descriptors.addRefcount(cached, 1);
            mm.addHugetlbBytes(size.bytes());
            return FaultResult.PAGE_CACHE;
        }
        long pfn = allocatePrivateHuge(vma, addr, vma.reservationOwner());
        if (cached >= 0) {
            memory.contents().copy(cached, pfn, size.frames());
            Initiator.pageCopy(size.bytes());
        }
        try {
            installHuge(addr, slot, pfn, size, FaultHandler.leafFlags(vma, vma.protection().write(), write));
        } catch (RuntimeException ex) {
            undoPrivateHuge(vma, pfn, vma.reservationOwner());
            throw ex;
        }
        mm.pages.newAnonRmap(vma, pfn, addr);
        mm.addHugetlbBytes(size.bytes());
        return cached >= 0 ? FaultResult.COW_COPY : FaultResult.NEW_PAGE;
    }

    /**
     * Fills the empty hugetlb entry at {@code slot} (found before, or allocated now when the
     * table was missing) under its table's lock: set_huge_pte_at. The fault mutex keeps every
     * other fault of this file page out, so the slot is still empty.
     */
    private void installHuge(long addr, long slot, long pfn, PageSize size, long flags) {
        RawPageTable table = mm.pageTable();
        long at = slot >= 0 ? slot : table.allocSlot(addr, Level.ofLeaf(size));
        KMutex ptl = mm.ptlOf(at, size);
        ptl.lock();
        try {
            if (!table.compareAndSetSlot(at, 0, Pte.leaf(pfn, size, flags))) {
                throw new IllegalStateException("hugetlb entry at 0x" + Long.toHexString(addr) + " in mm" + mm.id()
                        + " filled under the fault mutex: " + Pte.describe(table.readSlot(at), Level.ofLeaf(size)));
            }
        } finally {
            ptl.unlock();
        }
    }

    OutOfMemoryException privateHugeOom(VmArea vma, long addr) {
        return new OutOfMemoryException("hugetlb pool of " + vma.pageSize().label() + " pages has no page for a private"
                + " fault at 0x" + Long.toHexString(addr) + " in mm" + mm.id());
    }

    /**
     * A huge page for a private mapping: with {@code useReservation} it consumes one of the
     * owner's reservations, otherwise it needs a free page that no reservation holds.
     */
    private long allocatePrivateHuge(VmArea vma, long addr, boolean useReservation) {
        HugePagePool pool = HugetlbFileImpl.of(vma).pool();
        long pfn = pool.allocate(mm.homeNode(), useReservation);
        if (pfn < 0) {
            throw privateHugeOom(vma, addr);
        }
        return pfn;
    }

    void undoPrivateHuge(VmArea vma, long pfn, boolean usedReservation) {
        HugePagePool pool = HugetlbFileImpl.of(vma).pool();
        pool.free(pfn);
        if (usedReservation) {
            pool.reserve(1);
        }
    }

}
