package org.vmcore.api;

/** A file on hugetlbfs: a size, a huge-page size and a page cache of huge pages by index. */
public interface HugetlbFile {
    /**
     * The file name.
     *
     * @return the file name
     */
    String name();

    /**
     * The size in bytes.
     *
     * @return the size in bytes
     */
    long size();

    /**
     * The size of its pages.
     *
     * @return the size of its pages
     */
    PageSize pageSize();

    /**
     * The head PFN of the page at huge-page index {@code index} in the page cache, or -1 when
     * none is there.
     *
     * @param index the huge-page index in the file
     * @return the head PFN of the page at huge-page index {@code index} in the page cache, or -1 when none is there
     * @throws InvalidArgumentException if the index is outside the file
     */
    long pageAt(long index);

    /**
     * Whether {@link HugetlbFs#unlink} removed it.
     *
     * @return whether it was unlinked
     */
    boolean isUnlinked();

    /**
     * Pages in the page cache.
     *
     * @return pages in the page cache
     */
    long cachedPages();

    /**
     * Shrinks the file to {@code newSize} bytes (ftruncate): every mapping of the pages past the
     * new end is unmapped in every address space (shared PMD tables are unshared first), the
     * pages leave the page cache and go back to the pool, and their reservations are returned.
     * Mappings stay; an access past the end of the file raises a segmentation fault with cause
     * {@link SegmentationFaultException.Cause#BEYOND_EOF} (SIGBUS).
     *
     * @param newSize the new size in bytes
     * @throws InvalidArgumentException if newSize is negative, above the current size, or not a
     *                                  multiple of the page size, or the file is unlinked
     */
    void truncate(long newSize);
}
