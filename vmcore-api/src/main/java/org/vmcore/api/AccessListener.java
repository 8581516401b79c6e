package org.vmcore.api;

/**
 * Hears how each access of a batch ({@link Cpu#loadAll}, {@link Cpu#storeAll},
 * {@link Cpu#replay}) was translated and what it cost; set with {@link Cpu#accessListener}.
 *
 * <p>The CPU records outcomes while it runs the batch and hands them to the listener in access
 * order, in bursts of up to {@value Cpu#OUTCOME_BURST} accesses, always before the batch
 * returns, and outside the window in which TLB shootdowns are held off. So a listener may do
 * anything a user thread may, including mm operations and accesses through this CPU; an access
 * it makes is not reported to it. When it is called for access {@code i}, later accesses of the
 * same burst have already run.
 *
 * <p>If the listener throws, the batch stops: the accesses of the burst being delivered have
 * taken effect, no later one runs, the exception reaches the caller of the batch, and the CPU
 * is left consistent.
 */
@FunctionalInterface
public interface AccessListener {
    /**
     * Called once per access of a batch, in order.
     *
     * @param outcome the access's outcome; valid only during this call (the CPU reuses it)
     */
    void accessed(AccessOutcome outcome);
}
