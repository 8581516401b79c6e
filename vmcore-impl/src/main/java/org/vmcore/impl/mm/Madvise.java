package org.vmcore.impl.mm;

import org.vmcore.api.Advice;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.vma.VmArea;

/**
 * madvise(2) (mm/madvise.c: madvise_walk_vmas, madvise_dontneed_free, madvise_pageout): the
 * advice goes to each VMA of the range in address order, under the mmap_lock held for read
 * (DONTNEED, FREE, PAGEOUT and COLD change entries, under their page-table locks, not VMAs). A hole in the range is
 * remembered and reported as -ENOMEM at the end; a VMA the advice refuses stops the walk with
 * -EINVAL, the VMAs before it advised, as Linux leaves them.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class Madvise {
    private final MmContext ctx;
    private final SimAddressSpace mm;
    private final LazyFree lazyFree;
    private final Mmap mmap;
    private final MadviseSwap swapAdvice;

    Madvise(MmContext ctx, SimAddressSpace mm, Mmap mmap) {
        this.ctx = ctx;
        this.mm = mm;
        MadviseThp huge = new MadviseThp(ctx, mm);
        this.lazyFree = new LazyFree(ctx, mm, huge);
        this.mmap = mmap;
        this.swapAdvice = new MadviseSwap(ctx, mm, huge);
    }

    int madvise(long address, long length, Advice advice) {
        if (advice == null) {
            throw new InvalidArgumentException("advice", null, "must not be null");
        }
        // madvise_need_mmap_write: the advice that changes VMAs or collapses takes the mmap_lock for write
        boolean write = advice == Advice.HUGEPAGE || advice == Advice.NOHUGEPAGE || advice == Advice.COLLAPSE;
        int rc;
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = write ? mm.mmapWrite("madvise") : mm.mmapRead()) {
            mm.ensureChangeable("madvise");
            mm.args.checkAddress(address, "address");
            if (length < 0) {
                throw new InvalidArgumentException("length", length, "must not be negative");
            }
            if (length == 0) {
                return 0;
            }
            long len = mm.args.checkLength(length, PageSize.SIZE_4K);
            mm.args.checkRangeInUserSpace(address, len, "-EINVAL");
            try {
                rc = switch (advice) {
                    case HUGEPAGE -> hugepage(address, address + len, VmArea.VM_HUGEPAGE);
                    case NOHUGEPAGE -> hugepage(address, address + len, VmArea.VM_NOHUGEPAGE);
                    case COLLAPSE -> collapse(address, address + len);
                    default -> walk(address, address + len, advice);
                };
            } catch (Throwable e) { // a notifier refused: the VMAs before it were advised
                throw ctx.hook().operationFailed(e);
            }
        }
        ctx.hook().afterOperation("madvise");
        return rc;
    }

    /**
     * hugepage_madvise through madvise_update_vma: the VMAs of the range, cut at its ends, get
     * VM_HUGEPAGE or VM_NOHUGEPAGE in place of the other, then merge where they can. A hugetlb VMA
     * in the range refuses it (-EINVAL) before anything changes; a hole is -ENOMEM, as for the
     * other advice.
     */
    private int hugepage(long start, long end, int flag) {
        long at = start;
        int rc = 0;
        for (VmArea v : mm.vmaTree().overlapping(start, end)) {
            if (v.kind().isHugetlb()) {
                return -Errno.EINVAL;
            }
            rc = v.start() > at ? -Errno.ENOMEM : rc;
            at = v.end();
        }
        rc = at < end ? -Errno.ENOMEM : rc;
        mmap.splitVma(start);
        mmap.splitVma(end);
        for (VmArea v : mm.vmaTree().overlapping(start, end)) {
            v.setHugepageAdvice(flag);
        }
        for (VmArea v : mm.vmaTree().overlapping(start, end)) {
            if (mm.vma(v.start()) == v) { // not merged away by the previous round
                mm.vmaTree().mergeAround(v);
            }
        }
        return rc;
    }

    /**
     * madvise_collapse: each 2 MiB-aligned range inside {@code [start, end)} and inside a private
     * anonymous VMA collapses into a huge page; 0 when all did (or were huge already), else the
     * error of the last that did not (-EINVAL for a range of another kind of VMA), as Linux reports.
     */
    private int collapse(long start, long end) {
        int rc = 0;
        for (long haddr = (start + HugeMemory.SIZE - 1) & -HugeMemory.SIZE; haddr + HugeMemory.SIZE <= end;
             haddr += HugeMemory.SIZE) {
            VmArea v = mm.vma(haddr);
            if (v == null) {
                rc = -Errno.ENOMEM;
                continue;
            }
            int r = v.kind() == VmaKind.ANONYMOUS_PRIVATE && v.containsRange(haddr, haddr + HugeMemory.SIZE)
                    ? KhugepagedImpl.collapse(ctx, mm, v, haddr, false) : -Errno.EINVAL;
            rc = r < 0 ? r : rc; // 1 (collapsed) and 0 (huge already) both succeed
        }
        return rc;
    }

    /** madvise_walk_vmas: the advice for each VMA piece in turn. */
    private int walk(long start, long end, Advice advice) {
        int rc = 0;
        long at = start;
        for (VmArea v : mm.vmaTree().overlapping(start, end)) {
            if (v.start() > at) {
                rc = -Errno.ENOMEM; // unmapped_error: the walk goes on
            }
            long from = Math.max(start, v.start());
            long to = Math.min(end, v.end());
            at = to;
            if (advice == Advice.WILLNEED) {
                swapAdvice.willneed(v, from, to); // madvise_willneed takes any VMA
                continue;
            }
            if (v.locked() || v.kind().isHugetlb() && advice != Advice.DONTNEED
                    || advice == Advice.FREE && v.kind() != VmaKind.ANONYMOUS_PRIVATE) {
                return -Errno.EINVAL; // madvise_dontneed_free_valid_vma, can_madv_lru_vma
            }
            if (v.kind().isHugetlb()) {
                PageSize size = v.pageSize();
                if (!size.isAligned(from)) {
                    return -Errno.EINVAL; // a hugetlb range starts on a huge page
                }
                to = size.alignDown(to); // and ends on one: the tail is left alone
                if (to <= from) {
                    continue;
                }
            }
            switch (advice) {
                case DONTNEED -> mm.zap.dontneed(v, from, to);
                case FREE -> lazyFree.markLazyFree(v, from, to);
                case PAGEOUT -> lazyFree.pageout(v, from, to);
                case COLD -> swapAdvice.cold(v, from, to);
                default -> throw new IllegalStateException("advice " + advice); // WILLNEED went above
            }
        }
        return at < end ? -Errno.ENOMEM : rc;
    }
}
