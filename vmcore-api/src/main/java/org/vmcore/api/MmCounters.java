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
 * @param minorFaults    min_flt as mm_account_fault counts it, per address space here (Linux counts
 *                       per task): faults handled without I/O (first touch of anonymous, shmem
 *                       and hugetlbfs pages, copy-on-write, a shared PMD table installed, a
 *                       migration entry waited for, an entry another CPU installed first), from CPU
 *                       accesses, {@link AddressSpace#fault} and MAP_POPULATE. A fault that fails
 *                       (out of memory, SIGBUS) counts in pgfault but not here; one refused before
 *                       the handler (no VMA, protection) counts in neither. A forked child starts at 0;
 *                       a MAP_POPULATE that runs out of memory and unmaps its range again takes
 *                       its minor faults back (pgfault keeps them).
 * @param majorFaults    maj_flt: faults that needed I/O, which in vmcore are the swap-ins that read
 *                       the swap device ({@link FaultResult#SWAP_IN}); one that found its page in the
 *                       swap cache is minor ({@link FaultResult#SWAP_CACHE})
 * @param anonHugePages  AnonHugePages (smaps), in 4 KiB pages: anonymous memory this address
 *                       space maps with PMD entries of transparent huge pages (also counted in
 *                       {@code anonPages}); a huge page split to PTEs stops counting here
 * @param swapPages      VmSwap (MM_SWAPENTS), in 4 KiB pages: swap entries in this address space's
 *                       page tables
 */
public record MmCounters(long anonPages, long shmemPages, long hugetlbBytes, long pageTablePages, long pmdTables,
                         int vmas, long minorFaults, long majorFaults, long anonHugePages, long swapPages) {
    /**
     * Counters without huge pages or swap entries.
     *
     * @param anonPages      RssAnon
     * @param shmemPages     RssShmem
     * @param hugetlbBytes   HugetlbPages
     * @param pageTablePages page-table pages
     * @param pmdTables      PMD tables
     * @param vmas           number of VMAs
     * @param minorFaults    min_flt
     * @param majorFaults    maj_flt
     */
    public MmCounters(long anonPages, long shmemPages, long hugetlbBytes, long pageTablePages, long pmdTables, int vmas,
                      long minorFaults, long majorFaults) {
        this(anonPages, shmemPages, hugetlbBytes, pageTablePages, pmdTables, vmas, minorFaults, majorFaults, 0, 0);
    }
}
