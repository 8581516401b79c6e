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
     * Removes the file {@code name} (unlink(2), with no descriptor left open): {@link #files()}
     * no longer lists it and the name can be given to a new, different file. Mappings of it stay
     * and keep working, with their pages. When the last one goes (munmap or exit) the inode is
     * evicted as hugetlbfs_evict_inode does: its page-cache pages go back to the pool and the
     * reservations it still holds for pages never faulted in are released. With no mapping left
     * that happens at once. The unlinked {@link HugetlbFile} can no longer be mapped or truncated.
     *
     * @param name the file name
     * @return the file unlinked
     * @throws InvalidArgumentException if no file has that name
     */
    HugetlbFile unlink(String name);

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
