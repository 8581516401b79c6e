package org.vmcore.api;

/**
 * What runs when a thread reaches a {@link RacePoint} (see {@link Machine#setRaceHook}). It runs
 * on that thread, inside the kernel path, and may block (to let another thread run) or throw:
 * what it throws reaches the caller of the operation when that operation has completed, as with
 * every other callback.
 */
@FunctionalInterface
public interface RaceHook {
    /**
     * The current thread has reached {@code point}.
     *
     * @param point the point reached
     * @param addressSpace the address space of the operation at that point
     * @param address the virtual address the operation is working on there
     * @throws Exception anything; it reaches the operation's caller once the operation completes
     */
    void reached(RacePoint point, AddressSpace addressSpace, long address) throws Exception;

    /**
     * The machine is closing. A hook that holds a thread must let it go here: the close waits for
     * the operations in progress. The default does nothing.
     */
    default void machineClosing() {
    }
}
