package org.vmcore.impl.base;

/**
 * What runs at the end of every public mm operation (the invariant check, when configured, and
 * the rethrow of what user callbacks threw). The machine supplies it; lower layers only call it.
 */
@FunctionalInterface
public interface OperationHook {
    /** Called under the machine lock once {@code operation} has finished its work. */
    void afterOperation(String operation);
}
