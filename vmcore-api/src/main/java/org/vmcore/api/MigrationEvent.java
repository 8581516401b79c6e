package org.vmcore.api;

/**
 * The page a migration phase is about.
 *
 * @param phase   where the migration is
 * @param oldPfn  the page being migrated
 * @param newPfn  its replacement
 * @param size    the page size
 * @param toNode  the node the replacement is on
 */
public record MigrationEvent(MigrationPhase phase, long oldPfn, long newPfn, PageSize size, int toNode) {
}
