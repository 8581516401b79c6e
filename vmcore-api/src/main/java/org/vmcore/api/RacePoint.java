package org.vmcore.api;

/**
 * Named points inside vmcore's kernel paths where a test can stop the thread that reaches them
 * and run another thread's operation, so that a race between two kernel paths is replayed
 * exactly, step by step, instead of by luck. Each point names where it sits in the kernel path
 * it models; a hook installed with {@link Machine#setRaceHook} runs there on the thread that
 * reaches it, holding the locks that path holds at that point in Linux (and no more).
 *
 * <p>{@link RacePause} is a ready-made hook that parks the first thread to arrive until the
 * test releases it.
 */
public enum RacePoint {
    /**
     * The page fault (handle_mm_fault): the VMA has been looked up under the mmap_lock, the
     * page-table lock is not yet taken. Hook arguments: the faulting address space and address.
     */
    FAULT_AFTER_VMA_LOOKUP,
    /**
     * hugetlb_fault: huge_pte_alloc has returned the PMD slot for the address (sharing a sibling's
     * PMD table when it could) and the fault has read the entry, but has not taken the table's
     * lock. With the fix of c0d0381ade79 (today: the hugetlb VMA lock) the fault holds the lock
     * that keeps the table from being unshared here; without it the table may be unshared, freed
     * or reused under the fault. Hook arguments: the faulting address space and address.
     */
    HUGETLB_FAULT_AFTER_PTE_ALLOC,
    /**
     * __split_vma of a hugetlb VMA (hugetlb_split): the PMD table of the window around the split
     * address has been unshared (if it was shared), the VMA is not yet split. Since 081056dc00a2
     * (CVE-2025-38084) the hugetlb VMA lock and i_mmap_rwsem are held from the unshare through
     * the split, so no fault, of this process or another, can share the window's table again in
     * between; vmcore holds them as the fix does. Hook arguments: the splitting address space and
     * the split address.
     */
    HUGETLB_SPLIT_AFTER_UNSHARE,
    /**
     * GUP-fast ({@link AddressSpace#getUserPageFast}): the lockless walk has read the PUD entry
     * and is about to read the PMD table it points to, holding no lock, as Linux walks with
     * interrupts off. Since 1013af4f585f an unshare of that table waits here for the walk to end;
     * before it, the table could be freed and reused by another process under the walk. Hook
     * arguments: the walked address space and address.
     */
    GUP_FAST_AFTER_PUD
}
