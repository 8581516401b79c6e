package org.vmcore.impl.cpu;

import org.vmcore.api.CostModel;
import org.vmcore.impl.notifier.CallbackFailures;

/**
 * What one CPU's cost model charges for mm work done on its behalf or sent to it: notifier
 * callbacks, page copies, its local flushes, the shootdowns it sends and receives. They are
 * priced on the thread of the operation, under the machine lock.
 *
 * <p>What the model throws never stops that work: it goes to the CPU's access when the work is
 * that access's fault on this thread (the access completes, then it is thrown), else to the
 * collector of the operation, rethrown when the operation ends, as a notifier's exception is.
 */
final class MmCharges {
    private final CallbackFailures callbackFailures;
    private final CycleMeter meter;
    private final Mmu mmu;

    MmCharges(CallbackFailures callbackFailures, CycleMeter meter, Mmu mmu) {
        this.callbackFailures = callbackFailures;
        this.meter = meter;
        this.mmu = mmu;
    }

    void notifierCall() {
        if (meter.model() != null) {
            meter.shared(CostModel::notifierCallback, this::failed);
        }
    }

    void pageCopy(long bytes) {
        if (meter.model() != null) {
            meter.shared(m -> m.pageCopy(bytes), this::failed);
        }
    }

    void shootdownSent(int targets) {
        if (meter.model() != null) {
            meter.shared(m -> m.shootdownSent(targets), this::failed);
        }
    }

    void shootdownReceived() {
        if (meter.model() != null) {
            meter.shared(CostModel::shootdownReceived, this::failed);
        }
    }

    void localFlush(boolean all, long pages) {
        if (meter.model() != null) {
            meter.shared(m -> m.tlbFlush(all, pages), this::failed);
        }
    }

    private void failed(Throwable t) {
        if (mmu.faultingOn(Thread.currentThread())) {
            meter.faultPricingFailed(t);
        } else {
            callbackFailures.add(t); // per thread: rethrown when this thread's operation ends
        }
    }
}
