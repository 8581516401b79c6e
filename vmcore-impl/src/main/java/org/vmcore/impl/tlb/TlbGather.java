package org.vmcore.impl.tlb;

import org.vmcore.impl.vma.MmStruct;

/**
 * What an mmu_gather remembers for its flush: the span of the entries cleared and the smallest
 * page size among them, which becomes the flush stride (tlb_get_unmap_shift). It touches nothing
 * until {@link #flush}, which goes through the {@link TlbShootdown}.
 */
public final class TlbGather {
    private long start = Long.MAX_VALUE;
    private long end = Long.MIN_VALUE;
    private int strideShift = 30;

    /** Records that entries mapping [from, to) with pages of 2^shift bytes were cleared. */
    public void add(long from, long to, int shift) {
        start = Math.min(start, from);
        end = Math.max(end, to);
        strideShift = Math.min(strideShift, shift);
    }

    public boolean isEmpty() {
        return start >= end;
    }

    /** Flushes what was gathered from the address space's CPUs and secondary TLBs. */
    public void flush(TlbShootdown shootdown, MmStruct mm) {
        if (!isEmpty()) {
            shootdown.flushTlbMmRange(mm, start, end, strideShift);
        }
    }
}
