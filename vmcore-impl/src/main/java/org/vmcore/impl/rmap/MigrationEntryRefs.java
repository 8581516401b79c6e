package org.vmcore.impl.rmap;

import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.vma.MappingOwner;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;

/**
 * What keeps a page alive while migration entries point at it.
 *
 * <p>A migration entry holds neither a mapcount nor a reference: try_to_migrate_one drops both,
 * and copy_nonpresent_pte copies an entry without taking one. In the kernel the migrating
 * thread's isolation reference keeps the page meanwhile. vmcore's public
 * {@code RmapWalker.tryToMigrate} has no isolation behind it, so a page can sit at refcount 0
 * with entries still pointing at it. The rule: <em>a page stays allocated while its refcount is
 * positive or a migration entry points at it</em>. Whoever removes a migration entry (zap on
 * munmap, exit or truncate; remove_migration_ptes) calls {@link #releaseIfUnreferenced} after
 * clearing it, which frees the page once neither holds it; a page still in a page cache has the
 * cache's reference and stays there.
 *
 * <p>It may touch physical memory, the hugetlb pools and the rmap walk.
 * Callers hold the machine lock.
 */
public final class MigrationEntryRefs {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MemMap memMap;
    private final RmapWalk rmap;
    private final HugetlbPools pools;
    private final HugePagePtes hugePtes;

    public MigrationEntryRefs(MachineLock lock, PhysicalMemory memory, RmapWalk rmap,
                              HugetlbPools pools) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.memMap = SharedSecrets.memMap(memory);
        this.rmap = rmap;
        this.pools = pools;
        this.hugePtes = new HugePagePtes(memory, rmap, null);
    }

    /**
     * Whether a migration entry to {@code pfn} is left where the page's rmap can reach it (every
     * entry sits at the address its mapping and index give, in a VMA of its anon_vma or file).
     */
    public boolean pointedAt(long pfn) {
        assert lock.isHeldByCurrentThread();
        MappingOwner owner = rmap.owner(pfn);
        if (owner == null) {
            return false; // no VMA links the page's anon_vma or file any more, so no entry is left
        }
        RwSem rmapLock = RmapWalk.lockOf(owner);
        rmapLock.downRead(); // the VMAs listed keep their tables while they are read
        try {
            long index = descriptors.index(pfn);
            for (VmArea vma : rmap.candidates(owner, pfn)) {
                long address = vma.address(index);
                if (address < 0 || vma.detached()) {
                    continue;
                }
                RawPageTable table = vma.owner().pageTable();
                PageSize size = rmap.pageSize(vma, pfn);
                long slot = table.slot(address, Level.ofLeaf(size));
                long e = slot < 0 ? 0 : table.readSlot(slot);
                if (MigrationEntry.isMigration(e) && MigrationEntry.pfn(e) == pfn) {
                    return true;
                }
            }
        } finally {
            rmapLock.upRead();
        }
        // a transparent huge page's PMD migration entry split into PTE ones, maybe across VMAs
        return (descriptors.flags(pfn) & FrameFlags.LARGE_RMAPPABLE) != 0 && hugePtes.pointedAt(pfn);
    }

    /**
     * Frees the page headed by {@code pfn} to the buddy allocator or its hugetlb pool if nothing
     * holds it any more: refcount 0 and no migration entry left. Call after clearing an entry.
     */
    public void releaseIfUnreferenced(long page) {
        assert lock.isHeldByCurrentThread();
        long pfn = descriptors.folio(page); // an entry to a page of a transparent huge page holds its folio
        // Two threads may clear the page's last two entries at once (two exits): the folio lock
        // lets them decide one after the other. The first may have read the second's entry before
        // it was cleared, so the second waits for its turn rather than leave the page to it; only
        // such a check holds the lock of a page nothing references (a migration's needs a reference).
        for (int spins = 0; ; spins++) {
            if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0 || descriptors.refcount(pfn) != 0) {
                return; // referenced, or freed by the thread that held the lock
            }
            if (FolioLock.tryLock(memMap, pfn)) {
                break;
            }
            if (spins < 64) {
                Thread.onSpinWait();
            } else {
                Thread.yield(); // the holder only reads entries: it is not waiting for this thread
            }
        }
        int flags = descriptors.flags(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0 || descriptors.refcount(pfn) != 0 || pointedAt(pfn)) {
            FolioLock.unlock(memMap, pfn);
            return;
        }
        if ((flags & FrameFlags.HUGETLB) != 0) {
            HugePagePool pool = pools.poolOf(pfn);
            if (!pool.isFree(pfn)) {
                pool.free(pfn);
            }
            FolioLock.unlock(memMap, pfn); // a pool page keeps its descriptor: a second caller finds it free
        } else {
            memory.free(pfn); // clears the descriptor, the lock bit with it
        }
    }
}
