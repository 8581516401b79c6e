package org.vmcore.impl.base;

/**
 * How reclaim splits transparent huge pages (the migration service does it): split_huge_page of
 * one, and the deferred split shrinker over the partly unmapped ones.
 */
public interface HugePageSplitter {
    /**
     * split_huge_page of the huge page headed by {@code head}, under the machine lock.
     *
     * @param head the head frame
     * @return 0, or a negative errno when it was not split
     */
    int split(long head);

    /** thp_swpout_fallback: reclaim split a huge page to swap its pages one by one. */
    void countSwapoutFallback();

    /** deferred_split_scan over every queued huge page, under the machine lock. */
    void runDeferred();

    /**
     * folio_referenced for the huge page headed by {@code head}: whether it was accessed since
     * the last look (the accessed bits are cleared: a second chance) or an mlocked VMA maps it.
     *
     * @param head the head frame
     * @return true when reclaim must pass it by now
     */
    boolean referencedOrLocked(long head);
}
