package org.vmcore.impl.base;

/**
 * The end of every public mm operation, as the machine defines it: the invariant check (when
 * configured), the closes that user callbacks asked for while the operation was below them, and
 * the rethrow of what those callbacks threw. The machine supplies it; lower layers only call it,
 * under the machine lock, on the engine's thread.
 */
public interface OperationHook {
    /** {@code operation} has finished its work: checks the invariants, then {@link #operationDone()}. */
    void afterOperation(String operation);

    /**
     * A page fault at {@code va} has finished its work: as {@link #afterOperation}, naming the
     * operation only when something will read the name (a fault is too frequent to format it).
     */
    void afterFault(long va);

    /**
     * The operation has ended without the invariant check: unless it runs inside a user callback
     * (or a migration) of an outer operation, deferred closes happen now; then what callbacks
     * threw is rethrown.
     */
    void operationDone();

    /**
     * The operation ends with {@code e}: deferred closes still happen (unless nested in a callback)
     * and what callbacks threw is suppressed into {@code e}, which is thrown as it is. Declared to
     * return so that callers can write {@code throw hook.operationFailed(e)}.
     */
    RuntimeException operationFailed(Throwable e);
}
