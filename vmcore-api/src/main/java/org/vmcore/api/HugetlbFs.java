package org.vmcore.api;

import java.util.List;

/** The machine's hugetlbfs mount and its pools. */
public interface HugetlbFs {
    /**
     * Creates a file of {@code size} bytes (a positive multiple of {@code pageSize}, which is
     * SIZE_2M or SIZE_1G).
     *
     * @param name the file name
     * @param size the page size
     * @param pageSize the huge-page size
     * @return the new file
     * @throws InvalidArgumentException if the name is taken or empty, or the sizes are wrong
     */
    HugetlbFile create(String name, long size, PageSize pageSize);

    /**
     * The files, in creation order.
     *
     * @return the files, in creation order
     */
    List<HugetlbFile> files();

    /**
     * The pool of {@code size} pages on {@code node}.
     *
     * @param node the NUMA node
     * @param size the page size
     * @return the pool of {@code size} pages on {@code node}
     * @throws InvalidArgumentException if the node does not exist or size is SIZE_4K
     */
    HugetlbPoolState pool(int node, PageSize size);
}
