package org.vmcore.impl.lock;

import java.io.Serial;

/**
 * Thrown, when lockdep is enabled, on a lock-order inversion, on a second instance of a class
 * taken without nesting annotation, or on an unbalanced release. An {@link AssertionError}: like a
 * failed {@code assert}, it reports a bug in the engine, not a condition a caller handles. The
 * message is also kept in {@link LockDep#reports()}, so a test sees it even if engine code
 * catches the error.
 */
public final class LockOrderViolation extends AssertionError {
    @Serial
    private static final long serialVersionUID = 1L;

    /** A violation described by {@code message}. */
    public LockOrderViolation(String message) {
        super(message);
    }
}
