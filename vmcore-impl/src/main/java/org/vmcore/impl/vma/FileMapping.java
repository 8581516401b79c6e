package org.vmcore.impl.vma;

import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.vmcore.api.HugetlbFile;

/**
 * The kernel's {@code struct address_space} of a file (a hugetlbfs file or the shmem object
 * behind a shared anonymous mapping): its page cache, index to head PFN, and its i_mmap tree.
 * Page-cache indexes count pages of the file's own page size.
 */
public final class FileMapping implements MappingOwner {
    private final long id;
    private final HugetlbFile file; // the inode for a hugetlbfs file, null for shmem
    private final LongLongHashMap pageCache = new LongLongHashMap();
    private final VmaIntervalTree iMmap = new VmaIntervalTree();

    FileMapping(long id, HugetlbFile file) {
        this.id = id;
        this.file = file;
    }

    /** The hugetlbfs file this is the page cache of, or null for a shmem object. */
    public HugetlbFile file() {
        return file;
    }

    @Override
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
