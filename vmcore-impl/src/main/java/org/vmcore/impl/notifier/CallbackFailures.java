package org.vmcore.impl.notifier;

import java.util.concurrent.atomic.AtomicInteger;

import org.vmcore.impl.base.CallbackScope;

/**
 * User callbacks (MMU notifiers, the migration observer, rmap visitors) as the engine's thread
 * meets them: how deep it is inside one right now, and what they threw while an operation had to
 * go on. The operation completes, every remaining notifier still gets its call, and the first
 * exception is rethrown at the end of the public operation, as it was thrown (an {@link Error}
 * stays an Error), with the later ones suppressed into it.
 *
 * <p>Kept per thread: operations on different address spaces run in parallel, each on its own
 * thread, and each collects what its own callbacks threw.
 */
public final class CallbackFailures implements CallbackScope {
    private final ThreadLocal<State> state = ThreadLocal.withInitial(State::new);
    // Over all threads: callbacks running plus failures held. While it is 0 no thread is inside a
    // callback or owes a rethrow, and the per-thread state need not be looked up at all.
    private final AtomicInteger activity = new AtomicInteger();

    /** One thread's callback depth and collected failure. */
    private static final class State {
        Throwable first;
        int depth;
    }

    public CallbackFailures() {
    }

    /** The engine calls user code: between this and {@link #exit()} it is inside a callback. */
    @Override
    public void enter() {
        state.get().depth++;
        activity.incrementAndGet();
    }

    /** The user code of the matching {@link #enter()} returned or threw. */
    @Override
    public void exit() {
        state.get().depth--;
        activity.decrementAndGet();
    }

    /**
     * Whether the current operation is running inside a user callback: then a close it asks for
     * waits until the operation that called back has ended (the engine is mid-change below it).
     */
    public boolean inCallback() {
        return activity.get() != 0 && state.get().depth > 0;
    }

    /** Records what a callback threw. */
    @Override
    public void add(Throwable t) {
        State st = state.get();
        if (st.first == null) {
            st.first = t;
            activity.incrementAndGet();
        } else if (st.first != t) {
            st.first.addSuppressed(t);
        }
    }

    /** Whether a failure is waiting to be rethrown. */
    public boolean any() {
        return activity.get() != 0 && state.get().first != null;
    }

    /** The collected failure, or null; forgets it. */
    public Throwable take() {
        if (activity.get() == 0) {
            return null;
        }
        State st = state.get();
        Throwable e = st.first;
        if (e != null) {
            st.first = null;
            activity.decrementAndGet();
        }
        return e;
    }

    /** Throws the collected failure, if any, as it was thrown, and forgets it. */
    public void rethrow() {
        Throwable e = take();
        if (e != null) {
            throw CallbackFailures.<RuntimeException>sneaky(e);
        }
    }

    /** Adds the collected failure, if any, to {@code primary} as suppressed, and forgets it; returns {@code primary}. */
    public <T extends Throwable> T suppressInto(T primary) {
        Throwable e = take();
        if (e != null && e != primary) {
            primary.addSuppressed(e);
        }
        return primary;
    }

    /**
     * Rethrows {@code t} unchanged whatever its type: a callback's checked exception (thrown
     * sneakily) reaches the caller as the callback threw it, never wrapped in an engine class.
     */
    @SuppressWarnings("unchecked")
    public static <E extends Throwable> E sneaky(Throwable t) throws E {
        throw (E) t;
    }
}
