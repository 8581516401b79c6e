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
    private final MadviseSwap swapAdvice;

    Madvise(MmContext ctx, SimAddressSpace mm) {
        this.ctx = ctx;
        this.mm = mm;
        this.lazyFree = new LazyFree(ctx, mm);
        this.swapAdvice = new MadviseSwap(ctx, mm);
    }

    int madvise(long address, long length, Advice advice) {
        int rc;
        try (MachineLock.Held locked = mm.lock().shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureChangeable("madvise");
            if (advice == null) {
                throw new InvalidArgumentException("advice", null, "must not be null");
            }
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
                rc = walk(address, address + len, advice);
            } catch (Throwable e) { // a notifier refused: the VMAs before it were advised
                throw ctx.hook().operationFailed(e);
            }
        }
        ctx.hook().afterOperation("madvise");
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
