package org.vmcore.impl.hugetlb;

import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.LocklessWalkers;
import org.vmcore.impl.base.PmdShareCount;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.stat.UnshareEvent;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * hugetlb PMD-table sharing as x86-64 does it today: eligibility (want_pmd_share,
 * page_table_shareable), sharing on fault (huge_pmd_share), unsharing (huge_pmd_unshare) and
 * the widening of flush and notifier ranges (adjust_range_if_pmd_sharing_possible). The share
 * count is the table page's {@code pt_share_count}: the number of PUD entries pointing at it
 * beyond the first, separate from its refcount; with {@code Regression.PRE_59D9094D} it is the
 * refcount beyond the owner's reference, as before 59d9094df3d7 ({@link PmdShareCount}).
 */
public final class PmdSharing {
    /** PUD_SIZE: the window one PMD table maps. */
    public static final long PUD_SIZE = 1L << 30;
    /** PUD_MASK. */
    public static final long PUD_MASK = -PUD_SIZE;

    private PmdSharing() {
    }

    /** A range of virtual addresses, {@code [start, end)}. */
    public record Range(long start, long end) {
    }

    /**
     * want_pmd_share: a shared (VM_MAYSHARE) 2 MiB hugetlb VMA whose PUD-aligned window around
     * {@code addr} lies entirely inside it.
     */
    public static boolean wantPmdShare(VmArea vma, long addr) {
        if (vma.kind() != VmaKind.HUGETLB_SHARED || vma.pageSize() != PageSize.SIZE_2M) {
            return false;
        }
        long base = addr & PUD_MASK;
        return vma.containsRange(base, base + PUD_SIZE);
    }

    /**
     * page_table_shareable: the address in {@code svma} that maps file page {@code idx} (4 KiB
     * units), if {@code svma}'s table for it could serve {@code vma} at {@code addr}; else 0.
     * Same 2 MiB slot in the 1 GiB window, same flags apart from mlock, and the whole window
     * inside {@code svma}.
     */
    public static long pageTableShareable(VmArea svma, VmArea vma, long addr, long idx) {
        long saddr = svma.start() + ((idx - svma.pgoff()) << 12);
        long sbase = saddr & PUD_MASK;
        if (pmdIndex(saddr) != pmdIndex(addr)) {
            return 0;
        }
        if (!svma.sameFlagsIgnoringLock(vma)) {
            return 0;
        }
        if (!svma.containsRange(sbase, sbase + PUD_SIZE)) {
            return 0;
        }
        return saddr;
    }

    /**
     * huge_pmd_share: if another VMA of the file can share its PMD table for {@code addr},
     * points this address space's empty PUD entry at that table and raises the table's share
     * count. It walks the file's i_mmap under i_mmap_rwsem held for read, and fills the PUD entry
     * under the address space's page_table_lock, after checking it is still empty.
     *
     * @return the shared table's PFN, or -1 when nothing was shared
     */
    public static long hugePmdShare(VmArea vma, long addr) {
        assert vma.owner().lock().isHeldByCurrentThread();
        RawPageTable table = vma.owner().pageTable();
        if (!wantPmdShare(vma, addr) || !Pte.isNone(table.entry(addr & PUD_MASK, Level.PUD))) {
            return -1;
        }
        vma.mapping().iMmapRwsem().downRead();
        try {
            return shareLocked(vma, addr, table);
        } finally {
            vma.mapping().iMmapRwsem().upRead();
        }
    }

    private static long shareLocked(VmArea vma, long addr, RawPageTable table) {
        long idx = vma.linearPageIndex(addr);
        for (VmArea svma : vma.mapping().iMmap().overlapping(idx, idx)) {
            if (svma == vma || svma.unshareable()) {
                continue; // a VMA whose final zap has begun offers no table
            }
            long saddr = pageTableShareable(svma, vma, addr, idx);
            if (saddr == 0) {
                continue;
            }
            long pud = svma.owner().pageTable().entry(saddr & PUD_MASK, Level.PUD);
            if (!Pte.isPresent(pud) || Pte.isLeaf(pud, Level.PUD)) {
                continue; // huge_pte_offset found no table in svma's mm: try the next VMA
            }
            long tablePfn = Pte.pfn(pud);
            PmdShareCount shares = vma.owner().pmdShareCount();
            KMutex ptl = vma.owner().pageTableLock();
            ptl.lock();
            try {
                if (!Pte.isNone(table.entry(addr & PUD_MASK, Level.PUD))) {
                    return -1; // a parallel fault of this address space filled it first
                }
                shares.get(tablePfn);
                try {
                    table.populate(addr & PUD_MASK, Level.PUD, tablePfn);
                } catch (RuntimeException e) {
                    shares.put(tablePfn); // no PUD table for us: undo the share reference
                    throw e;
                }
            } finally {
                ptl.unlock();
            }
            return tablePfn;
        }
        return -1;
    }

    /**
     * huge_pmd_unshare: if this address space's PMD table for {@code addr} is shared, clears its
     * PUD entry and drops one share reference; the entries, and the mapcounts of the pages they
     * map, are untouched. Returns false when the table is not shared (or this is its last user).
     * The caller owes a TLB flush of the whole PUD window.
     */
    public static boolean hugePmdUnshare(VmArea vma, long addr) {
        // The kernel asserts i_mmap_rwsem and the VMA lock held for write; stopping the world does as well.
        assert vma.owner().lock().isExclusiveByCurrentThread() || vma.mapping() == null
                || vma.mapping().iMmapRwsem().isWriteLockedByCurrentThread();
        if (vma.pageSize() != PageSize.SIZE_2M) {
            return false;
        }
        RawPageTable table = vma.owner().pageTable();
        long pud = table.entry(addr & PUD_MASK, Level.PUD);
        if (!Pte.isPresent(pud) || Pte.isLeaf(pud, Level.PUD)) {
            return false;
        }
        long tablePfn = Pte.pfn(pud);
        PmdShareCount shares = vma.owner().pmdShareCount();
        if (shares.sharers(tablePfn) == 0) {
            return false;
        }
        UnshareEvent event = new UnshareEvent();
        event.begin();
        table.clearTable(addr & PUD_MASK, Level.PUD);
        int left = shares.put(tablePfn);
        LocklessWalkers walkers = vma.owner().lock().locklessWalkers();
        if (walkers.syncOnUnshare()) {
            walkers.sync(); // 1013af4f585f: no GUP-fast walker of ours is still inside the table
        }
        if (event.shouldCommit()) {
            event.addressSpace = vma.owner().id();
            event.window = addr & PUD_MASK;
            event.tablePfn = tablePfn;
            event.sharersLeft = left + 1;
            event.commit();
        }
        return true;
    }

    /** Whether {@code vma}'s PMD table for {@code addr} is shared with another address space. */
    public static boolean isShared(VmArea vma, long addr) {
        RawPageTable table = vma.owner().pageTable();
        long pud = table.entry(addr & PUD_MASK, Level.PUD);
        return Pte.isPresent(pud) && !Pte.isLeaf(pud, Level.PUD)
                && vma.owner().pmdShareCount().sharers(Pte.pfn(pud)) > 0;
    }

    /**
     * adjust_range_if_pmd_sharing_possible in its current upstream form: widens
     * {@code [start, end)} to whole PUD-aligned windows that lie inside a VM_MAYSHARE VMA, and
     * never shrinks it. Ranges that do not meet the shareable part are returned unchanged.
     */
    public static Range adjustRangeIfPmdSharingPossible(VmArea vma, long start, long end) {
        long vStart = alignUp(vma.start(), PUD_SIZE);
        long vEnd = vma.end() & PUD_MASK;
        if (!vma.kind().isShared() || !vma.kind().isHugetlb() || vEnd <= vStart || end <= vStart || start >= vEnd) {
            return new Range(start, end);
        }
        if (start > vStart) {
            start = start & PUD_MASK;
        }
        if (end < vEnd) {
            end = alignUp(end, PUD_SIZE);
        }
        return new Range(start, end);
    }

    /**
     * Whether splitting {@code vma} at {@code addr} must first unshare its window (hugetlb_split):
     * addr is not PUD aligned, its window lies inside the VMA, and the window's table is shared.
     */
    public static boolean splitMustUnshare(VmArea vma, long addr) {
        return (addr & ~PUD_MASK) != 0 && wantPmdShare(vma, addr) && isShared(vma, addr);
    }

    static int pmdIndex(long va) {
        return (int) ((va >>> 21) & 511);
    }

    static long alignUp(long v, long a) {
        return (v + a - 1) & -a;
    }
}
