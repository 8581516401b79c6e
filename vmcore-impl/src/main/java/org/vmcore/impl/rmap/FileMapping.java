package org.vmcore.impl.rmap;

import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;

/**
 * The kernel's {@code struct address_space} of a file (a hugetlbfs file or the shmem object
 * behind a shared anonymous mapping): its page cache, index to head PFN, and its i_mmap tree.
 * Page-cache indexes count pages of the file's own page size.
 */
public final class FileMapping {
    private final long id;
    private final LongLongHashMap pageCache = new LongLongHashMap();
    private final VmaIntervalTree iMmap = new VmaIntervalTree();

    public FileMapping(long id) {
        this.id = id;
    }

    /** The identifier stored in a page's mapping field. */
    public long id() {
        return id;
    }

    /** The head PFN cached at {@code index}, or -1. */
    public long find(long index) {
        return pageCache.getIfAbsent(index, -1);
    }

    public void add(long index, long pfn) {
        pageCache.put(index, pfn);
    }

    public long remove(long index) {
        return pageCache.removeKeyIfAbsent(index, -1);
    }

    public LongLongHashMap pageCache() {
        return pageCache;
    }

    public VmaIntervalTree iMmap() {
        return iMmap;
    }
}
