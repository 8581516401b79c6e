package org.vmcore.api;

/** A file on hugetlbfs: a size, a huge-page size and a page cache of huge pages by index. */
public interface HugetlbFile {
    /** The file name. */
    String name();

    /** The size in bytes. */
    long size();

    /** The size of its pages. */
    PageSize pageSize();

    /**
     * The head PFN of the page at huge-page index {@code index} in the page cache, or -1 when
     * none is there.
     *
     * @throws InvalidArgumentException if the index is outside the file
     */
    long pageAt(long index);

    /** Pages in the page cache. */
    long cachedPages();
}
