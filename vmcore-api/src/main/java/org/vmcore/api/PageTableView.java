package org.vmcore.api;

import java.util.List;
import java.util.Optional;

/**
 * A read-only view of an address space's page tables ({@link AddressSpace#pageTableView()}): the
 * real x86-64 entries in the machine's memory, read the way the kernel's page-table walkers read
 * them. Each call reads under the machine lock, so it sees no mm operation half done; CPUs may set
 * accessed and dirty bits meanwhile. After the address space exits every method throws
 * {@link ClosedException}.
 */
public interface PageTableView {
    /**
     * Receives the entries {@link #forEachLeaf} finds, as primitives: nothing is allocated per
     * entry. Decode flags with {@link PteFlag#isSetIn(long, PageTableLevel)}.
     */
    @FunctionalInterface
    interface Visitor {
        /**
         * One entry that ends a walk: a present leaf, or a non-present entry that is not empty
         * (PROT_NONE, swap, migration, hwpoison).
         *
         * @param va    the first address the entry covers, which may lie below the range's start
         *              when a huge entry straddles it
         * @param level the level of the table that holds it
         * @param raw   the 64-bit entry as stored
         * @param pa    the physical address of the page it maps, also for a PROT_NONE entry
         *              (pte_present); -1 for a swap, migration or hwpoison entry
         * @return true to go on, false to stop the walk
         */
        boolean visit(long va, PageTableLevel level, long raw, long pa);
    }

    /**
     * Visits, in address order, every entry that ends a walk of an address in
     * {@code [start, end)}: present leaves at the PTE, PMD and PUD levels and non-empty
     * non-present entries; empty entries and missing tables are skipped. The visitor runs under
     * the machine lock and must not change this address space.
     *
     * @param start the first address, 4 KiB aligned
     * @param end   the address after the range, 4 KiB aligned, above start and at most the end of
     *              user space ({@link PagingMode#userAddressLimit()})
     * @param visitor what to call for each entry
     * @return true when the walk reached the end, false when the visitor stopped it
     * @throws InvalidArgumentException if the range or the visitor is wrong
     */
    boolean forEachLeaf(long start, long end, Visitor visitor);

    /**
     * The entry for {@code va} in the table of {@code level}, as pgd_offset, p4d_offset,
     * pud_offset, pmd_offset and pte_offset find it.
     *
     * @param va    a user-space address
     * @param level the level to read
     * @return the entry, empty or not; no value when no table of that level covers {@code va}
     *         (an entry above is empty, non-present or a leaf)
     * @throws InvalidArgumentException if va is outside user space, or level is null or P4D under
     *                                  4-level paging
     */
    Optional<PageTableEntry> entry(long va, PageTableLevel level);

    /**
     * The entries a hardware walk of {@code va} reads, root first: down to a leaf, or to the first
     * entry that is not present.
     *
     * @param va a user-space address
     * @return one entry per level walked (4 or 5 for a 4 KiB page, fewer for a huge page or a hole)
     * @throws InvalidArgumentException if va is outside user space
     */
    List<PageTableEntry> walk(long va);
}
