package org.vmcore.api;

/**
 * The advice {@link AddressSpace#madvise} takes: the MADV_* values of madvise(2) that vmcore
 * models. Not yet: MADV_FREE, MADV_WILLNEED, MADV_COLD and MADV_PAGEOUT (they need reclaim and
 * swap), MADV_HUGEPAGE and MADV_NOHUGEPAGE (they need transparent huge pages).
 */
public enum Advice {
    /**
     * MADV_DONTNEED: the pages of the range are dropped now; the mappings stay. The next access
     * to private anonymous memory gets zero-fill on demand (a read, the zero page), to shared
     * memory and hugetlbfs files the page-cache page again. A hugetlb range must start on a huge
     * page and is cut down to whole huge pages; a PMD table the range shares is unshared, and a
     * private mapping that owns its reservations gets one back for each page of its own that goes.
     * An mlocked VMA is refused (-EINVAL).
     */
    DONTNEED
}
