package org.vmcore.impl.migrate;

import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.vma.MappingOwner;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * remove_migration_ptes (mm/migrate.c): after a folio was copied (or its migration failed),
 * every migration entry to the old page becomes a present entry again. It may touch the frame
 * descriptors, the rmap walk (which also tells whether a page still has an owner)
 * and the address spaces' page tables; callers hold the machine lock (shared, with the folio
 * lock, for a migration) and no rmap or page-table lock.
 */
public final class RemoveMigrationPtes {
    private final MachineLock lock;
    private final MemMap descriptors;
    private final RmapWalk rmap;
    private final TryToUnmap unmap;
    private final MigrationEntryRefs migrationRefs;

    public RemoveMigrationPtes(MachineLock lock, MemMap descriptors, RmapWalk rmap, TryToUnmap unmap,
                               MigrationEntryRefs migrationRefs) {
        this.lock = lock;
        this.descriptors = descriptors;
        this.rmap = rmap;
        this.unmap = unmap;
        this.migrationRefs = migrationRefs;
    }

    /**
     * remove_migration_ptes: every migration entry to {@code oldPfn} in the mappings of
     * {@code newPfn} becomes a present entry to {@code newPfn}, in whichever address space holds it
     * (fork copies entries, so a child found through the rmap gets the page too). The counters
     * keep their value: the entries were counted all along. {@code newPfn} must head a mapped page.
     */
    public int removeMigrationEntries(long oldPfn, long newPfn) {
        assert lock.isHeldByCurrentThread();
        unmap.checkHead(newPfn);
        return removeMigrationPtes(oldPfn, newPfn);
    }

    /**
     * remove_migration_ptes inside a migration: as {@link #removeMigrationEntries}, but a page
     * whose anon_vma or file went while it moved (its last mapping was unmapped, or its process
     * exited, from a callback) has no mapping left to restore, so nothing is restored.
     */
    public int removeMigrationPtes(long oldPfn, long newPfn) {
        assert lock.isHeldByCurrentThread();
        MappingOwner owner = rmap.owner(newPfn); // none when the page's mappings all went while it moved
        int restored = 0;
        if (owner != null) {
            RwSem rmapLock = RmapWalk.lockOf(owner);
            rmapLock.downRead(); // rmap_walk's lock: no VMA of the page leaves (nor its tables) meanwhile
            try {
                restored = restore(owner, oldPfn, newPfn);
            } finally {
                rmapLock.upRead();
            }
        }
        if (oldPfn != newPfn) {
            migrationRefs.releaseIfUnreferenced(oldPfn); // only the entries held it
        }
        return restored;
    }

    /** remove_migration_pte for each VMA, each entry under its page-table lock. */
    private int restore(MappingOwner owner, long oldPfn, long newPfn) {
        int restored = 0;
        long index = descriptors.index(newPfn);
        for (VmArea vma : rmap.candidates(owner, newPfn)) {
            long address = vma.address(index);
            if (address < 0 || vma.detached()) {
                continue;
            }
            PageSize size = rmap.pageSize(vma, newPfn);
            MmStruct mm = vma.owner();
            RawPageTable table = mm.pageTable();
            long slot = table.slot(address, Level.ofLeaf(size));
            if (slot < 0) {
                continue;
            }
            boolean thp = size != PageSize.SIZE_4K && !vma.kind().isHugetlb();
            if (thp && RawPageTable.isTablePointer(table.readSlot(slot), Level.PMD)) {
                continue; // its PMD migration entry was split while it moved: below, with every PTE
            }
            KMutex ptl = mm.ptlOf(slot, size);
            ptl.lock();
            try {
                long e = table.readSlot(slot);
                if (!MigrationEntry.isMigration(e) || MigrationEntry.pfn(e) != oldPfn) {
                    continue; // unshared sharers have no table here; a shared table is restored once
                }
                boolean writable = MigrationEntry.isWrite(e) && vma.protection().write();
                long flags = vma.pteProtection(writable) | (MigrationEntry.young(e) ? Pte.ACCESSED : 0)
                        | (MigrationEntry.dirty(e) ? Pte.DIRTY : 0);
                if (thp) {
                    descriptors.addEntireMapcount(newPfn, 1); // remove_migration_pmd
                } else {
                    descriptors.addMapcount(newPfn, 1);
                }
                descriptors.addRefcount(newPfn, 1);
                table.compareAndSetSlot(slot, e, Pte.leaf(newPfn, size, flags));
                restored++;
            } finally {
                ptl.unlock();
            }
        }
        if ((descriptors.flags(newPfn) & FrameFlags.LARGE_RMAPPABLE) != 0) {
            restored += unmap.hugePagePtes().restore(oldPfn, newPfn);
        }
        return restored;
    }
}
