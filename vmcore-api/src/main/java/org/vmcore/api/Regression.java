package org.vmcore.api;

/**
 * Historical kernel behaviours that a {@link Machine} can be switched back to, one by one, to
 * reproduce the bugs that later fixes removed. None is enabled by default: a machine behaves
 * like today's upstream kernel.
 */
public enum Regression {
    /**
     * Before "mm: migration: fix migration of huge PMD shared pages" (017b1660df89, 2018): the
     * unmap path of migration does not unshare a shared PMD table, so it clears the shared
     * entry, flushes and notifies only the first address space it visits, and stops because the
     * huge page's mapcount reaches zero. The other sharers keep stale TLB entries.
     */
    PRE_017B1660,

    /**
     * Before "hugetlb: take PMD sharing into account when flushing tlb/caches" (dff11abe280b,
     * 2018), the follow-up to 017b1660df89: unmap_hugepage_range (truncation of a hugetlbfs file)
     * and hugetlb_change_protection (mprotect) announce to the MMU notifiers only the range they
     * were asked for, not the whole PUD window that unsharing a PMD table removes from the
     * address space; hugetlb_change_protection also flushes the CPU TLBs over that range only.
     * A secondary MMU that forgets translations in invalidateRangeStart (a KVM shadow table)
     * keeps the rest of the window. The CPU flush of an unshared window in the unmap path
     * (a4a118f2eead, 2021) is a later, separate fix and stays unless {@link #PRE_A4A118F2} is
     * enabled too.
     */
    PRE_DFF11ABE,

    /**
     * Before "hugetlbfs: flush TLBs correctly after huge_pmd_unshare" (a4a118f2eead, 2021,
     * CVE-2021-4002): __unmap_hugepage_range (truncation of a hugetlbfs file, munmap) unshares a
     * shared PMD table but gathers for its TLB flush only the entries it cleared itself, not the
     * whole PUD window huge_pmd_unshare removed from the address space; when it cleared nothing
     * it flushes nothing. The CPUs (and device TLBs) of the unsharing address space keep their
     * translations of the window's huge pages, and once the file is truncated further those pages
     * are freed and reused while stores through the stale entries still land in them. The notifier
     * range stays widened (dff11abe280b) unless {@link #PRE_DFF11ABE} is enabled too.
     */
    PRE_A4A118F2,

    /**
     * Before "mm: hugetlb: independent PMD page table shared count" (59d9094df3d7, 2024):
     * huge_pmd_share counts the sharers of a PMD table in the table page's refcount, and
     * huge_pmd_unshare takes a table as shared when its refcount is above one. A transient
     * reference on the table page, as a PFN walker takes one ({@link PhysicalMemoryView#tryGetPage}:
     * page_idle, DAMON, split_huge_pages, memory offlining), makes the last user's table look
     * shared: unmapping the window only unhooks it, so the table page and the huge pages its
     * entries map are never freed.
     */
    PRE_59D9094D,

    /**
     * Before "hugetlbfs: use i_mmap_rwsem for more pmd sharing synchronization" (c0d0381ade79,
     * 2020; today's kernels hold the hugetlb VMA lock of 40549ba8f8e0 instead): hugetlb_fault looks
     * up, and may share, its PMD table (huge_pte_alloc) without holding anything that keeps the
     * table from being unshared, then fills the entry it found. A truncate (or another path that
     * calls huge_pmd_unshare) between the two unshares the faulting address space from the table;
     * once the last sibling lets go the table is freed, and the fault writes its entry through
     * the freed table: the page is mapped nowhere the faulting process can reach, and the write
     * lands in a page-table frame that may already serve another table. Replay it at
     * {@link RacePoint#HUGETLB_FAULT_AFTER_PTE_ALLOC}.
     */
    PRE_C0D0381A,

    /**
     * Before "mm/hugetlb: fix huge_pmd_unshare() vs GUP-fast race" (1013af4f585f, 2025;
     * CVE-2025-38085): huge_pmd_unshare drops the unsharing process's use of a shared PMD table
     * without waiting for its lockless walkers. A GUP-fast walk of that process that has already
     * read the PUD entry goes on reading the table after the last sibling has freed it and
     * another table (of another process) has taken its frame: it returns a page of that other
     * process. Replay it at {@link RacePoint#GUP_FAST_AFTER_PUD}.
     */
    PRE_1013AF4F
}
