package org.vmcore.impl.mm;

import org.vmcore.api.Access;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MapFlags;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.PageSize;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.impl.vma.VmaTree;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * mremap(2) of anonymous and hugetlb memory (mm/mremap.c): shrink (the tail is unmapped), grow in place
 * (vma_expand), or move (copy_vma, move_page_tables, then the old range unmapped), under the
 * mmap_lock held for write. A move carries the entries themselves, present, zero-page and
 * migration entries alike, so the pages keep their frames, counts and rmap (a moved VMA keeps
 * its page offsets and anon_vma chain); where old and new address are both 2 MiB aligned and a
 * whole PTE table moves, the table itself is relinked (move_normal_pmd). The rmap locks of the
 * VMA are held for write while the entries move (take_rmap_locks), so a migration's walk sees
 * every page at its old place or at its new one. A hugetlb mapping moves or shrinks by whole huge
 * pages and never grows; a shared PMD window of it is unshared before its entries move.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope
final class Mremap {
    private static final long PMD_SIZE = 2L << 20;

    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final Mmap mmap;

    Mremap(MmContext ctx, SimAddressSpace mm, Mmap mmap) {
        this.ctx = ctx;
        this.mm = mm;
        this.mmap = mmap;
    }

    /** do_mremap, the arguments checked; returns where the mapping is now. */
    long mremap(long oldAddr, long oldLength, long newLength, int flags, long newAddr) {
        if ((flags & ~(MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED)) != 0) {
            throw new InvalidArgumentException("flags", flags, "must be 0, MREMAP_MAYMOVE or MREMAP_MAYMOVE | MREMAP_FIXED"
                    + " (MREMAP_DONTUNMAP is not modelled) (-EINVAL)");
        }
        boolean fixed = (flags & MapFlags.MREMAP_FIXED) != 0;
        if (fixed && (flags & MapFlags.MREMAP_MAYMOVE) == 0) {
            throw new InvalidArgumentException("flags", flags, "must include MREMAP_MAYMOVE with MREMAP_FIXED (-EINVAL)");
        }
        mm.args.checkAddress(oldAddr, "oldAddress");
        long oldLen = mm.args.checkLength(oldLength, PageSize.SIZE_4K);
        long newLen = mm.args.checkLength(newLength, PageSize.SIZE_4K);
        mm.args.checkRangeInUserSpace(oldAddr, oldLen, "-EFAULT");
        VmArea v = mm.vma(oldAddr);
        if (v == null || oldAddr + oldLen > v.end()) {
            throw new InvalidArgumentException("oldAddress", oldAddr, "and oldLength 0x" + Long.toHexString(oldLen)
                    + " must lie inside one mapping (vma_to_resize: -EFAULT)");
        }
        PageSize size = v.pageSize();
        if (v.kind().isHugetlb()) {
            // hugetlb mremap (550a7d60bd5e): whole huge pages only, and never larger (its
            // reservations could not follow a grown mapping)
            if (!size.isAligned(oldAddr) || !size.isAligned(oldLength) || !size.isAligned(newLength)) {
                throw new InvalidArgumentException("oldAddress", oldAddr, "oldLength 0x" + Long.toHexString(oldLength)
                        + " and newLength 0x" + Long.toHexString(newLength) + " must be multiples of " + size.label()
                        + " in a hugetlb mapping (-EINVAL)");
            }
            if (newLen > oldLen) {
                throw new InvalidArgumentException("newLength", newLength, "must not exceed oldLength: a hugetlb mapping"
                        + " cannot grow (-EINVAL)");
            }
        }
        if (fixed) {
            mmap.getUnmappedArea(newAddr, newLen, MapFlags.MAP_FIXED, size); // checks alignment and range
            if (newAddr < oldAddr + oldLen && oldAddr < newAddr + newLen) {
                throw new InvalidArgumentException("newAddress", newAddr, "must not overlap the old range (-EINVAL)");
            }
            mmap.doMunmap(newAddr, newAddr + newLen, false); // mremap_to: whatever was there goes
            if (newLen < oldLen) {
                mmap.doMunmap(oldAddr + newLen, oldAddr + oldLen, false);
                oldLen = newLen;
            }
            return move(oldAddr, oldLen, newAddr, newLen);
        }
        if (newLen <= oldLen) {
            if (newLen < oldLen) {
                mmap.doMunmap(oldAddr + newLen, oldAddr + oldLen, false);
            }
            return oldAddr;
        }
        if (v.end() == oldAddr + oldLen && oldAddr <= mm.pageTable().mode().taskSizeMax() - newLen
                && mm.vmaTree().overlapping(oldAddr + oldLen, oldAddr + newLen).isEmpty()) {
            VmArea grown = mm.vmaTree().expand(v, oldAddr + newLen); // vma_expand: grows in place
            populateIfLocked(grown, oldAddr + oldLen, oldAddr + newLen);
            return oldAddr;
        }
        if ((flags & MapFlags.MREMAP_MAYMOVE) == 0) {
            throw new InvalidArgumentException("newLength", newLength, "cannot grow the mapping in place, and MREMAP_MAYMOVE"
                    + " was not given (-ENOMEM)");
        }
        return move(oldAddr, oldLen, mmap.getUnmappedArea(0, newLen, 0, size), newLen);
    }

    /** move_vma: the VMA piece and its entries go to {@code to}; the old range is unmapped; returns {@code to}. */
    private long move(long from, long len, long to, long newLen) {
        mmap.splitVma(from);
        mmap.splitVma(from + len);
        VmArea old = mm.vma(from);
        VmArea moved = old.copyAt(to, from, from + len);
        moved.setReservationOwner(false); // a private owner's reservations follow only once the move is done
        mm.vmaTree().insert(moved); // linked into the same file and anon_vmas: the rmap finds both
        PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(old, from, from + len);
        try (Invalidation inv = Invalidation.startCompleting(mm.notifiers(), r.start(), r.end(), NotifierEvent.UNMAP)) {
            try {
                if (old.kind().isHugetlb()) {
                    moveHugetlbPageTables(old, from, to, len);
                } else {
                    mm.pages.hugePmds.prepareMove(old, from, to, len);
                    AnonVma locked = VmaTree.lockRmap(old); // take_rmap_locks
                    try {
                        movePageTables(from, to, len);
                    } finally {
                        VmaTree.unlockRmap(old, locked);
                    }
                }
            } catch (RuntimeException e) { // no page table for the new place: everything went back
                mmap.doMunmap(to, to + len, false); // the copy goes, with the tables made for it
                mm.vmaTree().mergeAround(old);
                throw e;
            } finally {
                ctx.shootdown().flushTlbMmRange(mm, r.start(), r.end(), old.pageSize().shift());
            }
        }
        moved.setReservationOwner(old.reservationOwner()); // a private owner's reservations go with its pages
        old.setReservationOwner(false);
        mmap.doMunmap(from, from + len, false); // nothing left to zap: the VMA goes, and its empty tables
        VmArea merged = mm.vmaTree().mergeAround(moved);
        if (newLen > len) {
            merged = mm.vmaTree().expand(mm.vma(to), to + newLen);
            populateIfLocked(merged, to + len, to + newLen);
        }
        return to;
    }

    /**
     * move_page_tables: each 2 MiB of the range whose old and new address are aligned and whose
     * new PMD entry is empty moves its PTE table whole; the rest moves entry by entry.
     */
    private void movePageTables(long from, long to, long len) {
        RawPageTable t = mm.pageTable();
        long off = 0;
        try {
            while (off < len) {
                off = moveStep(t, from, to, off, len);
            }
        } finally {
            for (long back = 0; off < len && back < off; ) { // move_vma's failure path: what moved goes back
                back = moveStep(t, to, from, back, off); // (its tables are all still there)
            }
        }
    }

    /** One step of move_page_tables at {@code off} of {@code len}: a whole PTE table or one entry; returns the next offset. */
    private static long moveStep(RawPageTable t, long from, long to, long off, long len) {
        long oldVa = from + off;
        long newVa = to + off;
        if ((oldVa & (PMD_SIZE - 1)) == 0 && (newVa & (PMD_SIZE - 1)) == 0 && off + PMD_SIZE <= len) {
            if (HugePmds.movePmd(t, oldVa, newVa)) {
                return off + PMD_SIZE; // move_huge_pmd
            }
            if (Pte.isNone(t.entry(oldVa, Level.PMD))) {
                return off + PMD_SIZE; // no PTE table there: nothing mapped
            }
            if (Pte.isNone(t.entry(newVa, Level.PMD))) {
                t.allocSlot(newVa, Level.PMD); // the tables above first: a failure here changes nothing
                t.populate(newVa, Level.PMD, t.clearTable(oldVa, Level.PMD)); // move_normal_pmd
                return off + PMD_SIZE;
            }
        }
        moveEntry(t, oldVa, newVa, Level.PTE);
        return off + 4096;
    }

    /** move_ptes for one entry, as it was (A/D bits and all); the new slot first, so a failure loses nothing. */
    private static void moveEntry(RawPageTable t, long oldVa, long newVa, Level leaf) {
        long slot = t.slot(oldVa, leaf);
        if (slot < 0 || Pte.isNone(t.readSlot(slot))) {
            return;
        }
        long to = t.allocSlot(newVa, leaf);
        t.compareAndSetSlot(to, 0, t.getAndClearSlot(slot));
    }

    /**
     * move_hugetlb_page_tables: under the VMA lock and i_mmap_rwsem for write, each shared PMD
     * window of the old range is unshared first (its pages stay with the other sharers and fault
     * back in at the new address), then the huge entries move one by one.
     */
    private void moveHugetlbPageTables(VmArea old, long from, long to, long len) {
        RawPageTable t = mm.pageTable();
        PageSize size = old.pageSize();
        Level leaf = Level.ofLeaf(size);
        old.hugetlbVmaLock().downWrite();
        try {
            old.mapping().iMmapRwsem().downWrite();
            try {
                if (size == PageSize.SIZE_2M) {
                    for (long window = from & PmdSharing.PUD_MASK; window < from + len; window += PmdSharing.PUD_SIZE) {
                        PmdSharing.hugePmdUnshare(old, Math.max(window, from));
                    }
                }
                long off = 0;
                try {
                    for (; off < len; off += size.bytes()) {
                        moveEntry(t, from + off, to + off, leaf);
                    }
                } finally {
                    for (long back = 0; back < off && off < len; back += size.bytes()) {
                        moveEntry(t, to + back, from + back, leaf); // a failure: what moved goes back
                    }
                }
            } finally {
                old.mapping().iMmapRwsem().upWrite();
            }
        } finally {
            old.hugetlbVmaLock().upWrite();
        }
    }

    /** An mlocked mapping that grew has its new part faulted in (mremap's mm_populate). */
    private void populateIfLocked(VmArea v, long start, long end) {
        if (!v.locked() || !v.protection().accessible()) {
            return;
        }
        Access access = v.protection().write() && !v.kind().isShared() ? Access.WRITE : Access.READ;
        for (long va = start; va < end; va += 4096) {
            mm.handleFault(mm.vma(va), va, access);
        }
    }
}
