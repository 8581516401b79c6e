package org.vmcore.impl.hugetlb;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;

/**
 * The hugetlbfs mount (fs/hugetlbfs): files by name over the machine's {@link HugetlbPools}, and
 * truncation (hugetlb_vmtruncate). It may touch the pools, the frame descriptors, the mapping
 * registry (a new file's address_space) and, for truncation, the VMAs through the
 * {@link HugetlbVmdelete} the machine hands it.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class HugetlbFsImpl implements HugetlbFs {
    private final MachineLock lock;
    private final int nodeCount;
    private final HugetlbPools pools;
    private final MemMap descriptors;
    private final MappingRegistry registry;
    private final HugetlbVmdelete vmdelete;
    private final OperationHook hook;
    private final Map<String, HugetlbFileImpl> files = new LinkedHashMap<>();
    /** Unlinked files still mapped somewhere: their inodes live until the last mapping goes. */
    private final List<HugetlbFileImpl> unlinkedAlive = new ArrayList<>();

    public HugetlbFsImpl(MachineLock lock, int nodeCount, HugetlbPools pools, MemMap descriptors,
                         MappingRegistry registry, HugetlbVmdelete vmdelete, OperationHook hook) {
        this.lock = lock;
        this.nodeCount = nodeCount;
        this.pools = pools;
        this.descriptors = descriptors;
        this.registry = registry;
        this.vmdelete = vmdelete;
        this.hook = hook;
    }

    @Override
    public HugetlbFile create(String name, long size, PageSize pageSize) {
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            if (name == null || name.isEmpty() || name.contains("/")) {
                throw new InvalidArgumentException("name", name, "must be a non-empty file name without '/'");
            }
            if (pageSize != PageSize.SIZE_2M && pageSize != PageSize.SIZE_1G) {
                throw new InvalidArgumentException("pageSize", pageSize, "must be SIZE_2M or SIZE_1G");
            }
            if (size <= 0 || !pageSize.isAligned(size)) {
                throw new InvalidArgumentException("size", size, "must be a positive multiple of " + pageSize.label());
            }
            synchronized (this) { // the directory (i_rwsem of the mount's root)
                if (files.containsKey(name)) {
                    throw new InvalidArgumentException("name", name, "must not name an existing file");
                }
                HugetlbFileImpl file = new HugetlbFileImpl(this, name, size, pageSize);
                file.setMapping(registry.newFileMapping(file));
                files.put(name, file);
                return file;
            }
        }
    }

    @Override
    public HugetlbFile unlink(String name) {
        HugetlbFileImpl file;
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            synchronized (this) {
                file = name == null ? null : files.get(name);
                if (file == null) {
                    throw new InvalidArgumentException("name", name, "must name an existing file");
                }
                files.remove(name);
                file.markUnlinked();
                unlinkedAlive.add(file);
            }
            evictIfUnused(file);
        }
        hook.afterOperation("unlink");
        return file;
    }

    /**
     * hugetlbfs_evict_inode for an unlinked file nobody maps any more: its page-cache pages go
     * back to the pool (or to whoever still holds a reference, who frees them last) and the
     * reservations of its resv_map are released. Called when a VMA of the file is removed, after
     * it left the file's i_mmap; does nothing for a linked or still mapped file.
     */
    public void evictIfUnused(HugetlbFileImpl file) {
        assert lock.isHeldByCurrentThread();
        file.mapping().iMmapRwsem().downWrite();
        try {
            synchronized (this) {
                if (!file.unlinkedAlive() || !file.mapping().iMmap().isEmpty() || file.pins() > 0) {
                    return;
                }
                file.markEvicted();
                unlinkedAlive.remove(file);
            }
        } finally {
            file.mapping().iMmapRwsem().upWrite();
        }
        removeFrom(file, 0);
        registry.unregister(file.mapping().id());
    }

    /**
     * The file an mmap is about to map, held open for the mmap's length (the struct file
     * reference mmap holds): an unlink meanwhile does not evict the inode under the new mapping.
     *
     * @throws InvalidArgumentException unless the file is a linked file of this mount
     */
    public synchronized HugetlbFileImpl pinForMmap(HugetlbFile file) {
        if (file == null || !owns(file)) {
            throw new InvalidArgumentException("file", file, "must be a file of this machine's hugetlbfs, not unlinked");
        }
        HugetlbFileImpl f = (HugetlbFileImpl) file;
        f.pin(1);
        return f;
    }

    /** The mmap is done with the file: if it was unlinked meanwhile and nothing maps it, it goes now. */
    public void unpin(HugetlbFileImpl file) {
        synchronized (this) {
            file.pin(-1);
        }
        evictIfUnused(file);
    }

    /** Every live inode: the linked files and the unlinked ones still mapped, for the invariant checker. */
    public synchronized List<HugetlbFileImpl> inodes() {
        assert lock.isHeldByCurrentThread();
        List<HugetlbFileImpl> out = new ArrayList<>(files.values());
        out.addAll(unlinkedAlive);
        return out;
    }

    @Override
    public List<HugetlbFile> files() {
        lock.ensureOpen();
        synchronized (this) {
            return new ArrayList<>(files.values());
        }
    }

    @Override
    public HugetlbPoolState pool(int node, PageSize size) {
        lock.ensureOpen();
        Nodes.check(nodeCount, node);
        if (size != PageSize.SIZE_2M && size != PageSize.SIZE_1G) {
            throw new InvalidArgumentException("size", size, "must be SIZE_2M or SIZE_1G");
        }
        return pools.pool(size).state(node);
    }

    /** ftruncate to a smaller size: hugetlb_vmtruncate, then the page cache and reservations past the end. */
    void truncate(HugetlbFileImpl file, long newSize) {
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            PageSize ps = file.pageSize();
            if (file.unlinkedAlive() || !owns(file)) {
                throw new InvalidArgumentException("file", file, "must not be unlinked (truncate needs an open file)");
            }
            synchronized (file.truncation()) { // one truncation at a time, checked against the size it finds
                if (newSize < 0 || newSize > file.size() || !ps.isAligned(newSize)) {
                    throw new InvalidArgumentException("newSize", newSize, "must be a multiple of " + ps.label() + " between 0"
                            + " and the current size " + file.size() + " (hugetlbfs files only shrink)");
                }
                truncateLocked(file, newSize);
            }
            // The pages past the end go outside the truncation monitor: one under migration is
            // waited for, and that migration's callbacks may truncate the file too. Files only
            // shrink, so nothing past the end comes back meanwhile.
            removeFrom(file, newSize >>> ps.shift());
        }
        hook.afterOperation("truncate");
    }

    private void truncateLocked(HugetlbFileImpl file, long newSize) {
        PageSize ps = file.pageSize();
        long first = newSize >>> ps.shift();
        long oldPages = file.pageCount();
        RwSem iMmap = file.mapping().iMmapRwsem();
        iMmap.downWrite();
        try {
            file.setTruncatingFrom(oldPages); // a zap meanwhile gives back its slots up to the old end
            file.setSize(newSize); // faults from here on see the new end (and wait for the mutexes below)
        } finally {
            iMmap.upWrite();
        }
        // hugetlb_vmdelete_list: under i_mmap_rwsem a VMA lock can only be tried (it ranks above).
        // A VMA whose lock is busy (a fault holds it) is waited for outside i_mmap_rwsem, in lock
        // order, and then every VMA is passed over again: the pass is idempotent, and it also
        // meets the VMAs that a split made meanwhile.
        VmArea busy;
        do {
            busy = null;
            iMmap.downWrite();
            try {
                for (VmArea vma : file.mapping().iMmap().overlapping(first << ps.order(), Long.MAX_VALUE)) {
                    if (!vma.hugetlbVmaLock().tryDownWrite()) {
                        busy = vma;
                        continue;
                    }
                    try {
                        truncateVma(file, vma, first, oldPages);
                    } finally {
                        vma.hugetlbVmaLock().upWrite();
                    }
                }
            } finally {
                iMmap.upWrite();
            }
            if (busy != null) {
                busy.hugetlbVmaLock().downWrite(); // the fault that holds it ends first
                busy.hugetlbVmaLock().upWrite();
            }
        } while (busy != null);
        iMmap.downWrite();
        try {
            file.setTruncatingFrom(0); // every VMA still in i_mmap has given back what it held past the end
        } finally {
            iMmap.upWrite();
        }
    }

    /**
     * hugetlb_vmdelete_list's work on one VMA, under its lock and i_mmap_rwsem: a private owner
     * gives back the reservations of its slots from huge page {@code first} to the old end
     * (once: the VMA remembers where its reservations now end), then the range past the new end
     * is unmapped.
     */
    private void truncateVma(HugetlbFileImpl file, VmArea vma, long first, long oldPages) {
        if (vma.reservationOwner() && vma.reservationsEnd() > first) {
            long end = Math.min(oldPages, vma.reservationsEnd());
            long back = HugetlbReservation.privateReservedBetween(vma, vma.start(), vma.end(), first, end);
            vma.setReservationsEnd(first);
            pool(file.pageSize()).unreserve(back);
        }
        long firstSmall = first << file.pageSize().order(); // in 4 KiB page offsets, as vm_pgoff counts
        long from = vma.pgoff() >= firstSmall ? vma.start() : vma.start() + ((firstSmall - vma.pgoff()) << 12);
        vmdelete.unmapHugepageRange(vma, from, vma.end());
    }

    /**
     * remove_inode_hugepages and hugetlb_unreserve_pages from huge-page index {@code first} on:
     * drops the page cache's reference to each page there (the last reference frees it to the
     * pool) and releases the file's reservations there.
     */
    private void removeFrom(HugetlbFileImpl file, long first) {
        HugePagePool pool = pool(file.pageSize());
        long released = 0;
        long[] indexes;
        synchronized (file.mapping()) {
            indexes = file.mapping().pageCache().keySet().toArray();
        }
        for (long index : indexes) {
            if (index >= first) {
                removePage(file, pool, index);
            }
        }
        synchronized (file.reservedIndexes()) {
            for (long index : file.reservedIndexes().toArray()) {
                if (index >= first) {
                    file.reservedIndexes().remove(index);
                    released++;
                }
            }
        }
        pool.unreserve(released);
    }

    /**
     * remove_inode_single_folio for one index, under the page's fault mutex: a fault of this page
     * is either done or waits, then finds it gone. A page whose folio lock a migration holds is
     * waited for with the mutex dropped: that migration's callbacks may fault the page.
     */
    private void removePage(HugetlbFileImpl file, HugePagePool pool, long index) {
        KMutex faultMutex = lock.hugetlbFaultMutexes().of(file.mapping().id(), index);
        while (true) {
            long pfn;
            faultMutex.lock();
            try {
                pfn = file.mapping().tryRemoveLocked(index, descriptors, lock.migrating());
                if (pfn >= 0 && descriptors.addRefcount(pfn, -1) == 0) {
                    pool.free(pfn);
                }
            } finally {
                faultMutex.unlock();
            }
            if (pfn != FileMapping.BUSY) {
                return;
            }
            FolioLock.awaitUnlocked(descriptors, file.mapping().find(index));
        }
    }

    public HugePagePool pool(PageSize size) {
        return pools.pool(size);
    }

    MemMap descriptors() {
        return descriptors;
    }

    MachineLock machineLock() {
        return lock;
    }

    /** Throws ClosedException once the machine is closed. */
    void ensureOpen() {
        lock.ensureOpen();
    }

    /** Whether {@code file} belongs to this mount. */
    public synchronized boolean owns(HugetlbFile file) {
        return file instanceof HugetlbFileImpl f && files.get(f.name()) == f;
    }
}
