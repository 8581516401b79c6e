package org.vmcore.api;

/**
 * A read-only snapshot of a page (a folio): its head frame and the counts the kernel keeps in
 * its {@code struct page}.
 *
 * @param pfn      head page frame number
 * @param size     the folio's size
 * @param node     NUMA node of the frame
 * @param mapcount page-table entries that map it (a shared PMD table counts once)
 * @param refcount references: mappings, page cache and pins
 * @param flags    the flags as the kernel would print them, e.g. {@code uptodate|head|hugetlb}, or
 *                 {@code free} for a free frame
 * @param anonymous whether it is an anonymous page (mapping is an anon_vma)
 * @param file     the hugetlbfs file whose page cache holds it, or null
 * @param index    page index in the file or anon_vma, in 4 KiB pages
 */
public record Page(long pfn, PageSize size, int node, int mapcount, int refcount, String flags, boolean anonymous,
                   HugetlbFile file, long index) {
}
