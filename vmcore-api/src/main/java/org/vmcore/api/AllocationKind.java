package org.vmcore.api;

/** What an allocation is for, for fault injection ({@link Machine#failNthAllocation}). */
public enum AllocationKind {
    /** A frame from a buddy allocator for data: anonymous, shmem and COW pages, migration targets. */
    FRAME,
    /** A frame for a page table. */
    TABLE,
    /** A page from a hugetlb pool. */
    HUGE_PAGE
}
