package org.vmcore.impl.migrate;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OfflineResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.x86.internal.PageTableWindow;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.NumaNode;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * Memory offline (mm/memory_hotplug.c: offline_pages, scan_movable_pages, do_migrate_range,
 * dissolve_free_hugetlb_folios): every page in use in the range is migrated to another node by
 * {@link MigrateFolio}, free huge pages are dissolved, and the range is isolated from the buddy
 * allocator. Page tables and gigantic pages in use cannot move, so the range is refused first.
 *
 * <p>It may touch the frame descriptors, the hugetlb pools, the page-table windows and the
 * node's allocator.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class MemoryOffline {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MigrateFolio folio;
    private final OperationHook hook;
    private final HugetlbPools pools;
    private final int nodeCount;

    MemoryOffline(MachineLock lock, PhysicalMemory memory, MigrateFolio folio, OperationHook hook, HugetlbPools pools, int nodeCount) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.folio = folio;
        this.hook = hook;
        this.pools = pools;
        this.nodeCount = nodeCount;
    }

    /** offline_pages of [startPfn, endPfn) on {@code node}, which the caller has not checked. */
    OfflineResult offlinePages(int node, long startPfn, long endPfn) {
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
        long migrated = 0;
        // offline_pages' loop: scan and migrate until a scan finds nothing left to move. Pages
        // may be allocated in the range while its pages migrate (vmcore has no isolated
        // pageblocks), so only the scan that finds none, under the exclusive lock, isolates it.
        for (int pass = 0; ; pass++) {
            List<Long> inUse = new ArrayList<>();
            List<Long> freeHuge = new ArrayList<>();
            try (MachineLock.Held locked = lock.exclusive()) {
                lock.ensureOpen();
                scan(startPfn, endPfn, inUse, freeHuge);
                if (inUse.isEmpty()) {
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
            if (pass == PASSES) {
                throw new VmException("cannot offline [0x" + Long.toHexString(startPfn) + ", 0x" + Long.toHexString(endPfn)
                        + "): pages kept being allocated in it (-EBUSY); " + migrated + " pages were migrated");
            }
            migrated += migrate(node, inUse, migrated);
        }
    }

    /** How many times the range is scanned and its pages migrated before the offline gives up. */
    private static final int PASSES = 10;

    /** scan_movable_pages, under the exclusive lock: the pages in use and the free huge pages of the range. */
    private void scan(long startPfn, long endPfn, List<Long> inUse, List<Long> freeHuge) {
        for (PageTableWindow window : SharedSecrets.pageTableFrames(memory).windows()) {
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
            if ((flags & (FrameFlags.RESERVED | FrameFlags.UPTODATE)) == (FrameFlags.RESERVED | FrameFlags.UPTODATE)) {
                throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " is the shared zero page,"
                        + " which is reserved (-EBUSY)");
            }
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

    /** do_migrate_range: each page to another node; returns how many moved (a page freed meanwhile is passed by). */
    private long migrate(int node, List<Long> inUse, long before) {
        long migrated = 0;
        for (long pfn : inUse) {
            int rc = -Errno.ENOMEM;
            for (int i = 1; i < memory.nodes().size() && rc != 0 && rc != -Errno.ENOENT; i++) {
                rc = folio.migrateWithRetries(pfn, (node + i) % memory.nodes().size(), false);
            }
            if (rc == -Errno.ENOENT) {
                continue; // freed since the scan: the next scan sees its frame free
            }
            if (rc != 0) {
                throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " could not be migrated ("
                        + Errno.describe(rc) + "); " + (before + migrated) + " pages were migrated before it");
            }
            migrated++;
        }
        return migrated;
    }

    private void checked(String operation) {
        hook.afterOperation(operation);
    }
}
