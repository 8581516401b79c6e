package org.vmcore.api;

/**
 * The levels of a page table, top to bottom, named as the kernel names them. With 4-level paging
 * the kernel folds the p4d into the pgd: the root table (the PML4) is the {@code PGD} and there is
 * no {@code P4D} level. With 5-level paging the root (the PML5) is the {@code PGD} and the PML4 is
 * the {@code P4D}.
 */
public enum PageTableLevel {
    /** The root table CR3 points to: the PML4, or the PML5 with 5-level paging. */
    PGD,
    /** The PML4 under a PML5; folded away with 4-level paging. */
    P4D,
    /** The page upper directory (PDPT): 1 GiB per entry, may hold 1 GiB leaves. */
    PUD,
    /** The page middle directory (PD): 2 MiB per entry, may hold 2 MiB leaves. */
    PMD,
    /** The page table (PT): 4 KiB leaves. */
    PTE
}
