package org.vmcore.impl.migrate;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MappingResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Regression;
import org.vmcore.api.UnmapOutcome;
import org.vmcore.api.UnmapResult;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.SwapEntry;

/**
 * The unmap side of migration, one mapping at a time: try_to_unmap_one and try_to_migrate_one
 * over an rmap walk that stops when the page's mapcount reaches zero, and
 * remove_migration_ptes. With {@link Regression#PRE_017B1660} the hugetlb branch neither unshares
 * nor widens the notifier range, as kernels before 017b1660df89 did.
 *
 * <p>Callers hold the machine lock.
 */
public final class MigrationUnmap {
    private final SimMachine machine;
    private final FrameDescriptors descriptors;
    private final MigrationEntryRefs migrationRefs;

    public MigrationUnmap(SimMachine machine) {
        this.machine = machine;
        this.descriptors = machine.memory().descriptors();
        this.migrationRefs = new MigrationEntryRefs(machine);
    }

    /** try_to_migrate. */
    public UnmapResult tryToMigrate(long pfn) {
        return walk(pfn, true);
    }

    /** try_to_unmap (not for migration: mlock is respected, anonymous pages cannot go without swap). */
    public UnmapResult tryToUnmap(long pfn) {
        return walk(pfn, false);
    }

    private UnmapResult walk(long pfn, boolean migrate) {
        checkHead(pfn);
        List<MappingResult> results = new ArrayList<>();
        machine.rmapImpl().walkVmas(pfn, (vma, address) -> one(vma, address, pfn, migrate, results));
        return new UnmapResult(pfn, results, descriptors.mapcount(pfn));
    }

    private boolean one(VmArea vma, long address, long pfn, boolean migrate, List<MappingResult> results) {
        SimAddressSpace mm = vma.owner();
        PageSize size = vma.pageSize();
        boolean huge = vma.kind().isHugetlb();
        boolean preFix = machine.has(Regression.PRE_017B1660);
        long start = address;
        long end = Math.min(vma.end(), address + size.bytes());
        if (huge && !preFix) { // announce the worst case before we know whether the table is shared
            PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(vma, start, end);
            start = r.start();
            end = r.end();
        }
        PageTable table = mm.pageTable();
        NotifierRange range = new NotifierRange(mm, start, end, NotifierEvent.CLEAR);
        mm.notifiers().rangeStart(range);
        try {
            long slot = table.slot(address, Level.ofLeaf(size));
            long e = slot < 0 ? 0 : table.readSlot(slot);
            if (!Pte.isPresent(e) || Pte.pfn(e, size) != pfn) {
                results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
                return true;
            }
            if (!migrate && vma.locked()) {
                results.add(new MappingResult(mm, address, UnmapOutcome.SKIPPED_MLOCKED));
                return false;
            }
            if (huge && !preFix && PmdSharing.hugePmdUnshare(vma, address)) {
                // This mm no longer reaches the shared table: forget every translation of the window.
                machine.shootdown().flushRange(mm, start, end, size.shift());
                results.add(new MappingResult(mm, address, UnmapOutcome.UNSHARED));
                return true; // mapcount untouched: the walk goes on to the next sharer
            }
            if (!migrate && (descriptors.flags(pfn) & FrameFlags.ANON) != 0) {
                results.add(new MappingResult(mm, address, UnmapOutcome.BUSY)); // no swap to write it to
                return false;
            }
            long old = table.getAndClearSlot(slot);
            machine.shootdown().flushRange(mm, address, address + size.bytes(), size.shift()); // ptep_clear_flush: this mm only
            if ((old & Pte.DIRTY) != 0) {
                descriptors.setFlags(pfn, FrameFlags.DIRTY);
            }
            if (migrate) {
                MigrationEntry.Kind kind = (old & Pte.RW) != 0 ? MigrationEntry.Kind.WRITE
                        : (descriptors.flags(pfn) & FrameFlags.ANON) != 0 && descriptors.mapcount(pfn) == 1
                                ? MigrationEntry.Kind.READ_EXCLUSIVE : MigrationEntry.Kind.READ;
                long swapFlags = (old & Pte.SOFT_DIRTY) != 0 ? SwapEntry.SOFT_DIRTY : 0;
                long entry = MigrationEntry.make(kind, pfn, (old & Pte.ACCESSED) != 0, (old & Pte.DIRTY) != 0, swapFlags);
                table.compareAndSetSlot(slot, 0, entry);
            }
            // A migration entry keeps its place in the RSS counters and HugetlbPages (try_to_migrate_one
            // subtracts only for a hwpoisoned page); only a real unmap drops them.
            if (!migrate && huge) {
                mm.hugetlbCountSub(size.bytes());
            } else if (!migrate && vma.kind() == VmaKind.ANONYMOUS_SHARED) {
                mm.addShmemPages(-1);
            }
            descriptors.addMapcount(pfn, -1);
            descriptors.addRefcount(pfn, -1);
            results.add(new MappingResult(mm, address, migrate ? UnmapOutcome.MIGRATION_ENTRY : UnmapOutcome.UNMAPPED));
            return true;
        } finally {
            mm.notifiers().rangeEnd(range);
        }
    }

    /**
     * remove_migration_ptes: every migration entry to {@code oldPfn} in the mappings of
     * {@code newPfn} becomes a present entry to {@code newPfn}, in whichever address space holds it
     * (fork copies entries, so a child found through the rmap gets the page too). The counters
     * keep their value: the entries were counted all along.
     */
    public int removeMigrationEntries(long oldPfn, long newPfn) {
        checkHead(newPfn);
        return removeMigrationPtes(oldPfn, newPfn);
    }

    /**
     * remove_migration_ptes inside a migration: as {@link #removeMigrationEntries}, but a page
     * whose anon_vma or file went while it moved (its last mapping was unmapped, or its process
     * exited, from a callback) has no mapping left to restore, so nothing is restored.
     */
    public int removeMigrationPtes(long oldPfn, long newPfn) {
        int restored = 0;
        long index = descriptors.index(newPfn);
        boolean owned = machine.mappingOwner(descriptors.mapping(newPfn)) != null;
        for (VmArea vma : owned ? machine.rmapImpl().candidates(newPfn) : List.<VmArea>of()) {
            long address = vma.address(index);
            if (address < 0) {
                continue;
            }
            PageSize size = vma.pageSize();
            PageTable table = vma.owner().pageTable();
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

    private void checkHead(long pfn) {
        if (!machine.memory().isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be inside memory");
        }
        if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0) {
            throw new InvalidArgumentException("pfn", pfn, "must head a page that is mapped or in a page cache ("
                    + descriptors.describe(pfn) + ")");
        }
    }
}
