package org.vmcore.impl.rmap;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.vma.AnonVma;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.MappingOwner;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * rmap_walk: finds the VMAs that may map a page. File pages (hugetlbfs, shmem) go through the
 * file's i_mmap interval tree by page-offset range; anonymous pages through their anon_vma,
 * which fork chains link to every descendant's VMA.
 *
 * <p>It may touch the frame descriptors and the {@link MappingRegistry}; callers hold the
 * machine lock.
 */
public final class RmapWalk {
    /** rmap_one with access to the VMA, for the engine's own walks (unmap, migration). */
    @FunctionalInterface
    public interface VmaVisitor {
        /** Returns false to stop the walk. */
        boolean visit(VmArea vma, long address);
    }

    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MappingRegistry registry;

    public RmapWalk(MachineLock lock, PhysicalMemory memory, MappingRegistry registry) {
        this.lock = lock;
        this.memory = memory;
        this.registry = registry;
    }

    /**
     * Walks the candidate VMAs of the page headed by {@code pfn} in tree order, calling
     * {@code visitor} for each; stops when it returns false or when the page's mapcount is zero
     * after a visit. The caller holds the machine lock.
     *
     * @return the number of VMAs visited
     */
    public int walkVmas(long pfn, VmaVisitor visitor) {
        assert lock.isHeldByCurrentThread();
        lock.ensureOpen();
        List<VmArea> candidates = candidates(pfn);
        FrameDescriptors d = memory.descriptors();
        int visited = 0;
        long index = d.index(pfn);
        for (VmArea vma : candidates) {
            long address = vma.address(index);
            if (address < 0) {
                continue;
            }
            visited++;
            if (!visitor.visit(vma, address)) {
                break;
            }
            if (d.mapcount(pfn) == 0) { // the done condition of try_to_unmap: folio_not_mapped
                break;
            }
        }
        return visited;
    }

    /** The VMAs that could map the page, in the order rmap_walk visits them. */
    public List<VmArea> candidates(long pfn) {
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be inside memory");
        }
        FrameDescriptors d = memory.descriptors();
        long mapping = d.mapping(pfn);
        MappingOwner owner = mapping == 0 ? null : registry.owner(mapping);
        if (owner == null) {
            throw new InvalidArgumentException("pfn", pfn, "must head a page that is mapped or in a page cache ("
                    + d.describe(pfn) + ")");
        }
        long index = d.index(pfn);
        if ((d.flags(pfn) & FrameFlags.ANON) != 0 && owner instanceof AnonVma anonVma) {
            List<VmArea> out = new ArrayList<>();
            for (VmArea vma : anonVma.vmas()) {
                if (vma.address(index) >= 0) {
                    out.add(vma);
                }
            }
            return out;
        }
        FileMapping fileMapping = (FileMapping) owner;
        long last = index + (1L << d.order(pfn)) - 1;
        return fileMapping.iMmap().overlapping(index, last);
    }
}
