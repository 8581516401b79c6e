package org.vmcore.impl.migrate;

import java.util.Map;
import java.util.function.LongFunction;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MigrationObserver;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.OfflineResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageReference;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.mm.Thp;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * migrate_pages(2), move_pages(2), soft offline and memory offline: each chooses the folios to
 * move and where, and hands each one to {@link MigrateFolio} (unmap_and_move), which puts a page
 * that fails back unchanged.
 *
 * <p>This facade checks the arguments and delegates: {@link MigratePages}, {@link MovePages},
 * {@link SoftOffline}, {@link MemoryOffline}. Each page is migrated under the machine lock and
 * the lock is released between pages, so CPUs that fault on a migration entry wait exactly until
 * that page's migration ends.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class MigrationServiceImpl implements MigrationService {
    private final MachineLock lock;
    private final int nodeCount;
    private final PhysicalMemory memory;
    private final MigrateFolio folio;
    private final MigratePages migratePages;
    private final MovePages movePages;
    private final SoftOffline softOffline;
    private final MemoryOffline memoryOffline;
    private final SplitHugePage split;
    private final OperationHook hook;
    private final FrameDescriptors descriptors;

    public MigrationServiceImpl(MachineLock lock, int nodeCount, PhysicalMemory memory, HugetlbPools pools,
                                MappingRegistry registry, TryToUnmap unmap, RemoveMigrationPtes removeMigrationPtes,
                                MigrationEntryRefs migrationRefs, CallbackFailures callbackFailures, OperationHook hook,
                                MigratingThread migrating, LongFunction<PageReference> isolate, SwapCache swapCache) {
        this.lock = lock;
        this.nodeCount = nodeCount;
        this.memory = memory;
        this.hook = hook;
        this.descriptors = memory.descriptors();
        this.folio = new MigrateFolio(lock, memory, pools, registry, unmap, removeMigrationPtes, migrationRefs, callbackFailures,
                hook, migrating, isolate, swapCache);
        this.migratePages = new MigratePages(lock, memory, folio, hook);
        this.movePages = new MovePages(lock, memory, folio, hook);
        this.split = new SplitHugePage(lock, memory, unmap, removeMigrationPtes, callbackFailures);
        this.softOffline = new SoftOffline(lock, memory, folio, hook, pools, split);
        this.memoryOffline = new MemoryOffline(lock, memory, folio, hook, pools, nodeCount);
    }

    @Override
    public void setObserver(MigrationObserver observer) {
        lock.ensureOpen();
        folio.setObserver(observer);
    }

    @Override
    public Map<String, Long> stats() {
        lock.ensureOpen();
        Map<String, Long> out = folio.stats();
        out.put("thp_split_page", split.splits());
        return out;
    }

    /**
     * Lets {@code thp} (its deferred split queue, and madvise) split huge pages through this
     * service; returns the splitter, for reclaim.
     */
    public SplitHugePage splitsFor(Thp thp) {
        thp.setSplitter(split::split);
        split.useThp(thp);
        return split;
    }

    // ---- migrate_pages(2) ----

    @Override
    public int migratePages(AddressSpace addressSpace, int[] fromNodes, int[] toNodes, int flags) {
        SimAddressSpace mm = checkSpace(addressSpace);
        checkFlags(flags);
        if (fromNodes == null) {
            throw new InvalidArgumentException("fromNodes", null, "must not be null");
        }
        if (toNodes == null || fromNodes.length != toNodes.length) {
            throw new InvalidArgumentException("toNodes", toNodes == null ? null : toNodes.length,
                    "must be as long as fromNodes (" + (fromNodes == null ? null : fromNodes.length) + ")");
        }
        for (int i = 0; i < fromNodes.length; i++) {
            Nodes.check(nodeCount, fromNodes[i]);
            Nodes.check(nodeCount, toNodes[i]);
        }
        return migratePages.migratePages(mm, fromNodes, toNodes, (flags & MPOL_MF_MOVE_ALL) != 0);
    }

    // ---- move_pages(2) ----

    @Override
    public MovePagesResult movePages(AddressSpace addressSpace, long[] addresses, int[] nodes, int flags) {
        SimAddressSpace mm = checkSpace(addressSpace);
        checkFlags(flags);
        if (addresses == null) {
            throw new InvalidArgumentException("addresses", null, "must not be null");
        }
        if (nodes != null && nodes.length != addresses.length) {
            throw new InvalidArgumentException("nodes", nodes.length, "must be as long as addresses (" + addresses.length + ")");
        }
        if (nodes != null) {
            for (int node : nodes) {
                if (node < 0 || node >= memory.nodes().size()) {
                    throw new InvalidArgumentException("node", node, "must be an existing node (-ENODEV)");
                }
            }
        }
        return movePages.movePages(mm, addresses, nodes, (flags & MPOL_MF_MOVE_ALL) != 0);
    }

    // ---- split_huge_pages (debugfs) ----

    @Override
    public int splitHugePages(AddressSpace addressSpace, long start, long end) {
        SimAddressSpace mm = checkSpace(addressSpace);
        if (start < 0 || (start & 0xFFF) != 0) {
            throw new InvalidArgumentException("start", start, "must be a non-negative 4K aligned address");
        }
        if ((end & 0xFFF) != 0 || end <= start) {
            throw new InvalidArgumentException("end", end, "must be 4K aligned and above start 0x" + Long.toHexString(start));
        }
        int split = 0;
        try (MachineLock.Held locked = lock.shared(); MachineLock.Held mmap = mm.mmapRead()) {
            mm.ensureOpen();
            LongHashSet heads = new LongHashSet();
            for (VmArea v : mm.vmaAreas()) {
                mm.forEachMappedPage(v, (va, page) -> {
                    long head = descriptors.folio(page);
                    long size = head == page && isPmdMapped(mm, va, page) ? HUGE : 4096; // a PMD maps 2 MiB from va
                    if (va < end && va + size > start && (descriptors.flags(head) & FrameFlags.LARGE_RMAPPABLE) != 0) {
                        heads.add(head);
                    }
                });
            }
            for (long head : heads.toArray()) {
                split += this.split.split(head) == 0 ? 1 : 0;
            }
        }
        hook.afterOperation("split_huge_pages");
        return split;
    }

    private static final long HUGE = 2L << 20;

    /** Whether the huge PMD entry at va maps the folio at {@code head}. */
    private static boolean isPmdMapped(SimAddressSpace mm, long va, long head) {
        long pmd = (va & (HUGE - 1)) == 0 ? mm.pageTable().entry(va, Level.PMD) : 0;
        return Pte.isPresent(pmd) && (pmd & Pte.PSE) != 0 && Pte.pfn(pmd, PageSize.SIZE_2M) == head;
    }

    // ---- soft offline ----

    @Override
    public int softOffline(long pfn) {
        return softOffline.softOfflinePage(pfn);
    }

    // ---- memory offline ----

    @Override
    public OfflineResult offlineRange(int node, long startPfn, long endPfn) {
        return memoryOffline.offlinePages(node, startPfn, endPfn);
    }

    private SimAddressSpace checkSpace(AddressSpace addressSpace) {
        lock.ensureOpen();
        if (!(addressSpace instanceof SimAddressSpace mm) || !mm.belongsTo(lock)) {
            throw new InvalidArgumentException("addressSpace", addressSpace, "must belong to this machine");
        }
        return mm;
    }

    private static void checkFlags(int flags) {
        if (flags != MPOL_MF_MOVE && flags != MPOL_MF_MOVE_ALL) {
            throw new InvalidArgumentException("flags", flags, "must be MPOL_MF_MOVE (2) or MPOL_MF_MOVE_ALL (4)");
        }
    }
}
