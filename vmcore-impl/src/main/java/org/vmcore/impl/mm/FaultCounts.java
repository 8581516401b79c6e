package org.vmcore.impl.mm;

import java.util.concurrent.atomic.AtomicLong;

/**
 * The fault counters of one address space: pgfault (every fault that reached the handler,
 * whatever its outcome) and min_flt (faults handled without I/O, counted only when they succeed,
 * as mm_account_fault does). maj_flt stays 0: nothing in vmcore does I/O. Atomic: faults of one
 * address space run in parallel.
 */
final class FaultCounts {
    private final AtomicLong pgfault = new AtomicLong();
    private final AtomicLong minFlt = new AtomicLong();

    /** A fault reached the handler. */
    void entered() {
        pgfault.incrementAndGet();
    }

    /** The fault was handled. */
    void handled() {
        minFlt.incrementAndGet();
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
