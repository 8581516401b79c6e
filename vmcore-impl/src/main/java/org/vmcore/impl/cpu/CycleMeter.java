package org.vmcore.impl.cpu;

import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;
import org.vmcore.api.CostModel;
import org.vmcore.api.FaultResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.impl.notifier.CallbackFailures;

/**
 * The simulated cycles charged to one CPU by its cost model, and what the model threw.
 *
 * <p>The access path charges on the CPU's own thread (a plain field); flushes, shootdowns,
 * notifier calls and page copies may be charged from any thread (an atomic), so each side needs
 * no fence of the other's.
 *
 * <p>The cost model is user code and may throw. A charge never lets that stop the engine: on the
 * access path the first exception waits in {@link #takeFailure} until the access is over (the
 * CPU rethrows it then); inside an mm operation it goes to the operation's
 * {@link CallbackFailures}, rethrown when the operation ends, as a notifier's would be.
 */
final class CycleMeter {
    // Set by the driving thread; read on the access path without a fence (a later set is seen soon enough).
    private CostModel model;
    private long own;
    private final AtomicLong others = new AtomicLong();
    private Throwable failure; // what the model threw on the access path; the CPU's own thread only

    CostModel model() {
        return model;
    }

    void model(CostModel model) {
        this.model = model;
    }

    long total() {
        return own + others.get();
    }

    void reset() {
        own = 0;
        others.set(0);
    }

    // ---- the access path, on the CPU's own thread ----

    void l1Hit(PageSize size) {
        CostModel m = model;
        if (m != null) {
            try {
                own += m.l1Hit(size);
            } catch (Throwable t) {
                failed(t);
            }
        }
    }

    void stlbHit(PageSize size) {
        CostModel m = model;
        if (m != null) {
            try {
                own += m.stlbHit(size);
            } catch (Throwable t) {
                failed(t);
            }
        }
    }

    void walkReference(PageTableLevel level, long physicalAddress) {
        CostModel m = model;
        if (m != null) {
            try {
                own += m.walkReference(level, physicalAddress);
            } catch (Throwable t) {
                failed(t);
            }
        }
    }

    void fault(FaultResult result, PageSize size) {
        CostModel m = model;
        if (m != null) {
            try {
                own += m.fault(result, size);
            } catch (Throwable t) {
                failed(t);
            }
        }
    }

    /** What the model threw while pricing this access's fault, on the CPU's own thread. */
    void faultPricingFailed(Throwable t) {
        failed(t);
    }

    private void failed(Throwable t) {
        if (failure == null) {
            failure = t;
        } else if (failure != t) {
            failure.addSuppressed(t);
        }
    }

    /** Whether the model threw on the access path since the last {@link #takeFailure}. */
    boolean failed() {
        return failure != null;
    }

    /**
     * Puts back a failure taken with {@link #takeFailure} (while a listener ran), ahead of any
     * recorded since.
     */
    void putBack(Throwable t) {
        if (t != null) {
            if (failure != null && failure != t) {
                t.addSuppressed(failure);
            }
            failure = t;
        }
    }

    /** What the model threw on the access path, or null; forgets it. */
    Throwable takeFailure() {
        Throwable t = failure;
        failure = null;
        return t;
    }

    /** After an access completed: throws what the model threw during it, if anything. */
    void accessDone() {
        if (failure != null) {
            throw CallbackFailures.<RuntimeException>sneaky(takeFailure());
        }
    }

    /** An access threw {@code t}: what the model threw during it goes with it, suppressed. */
    RuntimeException accessFailed(Throwable t) {
        Throwable model = takeFailure();
        if (model != null && model != t) {
            t.addSuppressed(model);
        }
        return CallbackFailures.sneaky(t);
    }

    // ---- inside mm operations, on the thread that runs them ----

    /**
     * Charges what {@code charge} prices; what the model throws goes to {@code failures}, the
     * collector of the operation that runs on this thread.
     */
    void shared(Charge charge, Consumer<Throwable> failures) {
        CostModel m = model;
        if (m != null) {
            try {
                others.addAndGet(charge.price(m));
            } catch (Throwable t) {
                failures.accept(t);
            }
        }
    }

    /** One priced event of an mm operation. */
    @FunctionalInterface
    interface Charge {
        long price(CostModel model);
    }
}
