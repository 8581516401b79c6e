package org.vmcore.api;

/**
 * Called by the migrating thread at each {@link MigrationPhase} of each page, with the engine's
 * lock held, so that a test can run other CPUs' accesses at that exact point, deterministically,
 * in the same thread. An access that meets one of this migration's migration entries cannot
 * wait for it from inside the observer: it throws {@link MigrationWaitException} instead (the
 * kernel would put the CPU to sleep until the migration ends).
 *
 * <p>The observer may throw. A throw at {@link MigrationPhase#AFTER_UNMAP} or
 * {@link MigrationPhase#BEFORE_COPY} rolls the page's migration back (its mappings point at the
 * old page again, the target is freed, the page counts as pgmigrate_fail); a throw at
 * {@link MigrationPhase#AFTER_COPY} or {@link MigrationPhase#AFTER_REMAP} lets the migration
 * complete. Either way the observer is not called again for that page, and the exception ends
 * the {@link MigrationService} call (pages after it are not migrated).
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
