package org.vmcore.api;

/**
 * Counters of an address space, named after the kernel's (/proc/pid/status and
 * mm->pgtables_bytes).
 *
 * @param anonPages      RssAnon, in 4 KiB pages (private anonymous pages and COW copies)
 * @param shmemPages     RssShmem, in 4 KiB pages (shared anonymous pages mapped)
 * @param hugetlbBytes   HugetlbPages as Linux counts it (hugetlb_count_add/sub): bytes of the
 *                       hugetlb entries this address space installed. A sharer that reaches a page
 *                       through a shared PMD table is not charged for it, unsharing does not move
 *                       the charge, and the address space that zaps the last entry is debited;
 *                       where that would make Linux's counter negative, vmcore stops at 0.
 *                       Migration entries count like the entries they replace.
 * @param pageTablePages page-table pages referenced, the root included (a shared PMD table counts
 *                       for every address space that points at it, as pgtables_bytes does)
 * @param pmdTables      PMD tables referenced (nr_pmds), shared ones included
 * @param vmas           number of VMAs
 */
public record MmCounters(long anonPages, long shmemPages, long hugetlbBytes, long pageTablePages, long pmdTables,
                         int vmas) {
}
