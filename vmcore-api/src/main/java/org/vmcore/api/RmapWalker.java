package org.vmcore.api;

import java.util.List;

/**
 * Reverse mapping: from a page to the (address space, virtual address) pairs that map it. File
 * pages are found through their file's VMA interval tree, anonymous pages through their
 * anon_vma and the chains fork builds.
 */
public interface RmapWalker {
    /**
     * Called for each candidate mapping; returns false to stop the walk (rmap_one). It may throw:
     * the walk stops, changes nothing, and the exception reaches the caller of {@link #walk}.
     */
    @FunctionalInterface
    interface Visitor {
        /**
         * Visits the VMA of {@code addressSpace} that covers the page at {@code address}.
         * Like the kernel's rmap_one it is called for every VMA whose range covers the page,
         * whether or not the address space has faulted it in yet.
         *
         * @param addressSpace the address space
         * @param address the virtual address
         * @return false to stop the walk
         */
        boolean visit(AddressSpace addressSpace, long address);
    }

    /**
     * Walks the mappings of the page with head {@code pfn} (rmap_walk): stops when the visitor
     * returns false or when the page's mapcount is zero after a visit (the done condition of
     * try_to_unmap).
     *
     * @param pfn the head page frame number
     * @param visitor called for each mapping
     * @return the number of mappings visited
     * @throws InvalidArgumentException if pfn is not the head of a mapped or cached page
     */
    int walk(long pfn, Visitor visitor);

    /**
     * Every (address space, address) whose page tables map the page with head {@code pfn}
     * right now; a PMD table shared by k address spaces yields k mappings.
     *
     * @param pfn the head page frame number
     * @return every (address space, address) whose page tables map the page with head {@code pfn} right now
     */
    List<Mapping> mappings(long pfn);

    /**
     * try_to_unmap: clears every mapping of the page (mlocked VMAs stop the walk; anonymous
     * pages cannot be unmapped without swap and report BUSY). Hugetlb tables are unshared first.
     *
     * @param pfn the head page frame number
     * @return what happened to each mapping, and the mapcount left
     */
    UnmapResult tryToUnmap(long pfn);

    /**
     * try_to_migrate: replaces every mapping of the page with a migration entry, unsharing shared
     * PMD tables first (unless {@link Regression#PRE_017B1660} is on). The page stays unmapped
     * until {@link #removeMigrationEntries} puts entries back.
     *
     * @param pfn the head page frame number
     * @return what happened to each mapping, and the mapcount left
     */
    UnmapResult tryToMigrate(long pfn);

    /**
     * remove_migration_ptes: replaces the migration entries that point at {@code oldPfn} in the
     * mappings of {@code newPfn} (which carries the old page's mapping and index) with entries to
     * {@code newPfn}; pass the same PFN twice to put a page back after a failed migration.
     *
     * @param oldPfn the page the migration entries point at
     * @param newPfn the page to map instead
     * @return the number of entries restored
     */
    int removeMigrationEntries(long oldPfn, long newPfn);
}
