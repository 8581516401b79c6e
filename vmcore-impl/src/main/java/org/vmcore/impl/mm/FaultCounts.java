package org.vmcore.impl.mm;

/**
 * The fault counters of one address space: pgfault (every fault that reached the handler,
 * whatever its outcome) and min_flt (faults handled without I/O, counted only when they succeed,
 * as mm_account_fault does). maj_flt stays 0: nothing in vmcore does I/O. Touched under the
 * machine lock.
 */
final class FaultCounts {
    private long pgfault;
    private long minFlt;

    /** A fault reached the handler. */
    void entered() {
        pgfault++;
    }

    /** The fault was handled. */
    void handled() {
        minFlt++;
    }

    long pgfault() {
        return pgfault;
    }

    long minFlt() {
        return minFlt;
    }

    /** Takes back the minor faults of a populate that failed and unmapped its range. */
    void restoreMinFlt(long count) {
        minFlt = count;
    }
}
