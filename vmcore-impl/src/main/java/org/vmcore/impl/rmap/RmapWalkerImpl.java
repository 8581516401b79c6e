package org.vmcore.impl.rmap;

import java.util.ArrayList;
import java.util.List;
import java.util.function.Supplier;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Mapping;
import org.vmcore.api.RmapWalker;
import org.vmcore.api.UnmapResult;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;

/**
 * rmap_walk: finds the VMAs that may map a page. File pages (hugetlbfs, shmem) go through the
 * file's i_mmap interval tree by page-offset range; anonymous pages through their anon_vma,
 * which fork chains link to every descendant's VMA.
 */
public final class RmapWalkerImpl implements RmapWalker {
    /** rmap_one with access to the VMA, for the engine's own walks (unmap, migration). */
    @FunctionalInterface
    public interface VmaVisitor {
        /** Returns false to stop the walk. */
        boolean visit(VmArea vma, long address);
    }

    private final SimMachine machine;
    private final org.vmcore.impl.migrate.MigrationUnmap unmap;

    public RmapWalkerImpl(SimMachine machine, org.vmcore.impl.migrate.MigrationUnmap unmap) {
        this.machine = machine;
        this.unmap = unmap;
    }

    @Override
    public UnmapResult tryToUnmap(long pfn) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            return completed(() -> unmap.tryToUnmap(pfn));
        }
    }

    @Override
    public UnmapResult tryToMigrate(long pfn) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            return completed(() -> unmap.tryToMigrate(pfn));
        }
    }

    /**
     * Runs a walk that calls notifiers, then rethrows what they threw: the mappings already
     * handled stay handled (every range opened was closed), as a partial try_to_unmap leaves them.
     */
    private UnmapResult completed(Supplier<UnmapResult> walk) {
        UnmapResult result;
        try {
            result = walk.get();
        } catch (Throwable e) {
            throw machine.operationFailed(e);
        }
        machine.operationDone();
        return result;
    }

    @Override
    public int removeMigrationEntries(long oldPfn, long newPfn) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            return unmap.removeMigrationEntries(oldPfn, newPfn);
        }
    }

    @Override
    public int walk(long pfn, Visitor visitor) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            if (visitor == null) {
                throw new InvalidArgumentException("visitor", null, "must not be null");
            }
            CallbackFailures calls = machine.callbackFailures();
            int visited;
            calls.enter();
            try {
                visited = walkVmas(pfn, (vma, address) -> visitor.visit(vma.owner(), address));
            } catch (Throwable e) {
                calls.exit();
                throw machine.operationFailed(e);
            }
            calls.exit();
            machine.operationDone(); // a close the visitor asked for happens now
            return visited;
        }
    }

    /**
     * Walks the candidate VMAs of the page headed by {@code pfn} in tree order, calling
     * {@code visitor} for each; stops when it returns false or when the page's mapcount is zero
     * after a visit. The caller holds the machine lock.
     *
     * @return the number of VMAs visited
     */
    public int walkVmas(long pfn, VmaVisitor visitor) {
        machine.ensureOpen();
        List<VmArea> candidates = candidates(pfn);
        FrameDescriptors d = machine.memory().descriptors();
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

    @Override
    public List<Mapping> mappings(long pfn) {
        synchronized (machine.lock()) {
            machine.ensureOpen();
            List<Mapping> out = new ArrayList<>();
            long index = machine.memory().descriptors().index(pfn);
            for (VmArea vma : candidates(pfn)) {
                long address = vma.address(index);
                if (address >= 0 && vma.owner().pageAt(address) == pfn) {
                    out.add(new Mapping(vma.owner(), address));
                }
            }
            return out;
        }
    }

    /** The VMAs that could map the page, in the order rmap_walk visits them. */
    public List<VmArea> candidates(long pfn) {
        if (!machine.memory().isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be inside memory");
        }
        FrameDescriptors d = machine.memory().descriptors();
        long mapping = d.mapping(pfn);
        Object owner = mapping == 0 ? null : machine.mappingOwner(mapping);
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
        FileMapping fileMapping = owner instanceof HugetlbFileImpl f ? f.mapping() : (FileMapping) owner;
        long last = index + (1L << d.order(pfn)) - 1;
        return fileMapping.iMmap().overlapping(index, last);
    }
}
