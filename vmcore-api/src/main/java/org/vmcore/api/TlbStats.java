package org.vmcore.api;

/**
 * Counters of one CPU's TLB since the machine started.
 *
 * <p>Each translation an access asks for is one of: an L1 hit, an STLB hit, a miss (a walk
 * that filled the TLB) or a fault (a walk that ended in a page fault). An access that faults
 * and is resolved counts one fault and then, when it retries, one miss or hit.
 *
 * @param l1Hits             translations found in the first-level data TLB
 * @param stlbHits           translations found in the second-level TLB arrays
 * @param misses             translations that found no usable entry and walked to a leaf
 * @param misses4k           misses resolved by a walk to a 4 KiB leaf
 * @param misses2m           misses resolved by a walk to a 2 MiB leaf
 * @param misses1g           misses resolved by a walk to a 1 GiB leaf
 * @param faults             walks that ended in a page fault
 * @param walks              hardware walks: misses plus faults (a D-bit assist, a store through a
 *                           cached entry without D, walks again and counts as a miss)
 * @param pscHits            walks that started from a paging-structure cache entry
 * @param pageFlushes        flushes of single pages received (INVLPG)
 * @param rangeFlushes       range flushes received (one INVLPG per stride step)
 * @param mmFlushes          flushes of one address space's whole PCID received
 * @param fullFlushes        flushes of everything received
 * @param shootdownsSent     flushes this CPU initiated that reached other CPUs, one per flush however many
 *                           CPUs it reached (nr_tlb_remote_flush counts them so)
 * @param shootdownsReceived flushes that came from another CPU or from the engine
 */
public record TlbStats(long l1Hits, long stlbHits, long misses, long misses4k, long misses2m, long misses1g, long faults,
                       long walks, long pscHits, long pageFlushes, long rangeFlushes, long mmFlushes, long fullFlushes,
                       long shootdownsSent, long shootdownsReceived) {
    /**
     * Translations found in either TLB level.
     *
     * @return {@link #l1Hits()} + {@link #stlbHits()}
     */
    public long hits() {
        return l1Hits + stlbHits;
    }

    /**
     * The counts since {@code earlier}, for an interval.
     *
     * @param earlier counters taken earlier from the same CPU
     * @return each counter minus the same counter of {@code earlier}
     */
    public TlbStats minus(TlbStats earlier) {
        return new TlbStats(l1Hits - earlier.l1Hits, stlbHits - earlier.stlbHits, misses - earlier.misses,
                misses4k - earlier.misses4k, misses2m - earlier.misses2m, misses1g - earlier.misses1g, faults - earlier.faults,
                walks - earlier.walks, pscHits - earlier.pscHits, pageFlushes - earlier.pageFlushes,
                rangeFlushes - earlier.rangeFlushes, mmFlushes - earlier.mmFlushes, fullFlushes - earlier.fullFlushes,
                shootdownsSent - earlier.shootdownsSent, shootdownsReceived - earlier.shootdownsReceived);
    }
}
