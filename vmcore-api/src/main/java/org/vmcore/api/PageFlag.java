package org.vmcore.api;

/**
 * The flags of a page as {@link Page#flags()} reports them, named after the kernel's page flags
 * ({@code PG_*} and the page types behind {@code PageAnon}, {@code PageHuge}, {@code PageTable} and
 * {@code PageBuddy}), as /proc/kpageflags shows them.
 */
public enum PageFlag {
    /** PG_locked: the folio lock is held (migration holds it from unmap to remap). */
    LOCKED,
    /** PG_referenced. */
    REFERENCED,
    /** PG_uptodate: the contents are valid. */
    UPTODATE,
    /** PG_dirty: set when a dirty entry mapping the page is cleared. */
    DIRTY,
    /** PG_lru. */
    LRU,
    /** PG_head: the first frame of a 2 MiB or 1 GiB folio. */
    HEAD,
    /** PageAnon: the page's mapping is an anon_vma (KPF_ANON). */
    ANON,
    /** PageHuge: a hugetlb folio, in use or free in its pool (KPF_HUGE). */
    HUGETLB,
    /** PageTable: the frame holds a page table (KPF_PGTABLE). */
    PGTABLE,
    /** PG_hwpoison: poisoned by soft offline, never used again. */
    HWPOISON,
    /** PG_reserved: taken out of use (offlined or poisoned). */
    RESERVED,
    /** PG_isolated: taken off the LRU for migration. */
    ISOLATED,
    /** PG_mlocked: mapped by a VM_LOCKED mapping. */
    MLOCKED,
    /** A page of a transparent huge page (KPF_THP): an anonymous 2 MiB folio, mapped by a PMD entry or by PTEs. */
    THP,
    /**
     * PageBuddy: free in the buddy allocator (KPF_BUDDY). vmcore reports it for every free frame,
     * where the kernel marks only the first frame of each free block.
     */
    BUDDY
}
