package org.vmcore.impl;

import java.util.ArrayDeque;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;

/**
 * How a public operation ends (the machine's {@link OperationHook}): the invariant check when
 * configured, then the closes a user callback asked for while the engine was mid-change below it
 * (the kernel cannot exit an mm from inside its own notifier either; here the close waits for the
 * operation that called back), then the rethrow of what callbacks threw. It touches the pending
 * closes, the callback depth in {@link CallbackFailures} and the migrating-thread mark; callers
 * hold the machine lock and run on the engine's thread.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class OperationEnd implements OperationHook {
    private final MachineLock lock;
    private final CallbackFailures callbackFailures;
    private final MigratingThread migrating;
    private final Consumer<String> invariants;
    private final Runnable closeMachine;
    // Closes asked for from inside a user callback, done when the operation that called back ends:
    // per thread, as operations on different address spaces run in parallel.
    private final ThreadLocal<ArrayDeque<SimAddressSpace>> pendingCloses = ThreadLocal.withInitial(ArrayDeque::new);
    // Closes deferred by any thread and not yet done: 0 spares the per-thread lookup.
    private final AtomicInteger deferred = new AtomicInteger();
    // A machine close asked for from inside a callback, done by the thread that asked when its
    // operation ends (counted in deferred too).
    private final ThreadLocal<boolean[]> closePending = ThreadLocal.withInitial(() -> new boolean[1]);

    /**
     * @param invariants   checks the invariants after the named operation, throwing on a violation;
     *                     null when the machine does not check them
     * @param closeMachine closes the machine (when a callback asked for it)
     */
    OperationEnd(MachineLock lock, CallbackFailures callbackFailures, MigratingThread migrating, Consumer<String> invariants,
                 Runnable closeMachine) {
        this.lock = lock;
        this.callbackFailures = callbackFailures;
        this.migrating = migrating;
        this.invariants = invariants;
        this.closeMachine = closeMachine;
    }

    /**
     * Called at the end of every public operation: with the option on, runs the checker and
     * throws on a violation. Skipped inside a migration (its observer runs mid-operation).
     */
    @Override
    public void afterOperation(String operation) {
        if (migrating.isCurrent()) {
            return; // the migration takes what its callbacks threw itself
        }
        if (invariants != null && !lock.isSharedOnlyByCurrentThread()) {
            // At a quiescent point only: the check needs the machine to itself, and waiting for it
            // could wait for a thread that waits for us (a callback or a race hook holding its
            // operation). While other operations are in progress the check is left to a later one.
            try (MachineLock.Held locked = lock.tryExclusive()) {
                if (locked != null) {
                    invariants.accept(operation);
                }
            }
        }
        operationDone();
    }

    @Override
    public void afterFault(long va) {
        if (invariants != null) {
            afterOperation("fault at 0x" + Long.toHexString(va));
        } else if (!migrating.isCurrent()) {
            operationDone();
        }
    }

    @Override
    public void operationDone() {
        if (callbackFailures.inCallback()) {
            return; // nested in a callback: what was collected surfaces when the outermost operation ends
        }
        if (!nested()) {
            completePendingCloses();
        }
        callbackFailures.rethrow();
    }

    @Override
    public RuntimeException operationFailed(Throwable e) {
        if (!nested()) {
            try {
                completePendingCloses();
            } catch (Throwable c) {
                if (c != e) {
                    e.addSuppressed(c);
                }
            }
        }
        throw CallbackFailures.<RuntimeException>sneaky(callbackFailures.suppressInto(e));
    }

    /** Inside a user callback or a migration of an outer operation: that operation ends later. */
    private boolean nested() {
        return callbackFailures.inCallback() || migrating.isCurrent();
    }

    /**
     * Whether a close of {@code mm} asked for now must wait: the engine's thread is inside a user
     * callback, with an operation half done below it. The address space is then closed when that
     * operation ends.
     */
    boolean deferClose(SimAddressSpace mm) {
        if (!callbackFailures.inCallback()) {
            return false;
        }
        ArrayDeque<SimAddressSpace> pending = pendingCloses.get();
        if (!pending.contains(mm)) {
            pending.add(mm);
            deferred.incrementAndGet();
        }
        return true;
    }

    /** As {@link #deferClose}, for the machine's own close; the caller holds the lock. */
    boolean deferMachineClose() {
        assert lock.isHeldByCurrentThread();
        if (!callbackFailures.inCallback()) {
            return false;
        }
        requestClose(); // from inside a callback: the operation below finishes first
        return true;
    }

    /**
     * A close of the machine asked for by a thread inside an address-space operation (which holds
     * the machine lock shared, so it cannot close now): done when that operation ends.
     */
    void closeMachineLater() {
        requestClose();
    }

    private void requestClose() {
        boolean[] pending = closePending.get();
        if (!pending[0]) {
            pending[0] = true;
            deferred.incrementAndGet();
        }
    }

    /** The machine closes now: what was pending goes with it. */
    void machineClosing() {
        ArrayDeque<SimAddressSpace> pending = pendingCloses.get();
        deferred.addAndGet(-pending.size());
        pending.clear();
    }

    /**
     * Closes what a user callback asked to close while the engine was mid-change below it: the
     * address spaces first, then the machine. Called where an operation has finished.
     */
    private void completePendingCloses() {
        if (deferred.get() == 0) {
            return;
        }
        Throwable failure = null;
        ArrayDeque<SimAddressSpace> pending = pendingCloses.get();
        while (!pending.isEmpty()) {
            deferred.decrementAndGet();
            try {
                pending.removeFirst().close();
            } catch (Throwable e) {
                failure = addFailure(failure, e);
            }
        }
        boolean[] close = closePending.get();
        if (close[0]) {
            close[0] = false;
            deferred.decrementAndGet();
            try {
                closeMachine.run();
            } catch (Throwable e) {
                failure = addFailure(failure, e);
            }
        }
        if (failure != null) {
            throw CallbackFailures.<RuntimeException>sneaky(callbackFailures.suppressInto(failure));
        }
    }

    /** {@code next} joins {@code first} as suppressed; returns the failure to throw. */
    static Throwable addFailure(Throwable first, Throwable next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }
}
