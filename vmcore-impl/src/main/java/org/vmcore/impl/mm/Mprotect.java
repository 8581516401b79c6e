package org.vmcore.impl.mm;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.notifier.Invalidation;
import org.vmcore.impl.vma.VmArea;

/**
 * mprotect (mm/mprotect.c): mprotect_fixup splits the VMAs at the range's ends (not where a VMA
 * already has the new protection), change_protection rewrites their entries inside one notifier
 * range per VMA (widened for PMD sharing, as hugetlb_change_protection does) and flushes, and the
 * pieces are merged again. A notifier that refuses aborts it with everything as it was. With
 * {@link Regression#PRE_DFF11ABE} the notifier and flush ranges are not widened, as before
 * dff11abe280b; since the VMA split already unshared every window the range cuts
 * (hugetlb_split), that changes nothing today: only whole windows are unshared here.
 *
 * <p>It may touch its address space's VMA tree and page operations, the notifier chain and the
 * TLB shootdown; the facade has validated the arguments and holds the machine lock.
 */
final class Mprotect {
    private final SimAddressSpace mm;
    private final MmContext ctx;
    private final Mmap mmap;
    /** Whether hugetlb_change_protection widens its notifier and flush ranges for PMD sharing (dff11abe280b). */
    private final boolean widenForSharing;

    Mprotect(SimAddressSpace mm, MmContext ctx, Mmap mmap) {
        this.mm = mm;
        this.ctx = ctx;
        this.mmap = mmap;
        this.widenForSharing = !ctx.config().regressions().contains(Regression.PRE_DFF11ABE);
    }

    /** mprotect of [address, address + len), which must be fully mapped, to {@code prot}. */
    void mprotectFixup(long address, long len, Protection prot) {
        assert ctx.lock().isHeldByCurrentThread();
        long end = address + len;
        long covered = address;
        for (VmArea v : mm.vmaTree().overlapping(address, end)) {
            if (v.start() > covered) {
                break;
            }
            covered = v.end();
        }
        if (covered < end) {
            throw new InvalidArgumentException("address", address, "must start a fully mapped range of " + len
                    + " bytes (hole at 0x" + Long.toHexString(covered) + ")");
        }
        // mprotect_fixup returns early for a VMA that already has the new flags: no split, no notifier, no flush.
        VmArea first = mm.vma(address);
        VmArea last = mm.vma(end - 1);
        boolean splitFirst = !first.protection().equals(prot);
        boolean splitLast = !last.protection().equals(prot) && last.end() != end;
        if (splitFirst && mmap.unsplittableAt(address) != null || splitLast && mmap.unsplittableAt(end) != null) {
            mmap.checkSplitPoints(address, end);
        }
        List<VmArea> changing = new ArrayList<>();
        for (VmArea v : mm.vmaTree().overlapping(address, end)) {
            if (!v.protection().equals(prot)) {
                changing.add(v);
            }
        }
        if (changing.isEmpty()) {
            return;
        }
        long from = Math.max(address, changing.getFirst().start());
        long to = Math.min(end, changing.getLast().end());
        if (splitFirst) {
            mmap.splitVma(address);
        }
        if (splitLast) {
            mmap.splitVma(end);
        }
        changing = mm.vmaTree().overlapping(from, to);
        changing.removeIf(v -> v.protection().equals(prot));
        changeProtection(changing, prot);
        for (VmArea v : mm.vmaTree().overlapping(address, end)) {
            if (mm.vma(v.start()) == v) { // not merged away by the previous round
                mm.vmaTree().mergeAround(v);
            }
        }
    }

    /**
     * change_protection of each VMA, with every notifier range opened before anything changes: a
     * notifier whose invalidateRangeStart throws aborts the mprotect with protections, entries
     * and (after re-merging the split pieces) VMAs as they were.
     */
    private void changeProtection(List<VmArea> changing, Protection prot) {
        List<Invalidation> open = new ArrayList<>(changing.size());
        try {
            for (VmArea v : changing) {
                long from = v.start();
                long to = v.end();
                if (v.kind().isHugetlb() && widenForSharing) { // hugetlb_change_protection widens for PMD sharing
                    PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(v, from, to);
                    from = r.start();
                    to = r.end();
                }
                open.add(Invalidation.start(mm.notifiers(), from, to, NotifierEvent.PROTECTION_VMA));
            }
        } catch (Throwable e) { // whatever the notifier threw: nothing changed yet
            for (Invalidation inv : open) {
                inv.close();
            }
            for (VmArea v : changing) {
                if (mm.vma(v.start()) == v) {
                    mm.vmaTree().mergeAround(v);
                }
            }
            throw ctx.hook().operationFailed(e);
        }
        for (int i = 0; i < changing.size(); i++) {
            VmArea v = changing.get(i);
            Invalidation inv = open.get(i);
            mm.pages.changeProtection(v, prot); // the new flags and the unshare under one hold of the locks
            ctx.shootdown().flushTlbMmRange(mm, inv.range().start(), inv.range().end(), v.pageSize().shift());
            inv.close();
        }
    }
}
