package org.vmcore.impl.base;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.RaceHook;
import org.vmcore.api.RacePoint;

/**
 * The hooks installed at the machine's {@link RacePoint}s. A kernel path calls {@link #reach}
 * where it passes a point; with no hook there that is one volatile read.
 *
 * <p>Every point sits where the path has changed nothing it would have to undo, so what a hook
 * throws simply ends the operation there, as a failure at that point would, and reaches the
 * caller as thrown.
 */
public final class RaceHooks {
    // Replaced whole: the kernel paths read it without a lock.
    private volatile RaceHook[] hooks = new RaceHook[RacePoint.values().length];

    /** Installs {@code hook} at {@code point}; null removes it. */
    public synchronized void set(RacePoint point, RaceHook hook) {
        RaceHook[] next = hooks.clone();
        next[point.ordinal()] = hook;
        hooks = next;
    }

    /** The current thread passes {@code point} in an operation on {@code mm} at {@code address}. */
    public void reach(RacePoint point, AddressSpace mm, long address) {
        RaceHook hook = hooks[point.ordinal()];
        if (hook == null) {
            return;
        }
        try {
            hook.reached(point, mm, address);
        } catch (Throwable e) {
            throw RaceHooks.<RuntimeException>sneaky(e);
        }
    }

    /** Rethrows {@code t} as it is, checked or not. */
    @SuppressWarnings("unchecked")
    private static <E extends Throwable> E sneaky(Throwable t) throws E {
        throw (E) t;
    }
}
