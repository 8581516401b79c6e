package org.vmcore.api;

/**
 * A level of the x86-64 page tables, named as the kernel names its entries: a PTE lives in a
 * page table, a PMD entry in a page directory, and so on up to the PGD, the table CR3 points
 * at. With 4-level paging the P4D level is folded into the PGD and never reported.
 */
public enum PageTableLevel {
    /** A page-table entry, mapping 4 KiB (the SDM's PTE). */
    PTE,
    /** A page-middle-directory entry, pointing at a page table or mapping 2 MiB (the SDM's PDE). */
    PMD,
    /** A page-upper-directory entry, pointing at a PMD table or mapping 1 GiB (the SDM's PDPTE). */
    PUD,
    /** A fourth-level directory entry (the SDM's PML4E with 5-level paging). */
    P4D,
    /** The top level, the table CR3 points at (PML4 with 4-level paging, PML5 with 5-level). */
    PGD
}
