package org.vmcore.api;

import java.util.Map;

/**
 * Page migration between NUMA nodes, as the kernel does it: each page is locked, unmapped with
 * migration entries (unsharing shared PMD tables first), its references checked, its contents
 * copied, the migration entries replaced by entries to the new page, and the old page freed. A
 * page that cannot be migrated is put back unchanged. CPU accesses that meet a migration entry
 * wait until that page's migration ends.
 */
public interface MigrationService {
    /** MPOL_MF_MOVE: move only pages that one process maps (mapcount 1). */
    int MPOL_MF_MOVE = 1 << 1;
    /** MPOL_MF_MOVE_ALL: move pages whoever maps them (CAP_SYS_NICE). */
    int MPOL_MF_MOVE_ALL = 1 << 2;

    /**
     * migrate_pages(2): moves the pages {@code addressSpace} maps on node {@code fromNodes[i]} to
     * {@code toNodes[i]}. With {@link #MPOL_MF_MOVE} only pages with mapcount 1 move (a page
     * behind a shared PMD table has mapcount 1 and moves).
     *
     * @param addressSpace the address space whose pages move
     * @param fromNodes the source nodes
     * @param toNodes the target node for each source node
     * @param flags {@link #MPOL_MF_MOVE} or {@link #MPOL_MF_MOVE_ALL}
     * @return the number of pages that could not be moved (0 when all were)
     * @throws InvalidArgumentException if a node does not exist, the arrays differ in length, or
     *                                  flags is not MOVE or MOVE_ALL
     */
    int migratePages(AddressSpace addressSpace, int[] fromNodes, int[] toNodes, int flags);

    /**
     * move_pages(2): moves the page at each address to the node given for it, or with
     * {@code nodes == null} only reports the node each page is on. Status per address: the node,
     * or -EFAULT (no VMA), -ENOENT (not present), -EACCES (mapped by several processes without
     * MOVE_ALL, or a hugetlb tail address), -ENOMEM, -EBUSY (isolation or migration failed).
     *
     * <p>As do_pages_move: consecutive queued pages with one target node form a batch, migrated
     * when a page is not queued, the node changes, or the array ends. Lookup and isolation errors
     * are reported in the status only and do not count in the return value. The first batch that
     * fails stops the call; see {@link MovePagesResult} for the return value and the status
     * ({@link MovePagesResult#NOT_ATTEMPTED}) of the pages after it.
     *
     * @param addressSpace the address space the addresses belong to
     * @param addresses the virtual addresses of the pages
     * @param nodes the target node of each address, or null to only query
     * @param flags {@link #MPOL_MF_MOVE} or {@link #MPOL_MF_MOVE_ALL}
     * @return the pages of a failed batch not migrated plus those not attempted (0 when no batch
     *         failed), and a status per address
     * @throws InvalidArgumentException if the arrays differ in length, a node does not exist
     *                                  (the kernel's -ENODEV) or flags are wrong
     */
    MovePagesResult movePages(AddressSpace addressSpace, long[] addresses, int[] nodes, int flags);

    /**
     * split_huge_page for every transparent huge page mapped in {@code [start, end)} of the
     * address space (the kernel's debugfs split_huge_pages with a pid and a range): each becomes
     * 512 pages of their own, in every address space that maps it; its PMD entries become PTE
     * tables (thp_split_pmd), the pages nothing maps any more are freed (thp_split_page counts the
     * splits). A huge page locked by a migration or another split, or held by anything but its
     * mappings (a GUP reference), is left as it is.
     *
     * @param addressSpace an address space of this machine
     * @param start the first address, 4 KiB aligned
     * @param end one past the last address, 4 KiB aligned and above {@code start}
     * @return how many huge pages were split
     * @throws InvalidArgumentException if the address space is not this machine's or the range is not valid
     */
    int splitHugePages(AddressSpace addressSpace, long start, long end);

    /**
     * Soft offline: migrates the page headed by {@code pfn} away, then poisons the old frame and
     * takes it out of use; a hugetlb pool shrinks by one page. A free huge page is dissolved
     * from its pool and poisoned. A page of a transparent huge page (any of its 512) splits the
     * huge page first (try_to_split_thp_page), then goes alone; -EBUSY if it cannot be split.
     *
     * @param pfn the head page frame number
     * @return 0, or -EBUSY when the page is already poisoned or could not be migrated
     * @throws InvalidArgumentException if pfn is outside memory or is not the head of a page in use
     */
    int softOffline(long pfn);

    /**
     * Memory hot-remove of {@code [startPfn, endPfn)} on {@code node} (2 MiB aligned): migrates
     * every page in use to other nodes, dissolves free huge pages, and takes the range out of
     * the allocator. Nothing changes if something in the range cannot move (page tables,
     * gigantic pages): the call is refused with a clear error.
     *
     * @param node the NUMA node
     * @param startPfn the first frame of the range
     * @param endPfn the frame after the range
     * @return what was migrated, dissolved and taken offline
     */
    OfflineResult offlineRange(int node, long startPfn, long endPfn);

    /**
     * Sets (or with null clears) the observer of migration phases.
     *
     * @param observer the observer, or null
     */
    void setObserver(MigrationObserver observer);

    /**
     * Migration counters with /proc/vmstat names (pgmigrate_success, pgmigrate_fail,
     * hugetlb_migrate_success, hugetlb_migrate_fail, thp_migration_success, thp_migration_fail,
     * thp_split_page),
     * counted since the machine started:
     * {@link Machine#resetVmstat()} does not reset them here.
     *
     * @return migration counters with /proc/vmstat names
     */
    Map<String, Long> stats();
}
