package org.vmcore.impl.base;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.RaceHook;
import org.vmcore.api.RacePoint;

/**
 * The hooks installed at the machine's {@link RacePoint}s. A kernel path calls {@link #reach}
 * where it passes a point; with no hook there that is one volatile read.
 *
 * <p>A hook is user code like any other callback: while it runs the thread is inside a callback,
 * and what it throws is kept and rethrown when the operation, which goes on, has completed.
 */
public final class RaceHooks {
    // Replaced whole: the kernel paths read it without a lock.
    private volatile RaceHook[] hooks = new RaceHook[RacePoint.values().length];
    private volatile CallbackScope scope;

    /** Set once by the machine: where hooks are accounted as callbacks. */
    public void setScope(CallbackScope scope) {
        this.scope = scope;
    }

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
        CallbackScope s = scope;
        s.enter();
        try {
            hook.reached(point, mm, address);
        } catch (Throwable e) {
            s.add(e);
        } finally {
            s.exit();
        }
    }

    /**
     * The machine is closing: every installed hook hears it ({@link RaceHook#machineClosing}), so
     * that one holding a thread lets it go and the close can wait for that thread's operation.
     */
    public void machineClosing() {
        for (RaceHook hook : hooks) {
            if (hook != null) {
                try {
                    hook.machineClosing();
                } catch (Throwable ignored) {
                    // the close goes on whatever a hook does here
                }
            }
        }
    }
}
