package org.vmcore.api;

/** How {@link AddressSpace#fault} resolved a fault. */
public enum FaultResult {
    /** The entry already allowed the access (a spurious fault); nothing changed. */
    ALREADY_MAPPED,
    /** A new zeroed page was allocated and mapped (demand zero, or a hugetlb pool page). */
    NEW_PAGE,
    /** A page already in the page cache (shmem or hugetlbfs) was mapped. */
    PAGE_CACHE,
    /** The entry was already filled through a PMD table shared with another address space. */
    SHARED_TABLE,
    /** A write to a copy-on-write page copied it into a new private page. */
    COW_COPY,
    /** A write to a copy-on-write page that nobody else maps made it writable in place. */
    COW_REUSE,
    /**
     * The entry is a migration entry (or the page-cache page it would map is locked by a migration
     * and the fault may not wait for it, see {@link MigrationWaitException}): the access must wait
     * until that page's migration ends. {@code AddressSpace.fault} returns it at once; a CPU's
     * access waits and retries.
     */
    MIGRATION_WAIT,
    /**
     * A read of private anonymous memory mapped the shared zero page, read-only
     * (do_anonymous_page): no page was allocated and nothing counts in RSS; the first write to
     * it is a copy-on-write fault that allocates a zeroed page ({@link #COW_COPY}).
     */
    ZERO_PAGE,
    /**
     * The entry was a swap entry and the page was read from the swap device into a new page
     * (do_swap_page, a major fault): mapped writable when no other entry or mapping shares it,
     * else read-only, a write then copying it at once.
     */
    SWAP_IN,
    /**
     * The entry was a swap entry whose page was still in the swap cache (being swapped out, read
     * ahead, or swapped in by a fork relative): mapped without I/O, a minor fault.
     */
    SWAP_CACHE
}
