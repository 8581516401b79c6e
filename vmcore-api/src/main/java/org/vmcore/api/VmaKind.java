package org.vmcore.api;

/** What backs a VMA. */
public enum VmaKind {
    /** MAP_PRIVATE|MAP_ANONYMOUS: demand-zero pages, copy-on-write after fork. */
    ANONYMOUS_PRIVATE,
    /** MAP_SHARED|MAP_ANONYMOUS: shmem pages shared with forked children. */
    ANONYMOUS_SHARED,
    /** MAP_SHARED of a hugetlbfs file (VM_MAYSHARE): may share PMD tables. */
    HUGETLB_SHARED,
    /** MAP_PRIVATE of a hugetlbfs file: file pages read, copy-on-write on store. */
    HUGETLB_PRIVATE;

    /**
     * Whether pages come from a hugetlb pool.
     *
     * @return whether pages come from a hugetlb pool
     */
    public boolean isHugetlb() {
        return this == HUGETLB_SHARED || this == HUGETLB_PRIVATE;
    }

    /**
     * Whether the mapping is MAP_SHARED (VM_MAYSHARE).
     *
     * @return whether the mapping is MAP_SHARED (VM_MAYSHARE)
     */
    public boolean isShared() {
        return this == ANONYMOUS_SHARED || this == HUGETLB_SHARED;
    }
}
