package org.vmcore.api;

/** What try_to_unmap_one / try_to_migrate_one did to one mapping of a page. */
public enum UnmapOutcome {
    /** The address space's PMD table was shared: its PUD entry was cleared and its whole window flushed; mapcount untouched. */
    UNSHARED,
    /** The entry was replaced by a migration entry, this address space flushed, mapcount dropped. */
    MIGRATION_ENTRY,
    /** The entry was cleared (unmap without migration), this address space flushed, mapcount dropped. */
    UNMAPPED,
    /** The VMA is mlocked and the operation does not ignore mlock: the walk stopped. */
    SKIPPED_MLOCKED,
    /**
     * The page could not be unmapped from this mapping: an anonymous page without swap, or a
     * hugetlb page whose file's i_mmap_rwsem or VMA lock another thread held (a parallel fault,
     * mmap or truncation; try_to_migrate only tries them). The walk stopped.
     */
    BUSY,
    /** The VMA covers the page but this address space does not map it right now. */
    NOT_MAPPED
}
