package org.vmcore.impl.mm;

import java.util.concurrent.atomic.AtomicLong;
import org.vmcore.api.FaultResult;

/**
 * The fault counters of one address space: pgfault (every fault that reached the handler,
 * whatever its outcome) and min_flt (faults handled without I/O, counted only when they succeed,
 * as mm_account_fault does) and maj_flt (the swap-ins that read the swap device). Atomic: faults
 * of one address space run in parallel.
 */
final class FaultCounts {
    private final AtomicLong pgfault = new AtomicLong();
    private final AtomicLong minFlt = new AtomicLong();
    private final AtomicLong majFlt = new AtomicLong();

    /** A fault reached the handler. */
    void entered() {
        pgfault.incrementAndGet();
    }

    /** The fault was handled: a major fault if it read the swap device, else a minor one. */
    void handled(FaultResult result) {
        (result == FaultResult.SWAP_IN ? majFlt : minFlt).incrementAndGet();
    }

    long majFlt() {
        return majFlt.get();
    }

    long pgfault() {
        return pgfault.get();
    }

    long minFlt() {
        return minFlt.get();
    }

    /** Takes back the minor faults of a populate that failed and unmapped its range. */
    void restoreMinFlt(long count) {
        minFlt.set(count);
    }
}
