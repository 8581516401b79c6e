package org.vmcore.impl.vma;

import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.vmcore.api.HugetlbFile;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.lock.LockClass;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.x86.internal.MemMap;

/**
 * The kernel's {@code struct address_space} of a file (a hugetlbfs file or the shmem object
 * behind a shared anonymous mapping): its page cache, index to head PFN, and its i_mmap tree.
 * Page-cache indexes count pages of the file's own page size.
 *
 * <p>The page cache is guarded by this object's monitor (the xarray's i_pages lock); the i_mmap
 * tree by {@link #iMmapRwsem()}: read to walk it, write to link, unlink or move a VMA in it.
 */
public final class FileMapping implements MappingOwner {
    private final long id;
    private final HugetlbFile file; // the inode for a hugetlbfs file, null for shmem
    private final LongLongHashMap pageCache = new LongLongHashMap();
    private final VmaIntervalTree iMmap = new VmaIntervalTree();
    private final RwSem iMmapRwsem = new RwSem(I_MMAP_RWSEM);

    /** Lock class of every file's i_mmap_rwsem. */
    public static final LockClass I_MMAP_RWSEM = LockClass.of("i_mmap_rwsem");

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
    public synchronized long find(long index) {
        return pageCache.getIfAbsent(index, -1);
    }

    public synchronized void add(long index, long pfn) {
        pageCache.put(index, pfn);
    }

    public synchronized long remove(long index) {
        return pageCache.removeKeyIfAbsent(index, -1);
    }

    /**
     * filemap_remove_folio under the folio lock (remove_inode_single_folio, shmem_undo_range): the
     * page at {@code index} leaves the cache with its lock held, so a migration of it finishes
     * first (and moves the slot to its new page, which is the one that goes). The page forgets
     * this file, so a migration that meets it afterwards has nothing to do. A page the current
     * thread is migrating (a callback of that migration truncating the file) goes without the
     * lock: the migration then finds the cache's reference gone and puts the page back. The
     * caller drops the cache's reference; it holds no rmap or page-table lock.
     *
     * @return the page removed, or -1 when the index held none
     */
    public long removeLocked(long index, MemMap descriptors, MigratingThread migrating) {
        long pfn;
        while ((pfn = tryRemoveLocked(index, descriptors, migrating)) == BUSY) {
            FolioLock.awaitUnlocked(descriptors, find(index));
        }
        return pfn;
    }

    /** What {@link #tryRemoveLocked} answers while another thread holds the page's folio lock. */
    public static final long BUSY = -2;

    /**
     * {@link #removeLocked} without the wait: {@link #BUSY} while another thread holds the page's
     * folio lock, so that a caller holding a lock the migration's callbacks may need (the hugetlb
     * fault mutex) drops it to wait and then tries again.
     */
    public long tryRemoveLocked(long index, MemMap descriptors, MigratingThread migrating) {
        long pfn = find(index);
        if (pfn < 0) {
            return -1;
        }
        boolean locked = !migrating.holds(pfn);
        if (locked && !FolioLock.tryLock(descriptors, pfn)) {
            return BUSY;
        }
        if (locked && find(index) != pfn) { // migrated meanwhile: the slot holds the new page
            FolioLock.unlock(descriptors, pfn);
            return BUSY;
        }
        remove(index);
        if (locked) {
            descriptors.setMapping(pfn, 0, 0);
            FolioLock.unlock(descriptors, pfn);
        }
        return pfn;
    }

    public LongLongHashMap pageCache() {
        return pageCache;
    }

    /** i_mmap_rwsem. */
    public RwSem iMmapRwsem() {
        return iMmapRwsem;
    }

    public VmaIntervalTree iMmap() {
        return iMmap;
    }
}
