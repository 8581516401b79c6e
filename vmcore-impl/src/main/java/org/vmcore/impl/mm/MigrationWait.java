package org.vmcore.impl.mm;

import org.vmcore.api.FaultResult;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * How an access of one address space waits for a page under migration (migration_entry_wait,
 * and a fault that found a page-cache page locked): with no lock held, until the page's folio
 * lock is released, after which the access retries. It refuses a wait that could never end: for
 * a page the thread itself is migrating (an access from a migration observer), or from inside a
 * user callback, which runs under another operation's locks that the migration may need; and a
 * CPU's wait ends when its thread is interrupted.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class MigrationWait {
    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final MemMap descriptors;

    MigrationWait(MmContext ctx, SimAddressSpace mm) {
        this.mm = mm;
        this.ctx = ctx;
        this.descriptors = SharedSecrets.memMap(ctx.memory());
    }

    /**
     * A CPU's access met a migration entry at va (or a page-cache page locked by a migration):
     * waits until that page is unlocked.
     *
     * @throws MigrationWaitException where it must not wait and the page is still locked
     */
    void waitForMigration(long va) {
        long pfn;
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            pfn = mm.isClosed() ? -1 : lockedPageAt(va);
        }
        if (pfn < 0) {
            Thread.onSpinWait(); // the migration ended meanwhile (or an entry left by RmapWalker.tryToMigrate): retry
            return;
        }
        if (ctx.migrating().holds(pfn)) {
            throw new MigrationWaitException(va);
        } else if (ctx.callbackFailures().inCallback()) {
            throw new MigrationWaitException(va, "the access at 0x" + Long.toHexString(va) + " from inside a callback meets"
                    + " a page under migration; a callback does not wait for it (the migration may need the locks of the"
                    + " operation that called back): retry it after that operation");
        }
        if (!FolioLock.waitUnlocked(descriptors, pfn, mm.lock())) { // each look under the machine lock
            throw new MigrationWaitException(va, "the access at 0x" + Long.toHexString(va) + " was interrupted while it"
                    + " waited for a migration (its interrupt status is kept): retry it afterwards");
        }
    }

    /** The head PFN of the locked page an access at va waits for, or -1; under the mmap_lock. */
    private long lockedPageAt(long va) {
        VmArea vma = mm.vma(va);
        if (vma == null) {
            return -1;
        }
        PageSize size = vma.pageSize();
        long slot = mm.pageTable().slot(size.alignDown(va), Level.ofLeaf(size));
        if (slot < 0 && vma.kind() == VmaKind.ANONYMOUS_PRIVATE) {
            slot = mm.pageTable().slot(va & -HugeMemory.SIZE, Level.PMD); // a huge page's PMD migration entry
        }
        long e = slot < 0 ? 0 : mm.pageTable().readSlot(slot);
        long pfn = -1;
        if (MigrationEntry.isMigration(e)) {
            pfn = descriptors.folio(MigrationEntry.pfn(e)); // a page of a huge page waits on its folio's lock
        } else if (SwapCache.isSwapEntry(e)) { // its swap-cache page, locked by a reclaim or a migration
            pfn = ctx.swapCache().peek(SwapEntry.offset(e));
        } else if (Pte.isNone(e) && vma.mapping() != null) {
            pfn = vma.mapping().find(size == PageSize.SIZE_4K ? vma.linearPageIndex(va) : vma.hugePageIndex(va));
        }
        return pfn >= 0 && FolioLock.isLocked(descriptors, pfn) ? pfn : -1;
    }

    /** One try of a page-cache fault: its result, or null when the page's folio lock was taken. */
    @FunctionalInterface
    interface FaultTry {
        FaultResult tryOnce();
    }

    /**
     * A page-cache fault (filemap_fault, hugetlb_no_page): tried until it maps the page, waiting
     * for the page's folio lock with nothing held whenever another thread had it; where the fault
     * must not wait, {@link FaultResult#MIGRATION_WAIT}.
     */
    FaultResult retryWhileLocked(FaultTry fault, FileMapping mapping, long index) {
        while (true) {
            FaultResult result = fault.tryOnce();
            if (result != null) {
                return result;
            }
            long pfn = mapping.find(index);
            if (pfn >= 0 && FolioLock.isLocked(descriptors, pfn) && !waitForFolio(pfn)) {
                return FaultResult.MIGRATION_WAIT; // only a page locked now is worth a MIGRATION_WAIT
            }
        }
    }

    /**
     * A fault that found the page it maps locked waits here, with no lock held, until it is
     * unlocked; returns false, without waiting, where it must not wait.
     */
    private boolean waitForFolio(long pfn) {
        if (ctx.migrating().holds(pfn) || ctx.callbackFailures().inCallback()) {
            return false;
        }
        FolioLock.waitUnlocked(descriptors, pfn);
        return true;
    }
}
