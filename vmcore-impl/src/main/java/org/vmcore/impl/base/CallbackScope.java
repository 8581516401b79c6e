package org.vmcore.impl.base;

/**
 * Where user code called from inside the engine is accounted: while it runs the thread is inside
 * a callback (a close it asks for waits for the operation below), and what it throws is kept
 * and rethrown when the public operation ends. The machine's callback-failure record implements
 * it; lower layers that call user code receive it without depending on that record.
 */
public interface CallbackScope {
    /** The engine calls user code now. */
    void enter();

    /** The user code of the matching {@link #enter()} returned or threw. */
    void exit();

    /** Records what user code threw, to be rethrown when the operation ends. */
    void add(Throwable t);
}
