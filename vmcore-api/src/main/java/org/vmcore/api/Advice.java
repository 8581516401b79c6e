package org.vmcore.api;

/**
 * The advice {@link AddressSpace#madvise} takes: the MADV_* values of madvise(2) that vmcore
 * models.
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
    DONTNEED,
    /**
     * MADV_FREE: private anonymous pages of the range that only this mapping maps become lazy
     * free: their entries lose the accessed and dirty bits, and reclaim ({@link #PAGEOUT}) drops
     * them unless they are written again first; until then they stay mapped and counted. Only
     * private anonymous memory takes it (-EINVAL for shared memory, hugetlb or an mlocked VMA).
     */
    FREE,
    /**
     * MADV_PAGEOUT: reclaims the private anonymous pages of the range that only this mapping
     * maps (madvise_pageout, reclaim_pages): lazy-free pages that stayed clean are dropped (the
     * next access gets zero-fill), a lazy-free page written since {@link #FREE} stops being lazy
     * free and stays, and, with a swap device, every other such page is swapped out (pswpout;
     * the next access swaps it in). Pages shared with a fork relative stay. -EINVAL for hugetlb
     * or an mlocked VMA.
     */
    PAGEOUT,
    /**
     * MADV_HUGEPAGE: the VMAs of the range may get transparent huge pages on fault when the
     * machine's mode is {@link ThpMode#MADVISE} (and keep getting them under
     * {@link ThpMode#ALWAYS}); VMAs are split at the range's ends. Private anonymous memory only
     * gets huge pages; other VMAs just carry the flag. -EINVAL for hugetlb.
     */
    HUGEPAGE,
    /**
     * MADV_NOHUGEPAGE: the VMAs of the range get no transparent huge pages on fault, whatever
     * the mode; huge pages already mapped stay. -EINVAL for hugetlb.
     */
    NOHUGEPAGE,
    /**
     * MADV_COLLAPSE: each 2 MiB-aligned range inside the range and inside one private anonymous
     * VMA is collapsed now into a transparent huge page (what khugepaged does in the background),
     * whatever the mode: its 4 KiB pages are copied into a new 2 MiB page and mapped by one PMD
     * entry. A range that cannot be collapsed (a page shared with another process or under
     * migration, no free 2 MiB block) makes the call return -EAGAIN or -ENOMEM after the others.
     */
    COLLAPSE,
    /**
     * MADV_WILLNEED: for private anonymous memory, the swapped-out pages of the range are read
     * into the swap cache (swapin_readahead; counted in pswpin) but not mapped: the next access
     * is a minor fault ({@link FaultResult#SWAP_CACHE}). Shared memory and hugetlb take it and
     * do nothing (vmcore swaps only private anonymous pages). An mlocked VMA is refused (-EINVAL).
     */
    WILLNEED,
    /**
     * MADV_COLD: the private anonymous pages of the range that only this mapping maps are
     * deactivated (madvise_cold): their entries lose the accessed bit, so the next
     * {@link Machine#reclaim} takes them before pages that were used. Contents and mappings stay.
     * -EINVAL for hugetlb or an mlocked VMA.
     */
    COLD
}
