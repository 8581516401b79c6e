package org.vmcore.api;

import java.util.Locale;

/**
 * Every counter {@link Machine#vmstat()} reports, in the order it reports them. Each constant is
 * the /proc/vmstat name in upper case, as the kernel spells its {@code vm_event_item}s
 * ({@code PGFAULT} prints as {@code pgfault}); {@link #procName()} gives the printed name. The
 * ones without a kernel twin say so.
 */
public enum VmstatCounter {
    /**
     * Page faults that reached the fault handler (handle_mm_fault), failed ones included, as
     * mm_account_fault counts PGFAULT: from CPU accesses, {@link AddressSpace#fault} and
     * MAP_POPULATE. A fault refused before it (no VMA, protection) does not count.
     */
    PGFAULT,
    /** Pages migrated successfully, counted in 4 KiB pages (a 2 MiB page counts 512). */
    PGMIGRATE_SUCCESS,
    /** Pages whose migration failed, counted in 4 KiB pages. */
    PGMIGRATE_FAIL,
    /** Hugetlb folios migrated successfully, one per folio (vmcore's own). */
    HUGETLB_MIGRATE_SUCCESS,
    /** Hugetlb folios whose migration failed, one per folio (vmcore's own). */
    HUGETLB_MIGRATE_FAIL,
    /** TLB flushes a CPU sent to other CPUs, one per flush however many CPUs it reached. */
    NR_TLB_REMOTE_FLUSH,
    /** TLB flushes received from another CPU or the engine, one per receiving CPU. */
    NR_TLB_REMOTE_FLUSH_RECEIVED,
    /** Local flushes of a whole address space on the initiating CPU. */
    NR_TLB_LOCAL_FLUSH_ALL,
    /** Local flushes of single pages or strided ranges on the initiating CPU. */
    NR_TLB_LOCAL_FLUSH_ONE,
    /** TLB hits and secondary-MMU translations the stale-translation detector caught (vmcore's own). */
    STALE_TRANSLATION_USES,
    /** Pages MADV_FREE made lazy free (counted when marked; the kernel counts them when its LRU batch drains). */
    PGLAZYFREE,
    /** Lazy-free pages reclaim dropped while clean. */
    PGLAZYFREED,
    /** Transparent huge pages a fault allocated and mapped with one PMD entry. */
    THP_FAULT_ALLOC,
    /** Faults that wanted a transparent huge page and fell back to 4 KiB pages (no free 2 MiB block). */
    THP_FAULT_FALLBACK,
    /** Collapses into a new transparent huge page (khugepaged or MADV_COLLAPSE). */
    THP_COLLAPSE_ALLOC,
    /** PMD entries of transparent huge pages split into PTE tables (split_huge_pmd). */
    THP_SPLIT_PMD,
    /** Transparent huge pages split into 4 KiB pages (split_huge_page). */
    THP_SPLIT_PAGE,
    /** Transparent huge pages queued for a later split because part of them was unmapped. */
    THP_DEFERRED_SPLIT_PAGE,
    /** Huge zero pages allocated (one per machine, on the first read fault that maps one). */
    THP_ZERO_PAGE_ALLOC,
    /** Transparent huge pages migrated whole, with PMD migration entries. */
    THP_MIGRATION_SUCCESS,
    /** Transparent huge pages whose migration failed. */
    THP_MIGRATION_FAIL,
    /**
     * Transparent huge pages reclaim (or MADV_PAGEOUT) split to swap their 4 KiB pages one by one,
     * since vmcore, like a kernel without CONFIG_THP_SWAP, does not swap a huge page whole.
     */
    THP_SWPOUT_FALLBACK,
    /** Pages read from the swap device (swap-in faults that missed the swap cache, and MADV_WILLNEED readahead). */
    PSWPIN,
    /** Pages written to the swap device by reclaim (a clean page already in the swap cache is freed without a write). */
    PSWPOUT;

    private final String procName = name().toLowerCase(Locale.ROOT);

    /**
     * The name /proc/vmstat prints, the constant in lower case: {@code pgfault}.
     *
     * @return the name /proc/vmstat prints
     */
    public String procName() {
        return procName;
    }

    /**
     * The counter /proc/vmstat prints as {@code procName}.
     *
     * @param procName a name as {@link #procName()} gives it, for example {@code pgmigrate_success}
     * @return the counter of that name
     * @throws InvalidArgumentException if no counter has that name
     */
    public static VmstatCounter ofProcName(String procName) {
        for (VmstatCounter c : values()) {
            if (c.procName.equals(procName)) {
                return c;
            }
        }
        throw new InvalidArgumentException("procName", procName, "must be a vmstat name vmcore reports (pgfault, pgmigrate_success,"
                + " ...; see VmstatCounter)");
    }
}
