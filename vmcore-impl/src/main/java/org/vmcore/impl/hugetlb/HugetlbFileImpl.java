package org.vmcore.impl.hugetlb;

import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.internal.MemMap;

/**
 * A hugetlbfs inode: its size, page size, page cache (through its {@link FileMapping}) and the
 * indexes that shared mappings have reserved but not yet faulted in (the inode's resv_map).
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class HugetlbFileImpl implements HugetlbFile {
    private final HugetlbFsImpl fs;
    private final String name;
    private volatile long size; // changed by truncate under i_mmap_rwsem; read by faults without it
    private final PageSize pageSize;
    private FileMapping mapping;
    private final LongHashSet reservedIndexes = new LongHashSet();
    private volatile boolean unlinked;
    private int pins; // mmaps in progress (guarded by the mount's monitor)
    // While a truncation runs: the page count before it (written under i_mmap_rwsem), else 0.
    private volatile long truncatingFrom;
    // i_rwsem's part here: one truncation of the file at a time.
    private final Object truncation = new Object();
    private volatile boolean evicted;

    HugetlbFileImpl(HugetlbFsImpl fs, String name, long size, PageSize pageSize) {
        this.fs = fs;
        this.name = name;
        this.size = size;
        this.pageSize = pageSize;
    }

    /** The hugetlbfs file a hugetlb VMA maps (its vm_file); the VMA keeps it as the API type. */
    public static HugetlbFileImpl of(VmArea vma) {
        return (HugetlbFileImpl) vma.file();
    }

    /** Set once, at creation: the address_space is registered with this file as its inode. */
    void setMapping(FileMapping mapping) {
        this.mapping = mapping;
    }


    @Override
    public String name() {
        return name;
    }

    @Override
    public long size() {
        fs.ensureOpen();
        return size;
    }

    @Override
    public PageSize pageSize() {
        return pageSize;
    }

    /** Number of huge pages the file holds at its size. */
    public long pageCount() {
        return size >>> pageSize.shift();
    }

    @Override
    public long pageAt(long index) {
        fs.ensureOpen();
        if (index < 0 || index >= pageCount()) {
            throw new InvalidArgumentException("index", index, "must be inside the file (0.." + (pageCount() - 1) + ")");
        }
        try (MachineLock.Held locked = fs.machineLock().shared()) {
            return mapping.find(index);
        }
    }

    @Override
    public boolean isUnlinked() {
        fs.ensureOpen();
        return unlinked;
    }

    /** Unlinked and not yet evicted: its mappings and page cache live on. The caller holds the machine lock. */
    boolean unlinkedAlive() {
        return unlinked && !evicted;
    }

    /** The page count before the truncation in progress, or 0 when none runs. */
    public long truncatingFrom() {
        return truncatingFrom;
    }

    void setTruncatingFrom(long pages) {
        truncatingFrom = pages;
    }

    /** The monitor that lets one truncation of the file run at a time (the inode's i_rwsem). */
    Object truncation() {
        return truncation;
    }

    /** Adds {@code delta} to the mmaps in progress; the caller holds the mount's monitor. */
    void pin(int delta) {
        pins += delta;
    }

    /** The mmaps in progress; the caller holds the mount's monitor. */
    int pins() {
        return pins;
    }

    void markUnlinked() {
        unlinked = true;
    }

    void markEvicted() {
        evicted = true;
    }

    @Override
    public long cachedPages() {
        try (MachineLock.Held locked = fs.machineLock().shared()) {
            fs.ensureOpen();
            synchronized (mapping) {
                return mapping.pageCache().size();
            }
        }
    }

    @Override
    public void truncate(long newSize) {
        fs.truncate(this, newSize);
    }

    /** Sets the size after a truncation; the caller holds i_mmap_rwsem for write. */
    void setSize(long newSize) {
        assert mapping.iMmapRwsem().isWriteLockedByCurrentThread();
        size = newSize;
    }

    /** The lock of the machine the file belongs to. */
    public MachineLock machineLock() {
        return fs.machineLock();
    }

    /** The frame descriptors of the machine's memory. */
    MemMap descriptors() {
        return fs.descriptors();
    }

    public FileMapping mapping() {
        return mapping;
    }

    public HugePagePool pool() {
        return fs.pool(pageSize);
    }

    /** Indexes reserved by shared mappings and not yet in the page cache. */
    public LongHashSet reservedIndexes() {
        return reservedIndexes;
    }

    @Override
    public String toString() {
        return "hugetlbfs:" + name + (unlinked ? " (deleted)" : "") + " (" + size + " bytes, " + pageSize.label() + " pages)";
    }
}
