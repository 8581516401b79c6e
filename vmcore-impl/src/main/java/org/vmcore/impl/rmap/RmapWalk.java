package org.vmcore.impl.rmap;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.lock.RwSem;
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
 * machine lock (shared: the rmap locks guard the lists it reads).
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
     * The size the page headed by {@code pfn} is mapped with in {@code vma}: 2 MiB for a
     * transparent huge page (a PMD entry, or a PMD migration entry), else the VMA's page size.
     */
    public PageSize pageSize(VmArea vma, long pfn) {
        return (memory.descriptors().flags(pfn) & FrameFlags.LARGE_RMAPPABLE) != 0 ? PageSize.SIZE_2M : vma.pageSize();
    }

    /**
     * Walks the candidate VMAs of the page headed by {@code pfn} in tree order, calling
     * {@code visitor} for each; stops when it returns false or when the page's mapcount is zero
     * after a visit. The candidates are taken under the page's rmap lock; the visitor runs
     * without it and takes what it needs itself, checking first that the VMA is still there
     * ({@link VmArea#detached()}, its address unchanged). The caller holds the machine lock.
     *
     * @return the number of VMAs visited
     */
    public int walkVmas(long pfn, VmaVisitor visitor) {
        assert lock.isHeldByCurrentThread();
        lock.ensureOpen();
        MappingOwner owner = owner(pfn);
        if (owner == null) {
            return 0; // its last mapping went (and its anon_vma with it) since the caller looked
        }
        List<VmArea> candidates = candidates(owner, pfn);
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
            if (d.folioMapcount(pfn) == 0) { // the done condition of try_to_unmap: folio_not_mapped
                break;
            }
        }
        return visited;
    }

    /**
     * The anon_vma or file of the page headed by {@code pfn}, or null when it has none or it is
     * gone (an anon_vma goes with its last VMA, even while a page under migration still names it).
     */
    public MappingOwner owner(long pfn) {
        long mapping = memory.descriptors().mapping(pfn);
        return mapping == 0 ? null : registry.owner(mapping);
    }

    /** The rmap lock of {@code owner}: a file's i_mmap_rwsem, or an anon_vma family's rwsem. */
    public static RwSem lockOf(MappingOwner owner) {
        return owner instanceof AnonVma anonVma ? anonVma.rwsem() : ((FileMapping) owner).iMmapRwsem();
    }

    /**
     * The VMAs that could map the page, in the order rmap_walk visits them (for the public
     * rmap calls: a pfn that heads no owned page is refused).
     */
    public List<VmArea> candidates(long pfn) {
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be inside memory");
        }
        MappingOwner owner = owner(pfn);
        if (owner == null) {
            throw new InvalidArgumentException("pfn", pfn, "must head a page that is mapped or in a page cache ("
                    + memory.descriptors().describe(pfn) + ")");
        }
        return candidates(owner, pfn);
    }

    /**
     * The VMAs of the anon_vma family {@code owner} that overlap the {@code pages} pages from
     * {@code index} (a transparent huge page's, split or not), under its lock held for read.
     */
    public List<VmArea> candidates(MappingOwner owner, long index, long pages) {
        List<VmArea> out = new ArrayList<>();
        if (!(owner instanceof AnonVma anonVma)) {
            return out;
        }
        RwSem rmapLock = lockOf(owner);
        rmapLock.downRead();
        try {
            for (VmArea vma : anonVma.vmas()) {
                if (vma.pgoff() < index + pages && index < vma.pgoff() + vma.pages()) {
                    out.add(vma);
                }
            }
            return out;
        } finally {
            rmapLock.upRead();
        }
    }

    /**
     * The VMAs of {@code owner} that could map the page headed by {@code pfn}: a list taken under
     * the owner's rmap lock (held for read here; a thread that holds it already keeps it).
     */
    public List<VmArea> candidates(MappingOwner owner, long pfn) {
        FrameDescriptors d = memory.descriptors();
        long index = d.index(pfn);
        RwSem rmapLock = lockOf(owner);
        rmapLock.downRead();
        try {
            if (owner instanceof AnonVma anonVma) {
                // a transparent huge page: every VMA that maps one of its pages (a VMA cut inside it,
                // or its pages moved by mremap, may hold some and not its head)
                long last = (d.flags(pfn) & FrameFlags.LARGE_RMAPPABLE) != 0 ? index + (1L << d.order(pfn)) - 1 : index;
                List<VmArea> out = new ArrayList<>();
                for (VmArea vma : anonVma.vmas()) {
                    if (vma.address(index) >= 0 || last != index && vma.pgoff() <= last && index < vma.pgoff() + vma.pages()) {
                        out.add(vma);
                    }
                }
                return out;
            }
            long last = index + (1L << d.order(pfn)) - 1;
            return ((FileMapping) owner).iMmap().overlapping(index, last);
        } finally {
            rmapLock.upRead();
        }
    }
}
