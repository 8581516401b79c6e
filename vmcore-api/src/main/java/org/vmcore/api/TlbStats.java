package org.vmcore.api;

/**
 * Counters of one CPU's TLB since the machine started.
 *
 * @param hits               accesses translated by a cached entry
 * @param misses             accesses that found no usable entry
 * @param misses4k           misses resolved by a walk to a 4 KiB leaf
 * @param misses2m           misses resolved by a walk to a 2 MiB leaf
 * @param misses1g           misses resolved by a walk to a 1 GiB leaf
 * @param walks              hardware walks (successful or not), including D-bit assists
 * @param pscHits            walks that started from a paging-structure cache entry
 * @param pageFlushes        flushes of single pages received (INVLPG)
 * @param rangeFlushes       range flushes received (one INVLPG per stride step)
 * @param mmFlushes          flushes of one address space's whole PCID received
 * @param fullFlushes        flushes of everything received
 * @param shootdownsSent     flushes this CPU initiated that reached other CPUs, one per flush however many
 *                           CPUs it reached (nr_tlb_remote_flush counts them so)
 * @param shootdownsReceived flushes that came from another CPU or from the engine
 */
public record TlbStats(long hits, long misses, long misses4k, long misses2m, long misses1g, long walks, long pscHits,
                       long pageFlushes, long rangeFlushes, long mmFlushes, long fullFlushes, long shootdownsSent,
                       long shootdownsReceived) {
}
