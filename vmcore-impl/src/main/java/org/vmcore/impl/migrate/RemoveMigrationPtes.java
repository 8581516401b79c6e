package org.vmcore.impl.migrate;

import java.util.List;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.RmapWalk;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * remove_migration_ptes (mm/migrate.c): after a folio was copied (or its migration failed),
 * every migration entry to the old page becomes a present entry again. It may touch the frame
 * descriptors, the mapping registry (to see whether a page still has an owner), the rmap walk
 * and the address spaces' page tables; callers hold the machine lock.
 */
public final class RemoveMigrationPtes {
    private final MachineLock lock;
    private final MemMap descriptors;
    private final RmapWalk rmap;
    private final TryToUnmap unmap;
    private final MigrationEntryRefs migrationRefs;
    private final MappingRegistry registry;

    public RemoveMigrationPtes(MachineLock lock, MemMap descriptors, RmapWalk rmap, TryToUnmap unmap,
                               MigrationEntryRefs migrationRefs, MappingRegistry registry) {
        this.lock = lock;
        this.descriptors = descriptors;
        this.registry = registry;
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
        int restored = 0;
        long index = descriptors.index(newPfn);
        boolean owned = registry.owner(descriptors.mapping(newPfn)) != null;
        for (VmArea vma : owned ? rmap.candidates(newPfn) : List.<VmArea>of()) {
            long address = vma.address(index);
            if (address < 0) {
                continue;
            }
            PageSize size = vma.pageSize();
            RawPageTable table = vma.owner().pageTable();
            long slot = table.slot(address, Level.ofLeaf(size));
            long e = slot < 0 ? 0 : table.readSlot(slot);
            if (!MigrationEntry.isMigration(e) || MigrationEntry.pfn(e) != oldPfn) {
                continue; // unshared sharers have no table here; a shared table is restored once
            }
            boolean writable = MigrationEntry.isWrite(e) && vma.protection().write();
            long flags = vma.pteProtection(writable) | (MigrationEntry.young(e) ? Pte.ACCESSED : 0)
                    | (MigrationEntry.dirty(e) ? Pte.DIRTY : 0);
            table.compareAndSetSlot(slot, e, Pte.leaf(newPfn, size, flags));
            descriptors.addMapcount(newPfn, 1);
            descriptors.addRefcount(newPfn, 1);
            restored++;
        }
        if (oldPfn != newPfn) {
            migrationRefs.releaseIfUnreferenced(oldPfn); // only the entries held it
        }
        return restored;
    }
}
