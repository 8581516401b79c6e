package org.vmcore.api;

/** The points of one page's migration at which a {@link MigrationObserver} is called. */
public enum MigrationPhase {
    /** Every mapping was unshared or replaced by a migration entry, and flushed. */
    AFTER_UNMAP,
    /** References were checked; the contents are about to be copied. */
    BEFORE_COPY,
    /** The contents and the page-cache slot were moved to the new page. */
    AFTER_COPY,
    /** The migration entries were replaced by entries to the new page (or the old one on failure). */
    AFTER_REMAP
}
