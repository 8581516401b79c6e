package org.vmcore.api;

import java.util.List;

/**
 * Reverse mapping: from a page to the (address space, virtual address) pairs that map it. File
 * pages are found through their file's VMA interval tree, anonymous pages through their
 * anon_vma and the chains fork builds.
 */
public interface RmapWalker {
    /** Called for each candidate mapping; returns false to stop the walk (rmap_one). */
    @FunctionalInterface
    interface Visitor {
        /**
         * Visits the VMA of {@code addressSpace} that covers the page at {@code address}.
         * Like the kernel's rmap_one it is called for every VMA whose range covers the page,
         * whether or not the address space has faulted it in yet.
         */
        boolean visit(AddressSpace addressSpace, long address);
    }

    /**
     * Walks the mappings of the page with head {@code pfn} (rmap_walk): stops when the visitor
     * returns false or when the page's mapcount is zero after a visit (the done condition of
     * try_to_unmap).
     *
     * @return the number of mappings visited
     * @throws InvalidArgumentException if pfn is not the head of a mapped or cached page
     */
    int walk(long pfn, Visitor visitor);

    /**
     * Every (address space, address) whose page tables map the page with head {@code pfn}
     * right now; a PMD table shared by k address spaces yields k mappings.
     */
    List<Mapping> mappings(long pfn);
}
