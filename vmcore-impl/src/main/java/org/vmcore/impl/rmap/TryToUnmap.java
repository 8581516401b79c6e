package org.vmcore.impl.rmap;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MappingResult;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.Regression;
import org.vmcore.api.UnmapOutcome;
import org.vmcore.api.UnmapResult;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MappingOwner;
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
 * try_to_unmap and try_to_migrate (mm/rmap.c): an rmap walk that stops when the page's mapcount
 * reaches zero, calling {@link #tryToUnmapOne} or {@link #tryToMigrateOne} for each mapping.
 * For a hugetlb page both first unshare a shared PMD table (huge_pmd_unshare) after widening the
 * notifier range (adjust_range_if_pmd_sharing_possible); with {@link Regression#PRE_017B1660}
 * they do neither, as kernels before 017b1660df89 did.
 *
 * <p>It may touch physical memory, the rmap walk, the TLB shootdown and the address spaces'
 * page tables, counters and notifiers (as {@link MmStruct}). Callers hold the machine lock
 * (shared, with the folio lock, for a migration) and no rmap or page-table lock: it takes them.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
public final class TryToUnmap {
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final RmapWalk rmap;
    private final TlbShootdown shootdown;
    private final boolean preFix;
    private final HugePagePtes hugePtes;

    public TryToUnmap(PhysicalMemory memory, RmapWalk rmap, TlbShootdown shootdown, MachineConfig config) {
        this.hugePtes = new HugePagePtes(memory, rmap, shootdown);
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.rmap = rmap;
        this.shootdown = shootdown;
        this.preFix = config.regressions().contains(Regression.PRE_017B1660);
    }

    /** try_to_migrate. */
    public UnmapResult tryToMigrate(long pfn) {
        return walk(pfn, true);
    }

    /** The PTEs mapping the pages of transparent huge pages. */
    public HugePagePtes hugePagePtes() {
        return hugePtes;
    }

    /** try_to_unmap (not for migration: mlock is respected, anonymous pages cannot go without swap). */
    public UnmapResult tryToUnmap(long pfn) {
        return walk(pfn, false);
    }

    private UnmapResult walk(long pfn, boolean migrate) {
        checkHead(pfn);
        List<MappingResult> results = new ArrayList<>();
        rmap.walkVmas(pfn, (vma, address) -> migrate ? tryToMigrateOne(vma, address, pfn, results)
                : tryToUnmapOne(vma, address, pfn, results));
        if (migrate && (descriptors.flags(pfn) & FrameFlags.LARGE_RMAPPABLE) != 0) {
            hugePtes.migrate(pfn); // the PTEs that map its pages (after a split of one of its PMDs)
        }
        return new UnmapResult(pfn, results, memory.descriptors().folioMapcount(pfn));
    }

    /**
     * try_to_unmap_one: clears this mapping of the page, unless the VMA is mlocked or the page is
     * anonymous (there is no swap to write it to); a shared PMD table is unshared instead.
     * Returns false to stop the walk.
     */
    boolean tryToUnmapOne(VmArea vma, long address, long pfn, List<MappingResult> results) {
        return unmapOne(vma, address, pfn, false, results);
    }

    /**
     * try_to_migrate_one: replaces this mapping of the page by a migration entry (mlock does not
     * stop it); a shared PMD table is unshared instead. Returns false to stop the walk.
     */
    boolean tryToMigrateOne(VmArea vma, long address, long pfn, List<MappingResult> results) {
        return unmapOne(vma, address, pfn, true, results);
    }

    /**
     * The body the two share, as the kernel's two functions share most of theirs. The notifiers
     * hear of the range first, with no engine lock held but the machine lock and the folio lock
     * (Linux calls them under the rmap lock; vmcore calls them outside it, so that a notifier may
     * still change address spaces, as it could before migration ran in parallel); then the VMA
     * is checked to be still there and its entry changed under the rmap lock and the page-table
     * lock.
     */
    private boolean unmapOne(VmArea vma, long address, long pfn, boolean migrate, List<MappingResult> results) {
        MmStruct mm = vma.owner();
        assert mm.lock().isHeldByCurrentThread();
        if (vma.detached()) { // unmapped since the walk listed it: nothing of it to notify or change
            results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
            return true;
        }
        PageSize size = rmap.pageSize(vma, pfn);
        long start = address;
        long end = Math.min(vma.end(), address + size.bytes());
        if (vma.kind().isHugetlb() && !preFix) { // announce the worst case before we know whether the table is shared
            PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(vma, start, end);
            start = r.start();
            end = r.end();
        }
        try (Invalidation inv = Invalidation.start(mm.notifiers(), start, end, NotifierEvent.CLEAR)) {
            int before = results.size();
            boolean more = unmapLocked(vma, address, pfn, migrate, results, start, end);
            UnmapOutcome outcome = results.size() > before ? results.getLast().outcome() : UnmapOutcome.NOT_MAPPED;
            // The secondary TLBs hear of the flush once the rmap and page-table locks are dropped:
            // a notifier may call back into the engine (fault, migrate), which takes such locks.
            if (outcome == UnmapOutcome.UNSHARED) {
                mm.notifiers().secondaryTlbs(start, end);
            } else if (outcome == UnmapOutcome.MIGRATION_ENTRY || outcome == UnmapOutcome.UNMAPPED) {
                mm.notifiers().secondaryTlbs(address, address + size.bytes());
            }
            return more;
        }
    }

    /**
     * Under the rmap lock: for a hugetlb page-cache page i_mmap_rwsem and (in a shared mapping) the
     * VMA lock, both for write and both only tried, since huge_pmd_unshare needs them and the
     * folio lock comes after them in hugetlb's order (hugetlb_folio_mapping_lock_write,
     * hugetlb_vma_trylock_write); a busy one stops the walk. Otherwise the page's rmap lock for read.
     */
    private boolean unmapLocked(VmArea vma, long address, long pfn, boolean migrate, List<MappingResult> results,
                                long start, long end) {
        MmStruct mm = vma.owner();
        MappingOwner owner = rmap.owner(pfn);
        if (owner == null) { // the page's last mapping and its owner went meanwhile
            results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
            return true;
        }
        RwSem rmapLock = RmapWalk.lockOf(owner);
        boolean hugeFile = vma.kind().isHugetlb() && (descriptors.flags(pfn) & FrameFlags.ANON) == 0;
        RwSem vmaLock = hugeFile && vma.kind() == VmaKind.HUGETLB_SHARED ? vma.hugetlbVmaLock() : null;
        if (hugeFile) {
            if (vmaLock != null && !vmaLock.tryDownWrite()) {
                results.add(new MappingResult(mm, address, UnmapOutcome.BUSY));
                return false;
            }
            if (!rmapLock.tryDownWrite()) {
                if (vmaLock != null) {
                    vmaLock.upWrite();
                }
                results.add(new MappingResult(mm, address, UnmapOutcome.BUSY));
                return false;
            }
        } else {
            rmapLock.downRead();
        }
        try {
            if (vma.detached() || vma.address(descriptors.index(pfn)) != address) {
                results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
                return true;
            }
            RawPageTable table = mm.pageTable();
            PageSize size = rmap.pageSize(vma, pfn);
            long slot = table.slot(address, Level.ofLeaf(size));
            if (slot < 0) {
                results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
                return true;
            }
            KMutex ptl = mm.ptlOf(slot, size);
            ptl.lock();
            try {
                return unmapEntry(vma, address, slot, size, pfn, migrate, results, start, end);
            } finally {
                ptl.unlock();
            }
        } finally {
            if (hugeFile) {
                rmapLock.upWrite();
                if (vmaLock != null) {
                    vmaLock.upWrite();
                }
            } else {
                rmapLock.upRead();
            }
        }
    }

    /** The entry at {@code slot}, under its page-table lock: unshare, skip, or clear and replace. */
    private boolean unmapEntry(VmArea vma, long address, long slot, PageSize size, long pfn, boolean migrate,
                               List<MappingResult> results, long start, long end) {
        MmStruct mm = vma.owner();
        RawPageTable table = mm.pageTable();
        boolean huge = vma.kind().isHugetlb();
        boolean thp = !huge && size != PageSize.SIZE_4K; // a transparent huge page, mapped by its PMD entry
        long e = table.readSlot(slot);
        if (!Pte.isPresent(e) || size != PageSize.SIZE_4K && (e & Pte.PSE) == 0 || Pte.pfn(e, size) != pfn) {
            results.add(new MappingResult(mm, address, UnmapOutcome.NOT_MAPPED));
            return true;
        }
        if (!migrate && vma.locked()) {
            results.add(new MappingResult(mm, address, UnmapOutcome.SKIPPED_MLOCKED));
            return false;
        }
        if (huge && !preFix && PmdSharing.hugePmdUnshare(vma, address)) {
            // This mm no longer reaches the shared table: forget every translation of the window.
            shootdown.flushTlbMmRangeCpus(mm, start, end, size.shift());
            results.add(new MappingResult(mm, address, UnmapOutcome.UNSHARED));
            return true; // mapcount untouched: the walk goes on to the next sharer
        }
        if (!migrate && (descriptors.flags(pfn) & FrameFlags.ANON) != 0) {
            results.add(new MappingResult(mm, address, UnmapOutcome.BUSY)); // no swap to write it to
            return false;
        }
        long old;
        if (migrate && thp) {
            // set_pmd_migration_entry replaces the entry in one step (pmdp_invalidate): a walk that
            // looks at the PMD without its lock (zap, split) never sees it empty in between
            do {
                old = table.readSlot(slot);
            } while (!table.compareAndSetSlot(slot, old, migrationEntry(old, pfn, true)));
        } else {
            old = table.getAndClearSlot(slot);
        }
        shootdown.flushTlbMmRangeCpus(mm, address, address + size.bytes(), size.shift()); // ptep_clear_flush: this mm only
        if ((old & Pte.DIRTY) != 0) {
            descriptors.setFlags(pfn, FrameFlags.DIRTY);
        }
        if (migrate && !thp) {
            table.compareAndSetSlot(slot, 0, migrationEntry(old, pfn, false));
        }
        // A migration entry keeps its place in the RSS counters and HugetlbPages (try_to_migrate_one
        // subtracts only for a hwpoisoned page); only a real unmap drops them.
        if (!migrate && huge) {
            mm.hugetlbCountSub(size.bytes());
        } else if (!migrate && vma.kind() == VmaKind.ANONYMOUS_SHARED) {
            mm.addShmemPages(-1);
        }
        if (thp) { // set_pmd_migration_entry: the PMD mapping goes, RSS and AnonHugePages stay
            descriptors.addEntireMapcount(pfn, -1);
        } else {
            descriptors.addMapcount(pfn, -1);
        }
        descriptors.addRefcount(pfn, -1);
        results.add(new MappingResult(mm, address, migrate ? UnmapOutcome.MIGRATION_ENTRY : UnmapOutcome.UNMAPPED));
        return true;
    }

    /** The migration entry for {@code pfn} in place of the leaf {@code old}: its write permission, A/D and soft-dirty bits. */
    private long migrationEntry(long old, long pfn, boolean thp) {
        int mapcount = thp ? descriptors.entireMapcount(pfn) : descriptors.mapcount(pfn);
        MigrationEntry.Kind kind = (old & Pte.RW) != 0 ? MigrationEntry.Kind.WRITE
                : (descriptors.flags(pfn) & FrameFlags.ANON) != 0 && mapcount == 1
                        ? MigrationEntry.Kind.READ_EXCLUSIVE : MigrationEntry.Kind.READ;
        long swapFlags = (old & Pte.SOFT_DIRTY) != 0 ? SwapEntry.SOFT_DIRTY : 0;
        return MigrationEntry.make(kind, pfn, (old & Pte.ACCESSED) != 0, (old & Pte.DIRTY) != 0, swapFlags);
    }

    /** Rejects a pfn that does not head a page that is mapped or in a page cache. */
    public void checkHead(long pfn) {
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be inside memory");
        }
        if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0) {
            throw new InvalidArgumentException("pfn", pfn, "must head a page that is mapped or in a page cache ("
                    + descriptors.describe(pfn) + ")");
        }

    }
}
