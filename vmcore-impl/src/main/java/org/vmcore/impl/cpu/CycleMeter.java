package org.vmcore.impl.cpu;

import java.util.concurrent.atomic.AtomicLong;
import org.vmcore.api.CostModel;

/**
 * The simulated cycles charged to one CPU by its cost model. The access path charges on the
 * CPU's own thread (a plain field); flushes, shootdowns, notifier calls and page copies may be
 * charged from any thread (an atomic), so each side needs no fence of the other's.
 */
final class CycleMeter {
    // Set by the driving thread; read on the access path without a fence (a later set is seen soon enough).
    private CostModel model;
    private long own;
    private final AtomicLong others = new AtomicLong();

    CostModel model() {
        return model;
    }

    void model(CostModel model) {
        this.model = model;
    }

    /** Charges {@code cycles} on the CPU's own thread. */
    void chargeOwn(long cycles) {
        own += cycles;
    }

    /** Charges {@code cycles} from any thread. */
    void chargeShared(long cycles) {
        others.addAndGet(cycles);
    }

    long total() {
        return own + others.get();
    }

    void reset() {
        own = 0;
        others.set(0);
    }
}
