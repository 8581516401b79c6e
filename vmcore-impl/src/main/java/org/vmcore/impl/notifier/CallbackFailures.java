package org.vmcore.impl.notifier;

/**
 * The exceptions user callbacks (MMU notifiers) threw while an operation had to go on: the
 * operation completes, every remaining notifier still gets its call, and the first exception is
 * rethrown at the end of the public operation with the later ones suppressed into it.
 *
 * <p>Used under the machine lock only, by the thread that runs the operation.
 */
public final class CallbackFailures {
    private RuntimeException first;

    /** Records what a callback threw; an {@link Error} is wrapped so that it can be rethrown unchecked later. */
    public void add(Throwable t) {
        RuntimeException e = t instanceof RuntimeException r ? r : new CallbackException(t);
        if (first == null) {
            first = e;
        } else if (first != e) {
            first.addSuppressed(e);
        }
    }

    /** Whether a failure is waiting to be rethrown. */
    public boolean any() {
        return first != null;
    }

    /** The collected failure, or null; forgets it. */
    public RuntimeException take() {
        RuntimeException e = first;
        first = null;
        return e;
    }

    /** Throws the collected failure, if any, and forgets it. */
    public void rethrow() {
        RuntimeException e = take();
        if (e != null) {
            throw e;
        }
    }

    /** Adds the collected failure, if any, to {@code primary} as suppressed, and forgets it; returns {@code primary}. */
    public <T extends Throwable> T suppressInto(T primary) {
        RuntimeException e = take();
        if (e != null && e != primary) {
            primary.addSuppressed(e);
        }
        return primary;
    }

    /** A callback threw something that is not a RuntimeException (an Error, or a checked exception thrown sneakily). */
    public static final class CallbackException extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CallbackException(Throwable cause) {
            super("a user callback threw " + cause, cause);
        }
    }
}
