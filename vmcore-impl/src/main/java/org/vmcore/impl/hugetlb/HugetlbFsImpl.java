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
            return new ArrayList<>(files.values());
        }
    }

    @Override
    public HugetlbPoolState pool(int node, PageSize size) {
        machine.checkNode(node);
        if (size != PageSize.SIZE_2M && size != PageSize.SIZE_1G) {
            throw new InvalidArgumentException("size", size, "must be SIZE_2M or SIZE_1G");
        }
        return pools.get(size).state(node);
    }

    public HugePagePool pool(PageSize size) {
        return pools.get(size);
    }

    Object machineLock() {
        return machine.lock();
    }

    /** Whether {@code file} belongs to this mount. */
    public boolean owns(HugetlbFile file) {
        return file instanceof HugetlbFileImpl f && files.get(f.name()) == f;
    }
}
