package org.vmcore.impl.hugetlb;

import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.impl.SimMachine;

/** The hugetlbfs mount: files by name and one {@link HugePagePool} per huge-page size. */
public final class HugetlbFsImpl implements HugetlbFs {
    private final SimMachine machine;
    private final Map<PageSize, HugePagePool> pools = new EnumMap<>(PageSize.class);
    private final Map<String, HugetlbFileImpl> files = new LinkedHashMap<>();

    public HugetlbFsImpl(SimMachine machine, Map<PageSize, HugePagePool> pools) {
        this.machine = machine;
        this.pools.putAll(pools);
    }

    @Override
    public HugetlbFile create(String name, long size, PageSize pageSize) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            if (name == null || name.isEmpty() || name.contains("/")) {
                throw new InvalidArgumentException("name", name, "must be a non-empty file name without '/'");
            }
            if (files.containsKey(name)) {
                throw new InvalidArgumentException("name", name, "must not name an existing file");
            }
            if (pageSize != PageSize.SIZE_2M && pageSize != PageSize.SIZE_1G) {
                throw new InvalidArgumentException("pageSize", pageSize, "must be SIZE_2M or SIZE_1G");
            }
            if (size <= 0 || !pageSize.isAligned(size)) {
                throw new InvalidArgumentException("size", size, "must be a positive multiple of " + pageSize.label());
            }
            HugetlbFileImpl file = new HugetlbFileImpl(this, name, size, pageSize, machine.newFileMapping());
            files.put(name, file);
            machine.register(file.mapping().id(), file);
            return file;
        }
    }

    @Override
    public List<HugetlbFile> files() {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            return new ArrayList<>(files.values());
        }
    }

    @Override
    public HugetlbPoolState pool(int node, PageSize size) {
        machine.ensureOpen();
        machine.checkNode(node);
        if (size != PageSize.SIZE_2M && size != PageSize.SIZE_1G) {
            throw new InvalidArgumentException("size", size, "must be SIZE_2M or SIZE_1G");
        }
        return pools.get(size).state(node);
    }

    /** ftruncate to a smaller size: hugetlb_vmtruncate, then the page cache and reservations past the end. */
    void truncate(HugetlbFileImpl file, long newSize) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            PageSize ps = file.pageSize();
            if (newSize < 0 || newSize > file.size() || !ps.isAligned(newSize)) {
                throw new InvalidArgumentException("newSize", newSize, "must be a multiple of " + ps.label() + " between 0 and the"
                        + " current size " + file.size() + " (hugetlbfs files only shrink)");
            }
            long first = newSize >>> ps.shift();
            long firstSmall = first << ps.order(); // in 4 KiB page offsets, as vm_pgoff counts
            var vmas = file.mapping().iMmap().overlapping(firstSmall, Long.MAX_VALUE);
            long held = 0; // what the private owners hold before: their slots past the new end stop holding
            for (var vma : vmas) {
                held += vma.reservationOwner() ? vma.owner().privateReservations(vma) : 0;
            }
            file.setSize(newSize);
            long kept = 0;
            for (var vma : vmas) {
                long from = vma.pgoff() >= firstSmall ? vma.start() : vma.start() + ((firstSmall - vma.pgoff()) << 12);
                vma.owner().unmapFilePages(vma, from, vma.end());
                kept += vma.reservationOwner() ? vma.owner().privateReservations(vma) : 0;
            }
            pool(ps).unreserve(held - kept);
            HugePagePool pool = pool(ps);
            long released = 0;
            for (long index : file.mapping().pageCache().keySet().toArray()) {
                if (index >= first) {
                    long pfn = file.mapping().remove(index);
                    if (machine.memory().descriptors().addRefcount(pfn, -1) == 0) {
                        pool.free(pfn);
                    }
                }
            }
            for (long index : file.reservedIndexes().toArray()) {
                if (index >= first) {
                    file.reservedIndexes().remove(index);
                    released++;
                }
            }
            pool.unreserve(released);
            machine.afterOperation("truncate");
        }
    }

    /** The pool a hugetlb page belongs to, by its order; null for a frame outside the pools. */
    public HugePagePool poolOf(long pfn) {
        var d = machine.memory().descriptors();
        if ((d.flags(pfn) & org.vmcore.x86.mem.FrameFlags.HUGETLB) == 0) {
            return null;
        }
        return pools.get(d.order(pfn) == PageSize.SIZE_1G.order() ? PageSize.SIZE_1G : PageSize.SIZE_2M);
    }

    public HugePagePool pool(PageSize size) {
        return pools.get(size);
    }

    Object machineLock() {
        return machine.lock();
    }

    /** Throws ClosedException once the machine is closed. */
    void ensureOpen() {
        machine.ensureOpen();
    }

    /** Whether {@code file} belongs to this mount. */
    public boolean owns(HugetlbFile file) {
        return file instanceof HugetlbFileImpl f && files.get(f.name()) == f;
    }
}
