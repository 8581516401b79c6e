package org.vmcore.api;

import java.util.Collections;
import java.util.EnumSet;
import java.util.Set;

/**
 * A read-only snapshot of a page (a folio): its head frame and the counts the kernel keeps in
 * its {@code struct page}.
 *
 * @param pfn      head page frame number
 * @param size     the folio's size
 * @param node     NUMA node of the frame
 * @param mapcount page-table entries that map it (a shared PMD table counts once); for a transparent
 *                 huge page, folio_mapcount: its PMD entries plus the PTEs mapping any of its pages
 * @param refcount references: mappings, page cache and pins
 * @param flags    its flags, for example {@code [UPTODATE, HEAD, HUGETLB]}, or {@code [BUDDY]} for a
 *                 free frame; unmodifiable
 * @param anonymous whether it is an anonymous page (mapping is an anon_vma)
 * @param file     the hugetlbfs file whose page cache holds it, or null
 * @param index    page index in the file or anon_vma, in 4 KiB pages
 */
public record Page(long pfn, PageSize size, int node, int mapcount, int refcount, Set<PageFlag> flags, boolean anonymous,
                   HugetlbFile file, long index) {
    /**
     * Copies {@code flags} into an unmodifiable set.
     *
     * @throws InvalidArgumentException if flags is null or holds null
     */
    public Page {
        if (flags == null) {
            throw new InvalidArgumentException("flags", null, "must not be null");
        }
        EnumSet<PageFlag> copy = EnumSet.noneOf(PageFlag.class);
        for (PageFlag f : flags) {
            if (f == null) {
                throw new InvalidArgumentException("flags", flags, "must not hold null");
            }
            copy.add(f);
        }
        flags = Collections.unmodifiableSet(copy);
    }
}
