package org.vmcore.impl.cpu;

import java.util.concurrent.atomic.AtomicLong;

/**
 * The flush-receiving side of one CPU, counted: the flushes that ran on its TLB (by page, range,
 * address space or all), the shootdowns it sent and received, and the local flushes it ran as
 * initiator (nr_tlb_local_flush_one, nr_tlb_local_flush_all). Counted by flushers on any thread,
 * so every counter is an {@link AtomicLong}; read by statistics.
 */
final class CpuFlushCounters {
    private final AtomicLong pageFlushes = new AtomicLong();
    private final AtomicLong rangeFlushes = new AtomicLong();
    private final AtomicLong mmFlushes = new AtomicLong();
    private final AtomicLong fullFlushes = new AtomicLong();
    private final AtomicLong shootdownsSent = new AtomicLong();
    private final AtomicLong shootdownsReceived = new AtomicLong();
    private final AtomicLong localFlushesOne = new AtomicLong();
    private final AtomicLong localFlushesAll = new AtomicLong();

    /** A flush of pages: of one page ({@code single}) or of a range. */
    void pages(boolean single) {
        (single ? pageFlushes : rangeFlushes).incrementAndGet();
    }

    /** A flush of one PCID. */
    void mm() {
        mmFlushes.incrementAndGet();
    }

    /** A flush of every PCID. */
    void full() {
        fullFlushes.incrementAndGet();
    }

    void shootdownSent() {
        shootdownsSent.incrementAndGet();
    }

    void shootdownReceived() {
        shootdownsReceived.incrementAndGet();
    }

    /** A flush this CPU initiated and ran on itself: {@code all} of an address space or TLB, else of pages. */
    void local(boolean all) {
        (all ? localFlushesAll : localFlushesOne).incrementAndGet();
    }

    /** The local flushes counted by {@link #local(boolean)}. */
    long localCount(boolean all) {
        return (all ? localFlushesAll : localFlushesOne).get();
    }

    long pageFlushes() {
        return pageFlushes.get();
    }

    long rangeFlushes() {
        return rangeFlushes.get();
    }

    long mmFlushes() {
        return mmFlushes.get();
    }

    long fullFlushes() {
        return fullFlushes.get();
    }

    long shootdownsSent() {
        return shootdownsSent.get();
    }

    long shootdownsReceived() {
        return shootdownsReceived.get();
    }
}
