package org.vmcore.impl.mm;

import static org.vmcore.impl.mm.SimAddressSpace.MMAP_BASE;
import static org.vmcore.impl.mm.SimAddressSpace.MMAP_MIN_ADDR;

import org.vmcore.api.Access;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MapFlags;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePoint;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.HugetlbReservation;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.tlb.TlbGather;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.RawPageTable;

/**
 * mmap_region, get_unmapped_area and do_munmap (mm/mmap.c, mm/vma.c) for one address space:
 * where a new mapping goes (MAP_FIXED, MAP_FIXED_NOREPLACE, a hint, or top-down below
 * mmap_base), the VMA it becomes (merged with its neighbours), MAP_POPULATE, and the unmap of a
 * range with its notifier bracket, zap, VMA removal and free_pgtables. A hugetlbfs mapping takes
 * its {@link HugetlbReservation} first.
 *
 * <p>It may touch its address space's VMA tree, page table and page operations, the notifier
 * chain and the TLB shootdown. The facade has validated the arguments; callers hold the machine lock.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
final class Mmap {
    private final SimAddressSpace mm;
    private final MmContext ctx;

    Mmap(SimAddressSpace mm, MmContext ctx) {
        this.mm = mm;
        this.ctx = ctx;
    }

    /** mmap_region for an anonymous mapping (private, or shared: a new shmem object); returns its start. */
    long mmapRegion(long address, long len, Protection prot, int flags) {
        assert ctx.lock().isHeldByCurrentThread();
        VmaKind kind = (flags & MapFlags.MAP_SHARED) != 0 ? VmaKind.ANONYMOUS_SHARED : VmaKind.ANONYMOUS_PRIVATE;
        long start = getUnmappedArea(address, len, flags, PageSize.SIZE_4K);
        try {
            replaceForFixed(start, len, flags); // first: a notifier that aborts it leaves nothing to undo
        } catch (Throwable e) {
            throw ctx.hook().operationFailed(e);
        }
        FileMapping shmem = null;
        if (kind == VmaKind.ANONYMOUS_SHARED) {
            shmem = ctx.registry().newFileMapping(null);
        }
        VmArea vma = new VmArea(mm, start, start + len, prot, kind, (flags & MapFlags.MAP_LOCKED) != 0, null, shmem,
                kind == VmaKind.ANONYMOUS_SHARED ? 0 : start >>> 12, PageSize.SIZE_4K);
        mm.vmaTree().insert(vma);
        VmArea merged = mm.vmaTree().mergeAround(vma);
        populateIfAsked(merged, start, start + len, flags);
        return start;
    }

    /** mmap_region for a hugetlbfs file, after hugetlb_reserve_pages; returns its start. */
    long mmapHugetlb(HugetlbFileImpl f, long offset, long address, long len, Protection prot, int flags) {
        assert ctx.lock().isHeldByCurrentThread();
        PageSize size = f.pageSize();
        long start = getUnmappedArea(address, len, flags, size);
        boolean shared = (flags & MapFlags.MAP_SHARED) != 0;
        // Reserve before changing anything (hugetlb_reserve_pages), so a failure leaves no trace.
        HugetlbReservation reservation = HugetlbReservation.reserve(f, offset >>> size.shift(), len >>> size.shift(), shared);
        try {
            replaceForFixed(start, len, flags);
        } catch (Throwable e) { // a notifier aborted the unmap: give the reservations back
            reservation.cancel();
            throw ctx.hook().operationFailed(e);
        }
        VmArea vma = new VmArea(mm, start, start + len, prot,
                shared ? VmaKind.HUGETLB_SHARED : VmaKind.HUGETLB_PRIVATE, (flags & MapFlags.MAP_LOCKED) != 0, f,
                f.mapping(), offset >>> 12, size);
        if (!shared) {
            HugetlbReservation.markOwner(vma);
        }
        mm.vmaTree().insert(vma);
        VmArea merged = mm.vmaTree().mergeAround(vma);
        try {
            populateIfAsked(merged, start, start + len, flags);
        } catch (OutOfMemoryException e) {
            reservation.releaseFileReservations(); // the mapping is gone again: so are the reservations it made for the file
            throw e;
        }
        return start;
    }

    /** MAP_POPULATE / MAP_LOCKED: faults the range in (populate_vma_page_range); out of memory unmaps it again. */
    private void populateIfAsked(VmArea vma, long start, long end, int flags) {
        if ((flags & (MapFlags.MAP_POPULATE | MapFlags.MAP_LOCKED)) == 0 || !vma.protection().accessible()) {
            return;
        }
        // A private writable mapping is populated for write, to break COW up front (populate_vma_page_range).
        Access access = vma.protection().write() && !vma.kind().isShared() ? Access.WRITE : Access.READ;
        long step = vma.pageSize().bytes();
        long minorFaults = mm.faultCounts.minFlt();
        try {
            for (long va = start; va < end; va += step) {
                mm.handleFault(mm.vma(va), va, access);
            }
        } catch (OutOfMemoryException e) {
            doMunmap(start, end, false);
            mm.faultCounts.restoreMinFlt(minorFaults); // the mapping leaves no trace; pgfault keeps the faults, which did happen
            throw ctx.callbackFailures().suppressInto(e);
        }
    }

    /**
     * do_munmap of [start, end): splits, zaps, removes VMAs and frees the tables nobody else needs.
     * With {@code abortable}, a notifier whose invalidateRangeStart throws aborts it with the VMAs as they were.
     */
    void doMunmap(long start, long end, boolean abortable) {
        assert ctx.lock().isHeldByCurrentThread();
        if (mm.vmaTree().overlapping(start, end).isEmpty()) {
            return;
        }
        splitVma(start);
        splitVma(end);
        TlbGather gather = new TlbGather();
        Invalidation invalidation;
        if (abortable) {
            try {
                invalidation = Invalidation.start(mm.notifiers(), start, end, NotifierEvent.UNMAP);
            } catch (Throwable e) { // a notifier refused before anything was zapped: undo the splits
                VmArea lower = mm.vma(start);
                if (lower != null) {
                    mm.vmaTree().mergeAround(lower);
                }
                VmArea upper = mm.vma(end);
                if (upper != null) {
                    mm.vmaTree().mergeAround(upper);
                }
                throw CallbackFailures.<RuntimeException>sneaky(e);
            }
        } else {
            invalidation = Invalidation.startCompleting(mm.notifiers(), start, end, NotifierEvent.UNMAP);
        }
        try (Invalidation inv = invalidation) {
            for (VmArea v : mm.vmaTree().overlapping(start, end)) {
                mm.zap.zapPageRange(v, v.start(), v.end(), gather, true);
                mm.zap.removeVma(v);
            }
            freePgtables(start, end);
            gather.flush(ctx.shootdown(), mm);
        }
    }

    /**
     * free_pgtables: frees the empty tables whose span lies between the neighbouring VMAs, so a
     * table still covering part of another VMA is kept, as the kernel keeps it.
     */
    private void freePgtables(long start, long end) {
        VmArea prev = mm.vmaTree().below(start);
        VmArea next = mm.vmaTree().atOrAbove(start);
        RawPageTable pageTable = mm.pageTable();
        long floor = prev == null ? 0 : prev.end();
        long ceiling = next == null ? pageTable.mode().userAddressLimit() : next.start();
        long from = (floor + (1L << 21) - 1) & -(1L << 21);
        long to = ceiling & -(1L << 21);
        if (from < to) {
            pageTable.freeEmptyTables(from, to);
        }
    }

    /** A hugetlb VMA can only be split at a multiple of its page size (hugetlb_vm_op_split). */
    void checkSplitPoints(long start, long end) {
        VmArea v = unsplittableAt(start);
        long point = start;
        if (v == null) {
            v = unsplittableAt(end);
            point = end;
        }
        if (v != null) {
            throw new InvalidArgumentException(point == start ? "address" : "end", point,
                    "must be aligned to " + v.pageSize().label() + " to split the hugetlb mapping " + v.snapshot());
        }
    }

    /** The VMA that a split at {@code point} would cut off its page size, or null. */
    VmArea unsplittableAt(long point) {
        VmArea v = mm.vma(point);
        return v != null && v.start() != point && !v.pageSize().isAligned(point) ? v : null;
    }

    /**
     * get_unmapped_area: the start of a new mapping of len bytes, following MAP_FIXED,
     * MAP_FIXED_NOREPLACE and hints, else the highest free gap below mmap_base (top-down).
     */
    long getUnmappedArea(long address, long len, int flags, PageSize size) {
        long taskSizeMax = mm.pageTable().mode().taskSizeMax();
        boolean fixed = (flags & (MapFlags.MAP_FIXED | MapFlags.MAP_FIXED_NOREPLACE)) != 0;
        if (fixed) {
            if (!size.isAligned(address)) {
                throw new InvalidArgumentException("address", address, "must be aligned to " + size.label() + " for MAP_FIXED");
            }
            if (address < MMAP_MIN_ADDR || address >= taskSizeMax) {
                // below mmap_min_addr Linux says -EPERM (security_mmap_addr), at or above TASK_SIZE -ENOMEM
                throw new InvalidArgumentException("address", address, "must lie in user space, at or above mmap_min_addr 0x"
                        + Long.toHexString(MMAP_MIN_ADDR) + " and below TASK_SIZE_MAX 0x" + Long.toHexString(taskSizeMax)
                        + (address < MMAP_MIN_ADDR ? " (-EPERM)" : " (-ENOMEM)"));
            }
            mm.args.checkRangeInUserSpace(address, len, "-ENOMEM");
            if ((flags & MapFlags.MAP_FIXED) == 0 && !mm.vmaTree().overlapping(address, address + len).isEmpty()) {
                throw new InvalidArgumentException("address", address, "must not overlap an existing mapping with"
                        + " MAP_FIXED_NOREPLACE (EEXIST): " + mm.vmaTree().overlapping(address, address + len).getFirst().snapshot());
            }
            if (unsplittableAt(address) != null || unsplittableAt(address + len) != null) {
                throw new InvalidArgumentException("address", address, "must not split a hugetlb mapping off its page size");
            }
            return address;
        }
        if (address != 0 && size.isAligned(address) && address >= MMAP_MIN_ADDR
                && address <= taskSizeMax - len && mm.vmaTree().overlapping(address, address + len).isEmpty()) {
            return address;
        }
        long top = MMAP_BASE;
        for (VmArea v : mm.vmaTree().descending()) {
            if (v.start() >= top) {
                continue;
            }
            long candidate = (top - len) & -size.bytes();
            if (candidate >= v.end() && candidate <= top - len) {
                return candidate;
            }
            top = v.start();
        }
        long candidate = (top - len) & -size.bytes();
        if (top - len < MMAP_MIN_ADDR || candidate < MMAP_MIN_ADDR) {
            throw new OutOfMemoryException("no free range of " + len + " bytes below 0x" + Long.toHexString(MMAP_BASE));
        }
        return candidate;
    }

    /** MAP_FIXED replaces what the range held: it is unmapped first (abortably, before anything else changed). */
    private void replaceForFixed(long start, long len, int flags) {
        if ((flags & MapFlags.MAP_FIXED) != 0) {
            doMunmap(start, start + len, true);
        }
    }

    /** split_vma at addr; a hugetlb VMA first unshares the PUD window the split cuts (hugetlb_split). */
    void splitVma(long addr) {
        VmArea v = mm.vma(addr);
        if (v == null || v.start() == addr) {
            return;
        }
        if (!v.kind().isHugetlb()) {
            mm.pages.hugePmds.splitAcross(v, addr); // vma_adjust_trans_huge
            mm.vmaTree().split(addr);
            return;
        }
        // hugetlb_split (081056dc00a2): the VMA lock and i_mmap_rwsem, both for write, are held from
        // the unshare through the split, so no fault shares the window again in between.
        v.hugetlbVmaLock().downWrite();
        try {
            v.mapping().iMmapRwsem().downWrite();
            try {
                if (PmdSharing.splitMustUnshare(v, addr)) {
                    // hugetlb_unshare_pmds: a split window cannot stay shared
                    long window = addr & PmdSharing.PUD_MASK;
                    try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), window, window + PmdSharing.PUD_SIZE,
                            NotifierEvent.CLEAR)) {
                        PmdSharing.hugePmdUnshare(v, addr);
                        ctx.shootdown().flushTlbMmRange(mm, window, window + PmdSharing.PUD_SIZE, PageSize.SIZE_2M.shift());
                    }
                }
                ctx.lock().raceHooks().reach(RacePoint.HUGETLB_SPLIT_AFTER_UNSHARE, mm, addr);
                mm.vmaTree().split(addr);
            } finally {
                v.mapping().iMmapRwsem().upWrite();
            }
        } finally {
            v.hugetlbVmaLock().upWrite();
        }
    }
}
