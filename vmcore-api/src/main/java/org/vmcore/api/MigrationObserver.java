package org.vmcore.api;

/**
 * Called by the migrating thread at each {@link MigrationPhase} of each page, with the engine's
 * lock held, so that a test can run other CPUs' accesses at that exact point, deterministically,
 * in the same thread. An access that meets one of this migration's migration entries cannot
 * wait for it from inside the observer: it throws {@link MigrationWaitException} instead (the
 * kernel would put the CPU to sleep until the migration ends).
 */
@FunctionalInterface
public interface MigrationObserver {
    /**
     * The migration reached {@code event.phase()}.
     *
     * @param event where the migration is
     */
    void onPhase(MigrationEvent event);
}
