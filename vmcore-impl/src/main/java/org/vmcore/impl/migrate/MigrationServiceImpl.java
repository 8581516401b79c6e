package org.vmcore.impl.migrate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MigrationObserver;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.OfflineResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.NumaNode;
import org.vmcore.x86.mem.PageTableWindow;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * migrate_pages(2), move_pages(2), soft offline and memory offline: each chooses the folios to
 * move and where, and hands each one to {@link MigrateFolio} (unmap_and_move), which puts a page
 * that fails back unchanged.
 *
 * <p>Each page is migrated under the machine lock and the lock is released between pages, so
 * CPUs that fault on a migration entry wait exactly until that page's migration ends.
 */
public final class MigrationServiceImpl implements MigrationService {
    private final MachineLock lock;
    private final int nodeCount;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final HugetlbPools pools;
    private final OperationHook hook;
    private final MigrateFolio folio;

    public MigrationServiceImpl(MachineLock lock, int nodeCount, PhysicalMemory memory, HugetlbPools pools,
                                MappingRegistry registry, TryToUnmap unmap, RemoveMigrationPtes removeMigrationPtes,
                                MigrationEntryRefs migrationRefs, CallbackFailures callbackFailures, OperationHook hook,
                                MigratingThread migrating) {
        this.lock = lock;
        this.nodeCount = nodeCount;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.pools = pools;
        this.hook = hook;
        this.folio = new MigrateFolio(lock, memory, pools, registry, unmap, removeMigrationPtes, migrationRefs, callbackFailures,
                hook, migrating);
    }

    @Override
    public void setObserver(MigrationObserver observer) {
        lock.ensureOpen();
        folio.setObserver(observer);
    }

    @Override
    public Map<String, Long> stats() {
        lock.ensureOpen();
        return folio.stats();
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
        boolean moveAll = (flags & MPOL_MF_MOVE_ALL) != 0;
        int notMigrated = 0;
        for (int i = 0; i < fromNodes.length; i++) {
            if (fromNodes[i] == toNodes[i]) {
                continue;
            }
            Set<Long> queue = new LinkedHashSet<>();
            synchronized (lock) {
                mm.ensureOpen();
                int source = fromNodes[i];
                for (VmArea v : mm.vmaAreas()) {
                    mm.forEachMappedPage(v, (va, pfn) -> {
                        // queue_folios_pte_range / queue_pages_hugetlb: MOVE takes only unshared pages
                        if (memory.nodeOf(pfn) == source && (moveAll || descriptors.mapcount(pfn) == 1)) {
                            queue.add(pfn);
                        }
                    });
                }
            }
            for (long pfn : queue) {
                if (folio.migrateWithRetries(pfn, toNodes[i], false) != 0) {
                    notMigrated++;
                }
            }
        }
        checked("migrate_pages");
        return notMigrated;
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
        boolean moveAll = (flags & MPOL_MF_MOVE_ALL) != 0;
        int n = addresses.length;
        int[] status = new int[n];
        // do_pages_move: runs of queued pages with one target node form a batch; any page not
        // queued (error or already there) and any change of node migrates the batch so far
        LongArrayList batch = new LongArrayList();
        int batchNode = -1;
        int start = 0;
        for (int i = 0; i < n; i++) {
            if (nodes != null && !batch.isEmpty() && nodes[i] != batchNode) {
                int failed = moveBatch(batch, batchNode, status, start);
                if (failed > 0) {
                    return aborted(status, i, failed + n - i);
                }
            }
            if (batch.isEmpty()) {
                batchNode = nodes == null ? -1 : nodes[i];
                start = i;
            }
            long head = -1;
            synchronized (lock) {
                mm.ensureOpen();
                status[i] = lookup(mm, addresses[i], nodes == null ? -1 : nodes[i], moveAll);
                if (status[i] == QUEUE) {
                    head = mm.pageAt(addresses[i]);
                    if (batch.contains(head)) {
                        status[i] = -Errno.EBUSY; // already isolated by this batch
                    }
                }
            }
            if (status[i] == QUEUE) {
                batch.add(head);
                continue;
            }
            int failed = moveBatch(batch, batchNode, status, start);
            if (failed > 0) {
                return aborted(status, i + 1, failed + n - i - 1); // page i has its status already
            }
        }
        int failed = moveBatch(batch, batchNode, status, start);
        checked("move_pages");
        return new MovePagesResult(failed, status);
    }

    /** A lookup result of {@link #lookup}: isolate the page into the batch. */
    private static final int QUEUE = Integer.MAX_VALUE;

    /**
     * add_page_for_migration (or do_pages_stat for {@code node < 0}), under the machine lock: the
     * status of {@code va}, or {@link #QUEUE} when its page must move to {@code node}.
     */
    private int lookup(SimAddressSpace mm, long va, int node, boolean moveAll) {
        VmArea vma = va >= 0 && va < mm.pageTable().mode().userAddressLimit() ? mm.vma(va) : null;
        if (vma == null) {
            return -Errno.EFAULT;
        }
        long head = mm.pageAt(va);
        if (head < 0) {
            return -Errno.ENOENT;
        }
        int on = memory.nodeOf(head);
        if (node < 0 || on == node) {
            return on;
        }
        if (!moveAll && descriptors.mapcount(head) > 1) {
            return -Errno.EACCES;
        }
        if (vma.kind().isHugetlb() && (va & (vma.pageSize().bytes() - 1) & ~0xFFFL) != 0) {
            return -Errno.EACCES; // only the head subpage isolates a huge page
        }
        return QUEUE;
    }

    /**
     * move_pages_and_store_status: migrates the batch (statuses {@code start..}) to {@code node},
     * stores each page's outcome and empties the batch.
     *
     * @return the number of pages of the batch not migrated
     */
    private int moveBatch(LongArrayList batch, int node, int[] status, int start) {
        int failed = 0;
        for (int k = 0; k < batch.size(); k++) {
            int rc = folio.migrateWithRetries(batch.get(k), node, false);
            status[start + k] = rc == 0 ? node : rc == -Errno.EAGAIN ? -Errno.EBUSY : rc;
            if (rc != 0) {
                failed++;
            }
        }
        batch.clear();
        return failed;
    }

    /** The call stops after a failed batch: the pages from {@code from} on were not attempted. */
    private MovePagesResult aborted(int[] status, int from, int notMigrated) {
        Arrays.fill(status, from, status.length, MovePagesResult.NOT_ATTEMPTED);
        checked("move_pages");
        return new MovePagesResult(notMigrated, status);
    }

    // ---- soft offline ----

    @Override
    public int softOffline(long pfn) {
        synchronized (lock) {
            lock.ensureOpen();
            checkPfn(pfn);
            int flags = descriptors.flags(pfn);
            if ((flags & FrameFlags.HWPOISON) != 0) {
                return -Errno.EBUSY;
            }
            HugePagePool pool = pools.poolOf(pfn);
            if (pool != null && pool.isFree(pfn)) {
                return pool.dissolve(pfn, true) ? 0 : -Errno.EBUSY;
            }
            if ((flags & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0) {
                throw new InvalidArgumentException("pfn", pfn, "must head a page in use or a free huge page ("
                        + descriptors.describe(pfn) + ")");
            }
        }
        int home = memory.nodeOf(pfn);
        int rc = -Errno.ENOMEM;
        for (int i = 0; i < memory.nodes().size() && rc == -Errno.ENOMEM; i++) {
            rc = folio.migrateWithRetries(pfn, (home + i) % memory.nodes().size(), true);
        }
        checked("soft offline");
        return rc == 0 ? 0 : -Errno.EBUSY;
    }

    // ---- memory offline ----

    @Override
    public OfflineResult offlineRange(int node, long startPfn, long endPfn) {
        lock.ensureOpen();
        Nodes.check(nodeCount, node);
        NumaNode n = memory.node(node);
        if (startPfn < n.startPfn() || endPfn > n.endPfn() || startPfn >= endPfn) {
            throw new InvalidArgumentException("startPfn", startPfn, "must start a non-empty range inside node " + node
                    + " [0x" + Long.toHexString(n.startPfn()) + ", 0x" + Long.toHexString(n.endPfn()) + ")");
        }
        if ((startPfn & 511) != 0 || (endPfn & 511) != 0) {
            throw new InvalidArgumentException("startPfn", startPfn, "and endPfn must be 2 MiB aligned (multiples of 512)");
        }
        if (memory.nodes().size() < 2) {
            throw new VmException("cannot offline memory of the only node: there is nowhere to migrate to");
        }
        List<Long> inUse = new ArrayList<>();
        List<Long> freeHuge = new ArrayList<>();
        synchronized (lock) {
            lock.ensureOpen();
            for (PageTableWindow window : memory.tableWindows()) {
                if (window.base() < endPfn && startPfn < window.base() + window.frames()) {
                    throw new VmException("cannot offline [0x" + Long.toHexString(startPfn) + ", 0x" + Long.toHexString(endPfn)
                            + "): it overlaps the " + window + ", which holds page tables for good");
                }
            }
            for (long pfn = startPfn; pfn < endPfn; ) {
                int flags = descriptors.flags(pfn);
                if ((flags & FrameFlags.ALLOCATED) == 0) {
                    pfn++;
                    continue;
                }
                int order = descriptors.order(pfn);
                if ((flags & (FrameFlags.HWPOISON | FrameFlags.RESERVED)) != 0) {
                    pfn += 1L << order; // already out of use
                    continue;
                }
                if ((flags & FrameFlags.PGTABLE) != 0) {
                    throw new VmException("cannot offline [0x" + Long.toHexString(startPfn) + ", 0x" + Long.toHexString(endPfn)
                            + "): pfn 0x" + Long.toHexString(pfn) + " is a page table, which cannot be migrated");
                }
                HugePagePool pool = pools.poolOf(pfn);
                if (pool != null && pool.isFree(pfn)) {
                    freeHuge.add(pfn);
                } else if (order == PageSize.SIZE_1G.order()) {
                    throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " is a gigantic page in use (-EBUSY)");
                } else if (descriptors.mapping(pfn) != 0) {
                    inUse.add(pfn);
                } else {
                    throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " is in use and not movable ("
                            + descriptors.describe(pfn) + ")");
                }
                if (pfn + (1L << order) > endPfn) {
                    throw new VmException("cannot offline: the block at pfn 0x" + Long.toHexString(pfn) + " reaches past the range");
                }
                pfn += 1L << order;
            }
        }
        long migrated = 0;
        for (long pfn : inUse) {
            int rc = -Errno.ENOMEM;
            for (int i = 1; i < memory.nodes().size() && rc != 0; i++) {
                rc = folio.migrateWithRetries(pfn, (node + i) % memory.nodes().size(), false);
            }
            if (rc != 0) {
                throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " could not be migrated ("
                        + Errno.describe(rc) + "); " + migrated + " pages were migrated before it");
            }
            migrated++;
        }
        synchronized (lock) {
            long dissolved = 0;
            for (long pfn : freeHuge) {
                HugePagePool pool = pools.poolOf(pfn);
                if (pool != null && pool.dissolve(pfn, false)) {
                    dissolved++;
                }
            }
            long offlined = memory.allocator(node).isolateRange(startPfn, endPfn);
            hook.afterOperation("memory offline");
            return new OfflineResult(migrated, dissolved, offlined);
        }
    }

    private void checked(String operation) {
        synchronized (lock) {
            hook.afterOperation(operation);
        }
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

    private void checkPfn(long pfn) {
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(memory.frameCount()));
        }
    }
}
