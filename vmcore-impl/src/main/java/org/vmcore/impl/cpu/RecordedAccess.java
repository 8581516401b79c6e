package org.vmcore.impl.cpu;

import org.vmcore.api.Access;
import org.vmcore.api.TraceOp;

/**
 * {@code loadRecorded} and {@code storeRecorded}: one access made through {@link DataAccess}
 * with the {@link Mmu} recording into the CPU's one-slot {@link OutcomeLog}, and the cycles and
 * shootdowns it took around it. On the CPU's own thread.
 */
final class RecordedAccess {
    private final DataAccess access;
    private final Mmu mmu;
    private final CycleMeter meter;
    private final CpuFlushCounters flushes;
    private final OutcomeLog outcome = new OutcomeLog(1);

    RecordedAccess(DataAccess access, Mmu mmu, CycleMeter meter, CpuFlushCounters flushes) {
        this.access = access;
        this.mmu = mmu;
        this.meter = meter;
        this.flushes = flushes;
    }

    long load(long va, int width) {
        long received = begin(va, TraceOp.LOAD);
        try {
            long v = access.load(va, width, Access.READ);
            end(received);
            return v;
        } finally {
            mmu.recordInto(null);
        }
    }

    void store(long va, int width, long value) {
        long received = begin(va, TraceOp.STORE);
        try {
            access.store(va, width, value);
            end(received);
        } finally {
            mmu.recordInto(null);
        }
    }

    /** The outcome of the last recorded access. */
    OutcomeLog outcome() {
        return outcome;
    }

    /** Starts recording; returns the shootdowns received so far. */
    private long begin(long va, byte op) {
        outcome.clear();
        outcome.begin(-1, va, op, meter.total());
        mmu.recordInto(outcome);
        return flushes.shootdownsReceived();
    }

    private void end(long received) {
        outcome.waited(flushes.shootdownsReceived() - received);
        outcome.end(meter.total());
    }
}
