package org.vmcore.impl.migrate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MigrationEvent;
import org.vmcore.api.MigrationObserver;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.OfflineResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.VmException;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.NumaNode;
import org.vmcore.x86.mem.PageTableWindow;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * migrate_pages(2), move_pages(2), soft offline and memory offline over one folio migration
 * (unmap_and_move / unmap_and_move_huge_page): lock, isolate, allocate the target, unmap with
 * migration entries, check references, copy, move the page-cache slot, remove the migration
 * entries, unlock, free the old page. A failure puts the page back unchanged; -EAGAIN is retried
 * for up to 10 passes, as migrate_pages does.
 *
 * <p>Each page is migrated under the machine lock and the lock is released between pages, so
 * CPUs that fault on a migration entry wait exactly until that page's migration ends.
 */
public final class MigrationServiceImpl implements MigrationService {
    private static final int PASSES = 10;

    private final SimMachine machine;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MigrationUnmap unmap;
    private final MigrationEntryRefs migrationRefs;
    private volatile MigrationObserver observer;
    private volatile Thread migrating;
    private final AtomicLong success = new AtomicLong();
    private final AtomicLong fail = new AtomicLong();
    private final AtomicLong hugetlbSuccess = new AtomicLong();
    private final AtomicLong hugetlbFail = new AtomicLong();

    public MigrationServiceImpl(SimMachine machine, MigrationUnmap unmap) {
        this.machine = machine;
        this.memory = machine.memory();
        this.descriptors = memory.descriptors();
        this.unmap = unmap;
        this.migrationRefs = new MigrationEntryRefs(machine);
    }

    /** Whether the current thread is inside a page migration (running an observer). */
    public boolean migratingOnThisThread() {
        return migrating == Thread.currentThread();
    }

    @Override
    public void setObserver(MigrationObserver observer) {
        machine.ensureOpen();
        this.observer = observer;
    }

    @Override
    public Map<String, Long> stats() {
        machine.ensureOpen();
        Map<String, Long> out = new LinkedHashMap<>();
        out.put("pgmigrate_success", success.get());
        out.put("pgmigrate_fail", fail.get());
        out.put("hugetlb_migrate_success", hugetlbSuccess.get());
        out.put("hugetlb_migrate_fail", hugetlbFail.get());
        return out;
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
            machine.checkNode(fromNodes[i]);
            machine.checkNode(toNodes[i]);
        }
        boolean moveAll = (flags & MPOL_MF_MOVE_ALL) != 0;
        int notMigrated = 0;
        for (int i = 0; i < fromNodes.length; i++) {
            if (fromNodes[i] == toNodes[i]) {
                continue;
            }
            Set<Long> queue = new LinkedHashSet<>();
            synchronized (machine.lock()) {
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
                if (migrateWithRetries(pfn, toNodes[i], false) != 0) {
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
            synchronized (machine.lock()) {
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
            int rc = migrateWithRetries(batch.get(k), node, false);
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
        synchronized (machine.lock()) {
            machine.ensureOpen();
            checkPfn(pfn);
            int flags = descriptors.flags(pfn);
            if ((flags & FrameFlags.HWPOISON) != 0) {
                return -Errno.EBUSY;
            }
            HugePagePool pool = machine.hugetlbfsImpl().poolOf(pfn);
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
            rc = migrateWithRetries(pfn, (home + i) % memory.nodes().size(), true);
        }
        checked("soft offline");
        return rc == 0 ? 0 : -Errno.EBUSY;
    }

    // ---- memory offline ----

    @Override
    public OfflineResult offlineRange(int node, long startPfn, long endPfn) {
        machine.ensureOpen();
        machine.checkNode(node);
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
        synchronized (machine.lock()) {
            machine.ensureOpen();
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
                HugePagePool pool = machine.hugetlbfsImpl().poolOf(pfn);
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
                rc = migrateWithRetries(pfn, (node + i) % memory.nodes().size(), false);
            }
            if (rc != 0) {
                throw new VmException("cannot offline: pfn 0x" + Long.toHexString(pfn) + " could not be migrated ("
                        + Errno.describe(rc) + "); " + migrated + " pages were migrated before it");
            }
            migrated++;
        }
        synchronized (machine.lock()) {
            long dissolved = 0;
            for (long pfn : freeHuge) {
                HugePagePool pool = machine.hugetlbfsImpl().poolOf(pfn);
                if (pool != null && pool.dissolve(pfn, false)) {
                    dissolved++;
                }
            }
            long offlined = memory.allocator(node).isolateRange(startPfn, endPfn);
            machine.afterOperation("memory offline");
            return new OfflineResult(migrated, dissolved, offlined);
        }
    }

    // ---- one folio ----

    private int migrateWithRetries(long pfn, int toNode, boolean poisonOld) {
        int rc = -Errno.EAGAIN;
        for (int pass = 0; pass < PASSES && rc == -Errno.EAGAIN; pass++) {
            synchronized (machine.lock()) {
                machine.ensureOpen();
                try {
                    rc = migrateOne(pfn, toNode, poisonOld);
                } catch (Throwable e) {
                    throw machine.operationFailed(e);
                }
                machine.operationDone(); // a close a callback asked for happens between pages
            }
            if (rc == -Errno.EAGAIN) {
                Thread.onSpinWait();
            }
        }
        return rc;
    }

    /** unmap_and_move for one folio, under the machine lock. */
    int migrateOne(long pfn, int toNode, boolean poisonOld) {
        int flags = descriptors.flags(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0 || (flags & FrameFlags.HWPOISON) != 0) {
            return -Errno.ENOENT; // freed or poisoned since it was queued
        }
        if (memory.nodeOf(pfn) == toNode && !poisonOld) {
            return 0;
        }
        boolean huge = (flags & FrameFlags.HUGETLB) != 0;
        HugePagePool pool = huge ? machine.hugetlbfsImpl().poolOf(pfn) : null;
        PageSize size = pool != null ? pool.size() : PageSize.SIZE_4K;
        if (!descriptors.trySetFlag(pfn, FrameFlags.LOCKED)) {
            return -Errno.EAGAIN;
        }
        descriptors.addRefcount(pfn, 1); // isolation: the page stays alive while it is unmapped
        long target = huge ? pool.allocateOnNode(toNode) : memory.tryAllocate(toNode, 0, false);
        int rc;
        Thread previous = migrating;
        migrating = Thread.currentThread();
        CallbackFailures move = new CallbackFailures(); // this folio's own, settled before it is rethrown
        try {
            if (target < 0) {
                rc = -Errno.ENOMEM;
            } else {
                rc = moveMapped(pfn, target, size, toNode, move);
            }
        } finally {
            migrating = previous;
            descriptors.clearFlags(pfn, FrameFlags.LOCKED);
        }
        finish(pfn, target, rc, huge, pool, poisonOld);
        if (move.any()) {
            throw CallbackFailures.sneaky(machine.callbackFailures().suppressInto(move.take()));
        }
        machine.callbackFailures().rethrow(); // a notifier failure after the copy: the migration completed
        return rc;
    }

    /**
     * Unmap, copy, remap. A callback that throws before the copy (a notifier during the unmap, the
     * observer at AFTER_UNMAP or BEFORE_COPY) makes it put the page back as a failed migration
     * does; one that throws after the copy lets the migration complete. Either way the failure is
     * left in {@code move}, the observer is not called again, and the caller rethrows it.
     */
    private int moveMapped(long pfn, long target, PageSize size, int toNode, CallbackFailures move) {
        boolean wasMapped = descriptors.mapcount(pfn) > 0;
        if (wasMapped) {
            var event = phaseEvent();
            try {
                unmap.tryToMigrate(pfn);
            } catch (Throwable e) { // a notifier refused at invalidateRangeStart
                move.add(e);
            }
            Throwable collected = machine.callbackFailures().take();
            if (collected != null) {
                move.add(collected);
            }
            commit(event, "unmap", pfn, target, size);
            notify(MigrationPhase.AFTER_UNMAP, pfn, target, size, toNode, move);
        }
        int rc = -Errno.EAGAIN;
        Object owner = machine.mappingOwner(descriptors.mapping(pfn));
        boolean cached = (descriptors.flags(pfn) & FrameFlags.ANON) == 0 && owner != null;
        // migrate_huge_page_move_mapping: the isolation reference plus the page cache's, nothing else
        int expected = 1 + (cached ? 1 : 0);
        if (!move.any() && descriptors.mapcount(pfn) == 0 && descriptors.refcount(pfn) == expected) {
            notify(MigrationPhase.BEFORE_COPY, pfn, target, size, toNode, move);
        }
        if (!move.any() && descriptors.mapcount(pfn) == 0 && descriptors.refcount(pfn) == expected) {
            var event = phaseEvent();
            memory.contents().copy(pfn, target, size.frames());
            descriptors.setFlags(target, descriptors.flags(pfn) & (FrameFlags.ANON | FrameFlags.UPTODATE | FrameFlags.DIRTY));
            descriptors.setMapping(target, descriptors.mapping(pfn), descriptors.index(pfn));
            if (cached) {
                machine.replaceInPageCache(owner, pfn, target); // the cache's reference moves with the slot
                descriptors.addRefcount(target, 1);
                descriptors.addRefcount(pfn, -1);
            }
            commit(event, "copy", pfn, target, size);
            rc = 0;
            notify(MigrationPhase.AFTER_COPY, pfn, target, size, toNode, move);
        }
        if (wasMapped) {
            var event = phaseEvent();
            unmap.removeMigrationPtes(pfn, rc == 0 ? target : pfn);
            commit(event, rc == 0 ? "remap" : "put back", pfn, target, size);
            notify(MigrationPhase.AFTER_REMAP, pfn, target, size, toNode, move);
        }
        return rc != 0 && move.any() ? -Errno.EBUSY : rc;
    }

    private void finish(long pfn, long target, int rc, boolean huge, HugePagePool pool, boolean poisonOld) {
        if (rc == 0) {
            if (descriptors.addRefcount(target, -1) == 0) { // the allocation's reference: mappings and cache hold it now
                migrationRefs.releaseIfUnreferenced(target); // unless the page's mappings went while it moved
            }
            if (descriptors.addRefcount(pfn, -1) == 0) { // the isolation reference was the last
                if (poisonOld) {
                    if (huge) {
                        pool.retireInUse(pfn, true);
                    } else {
                        descriptors.setRefcount(pfn, 0);
                        descriptors.setMapping(pfn, 0, 0);
                        descriptors.clearFlags(pfn, FrameFlags.ANON | FrameFlags.DIRTY | FrameFlags.UPTODATE);
                        descriptors.setFlags(pfn, FrameFlags.HWPOISON);
                    }
                } else if (huge) {
                    pool.free(pfn);
                } else {
                    memory.free(pfn);
                }
            }
            success.addAndGet(huge ? pool.size().frames() : 1);
            if (huge) {
                hugetlbSuccess.incrementAndGet();
            }
            return;
        }
        if (descriptors.addRefcount(pfn, -1) == 0) { // put back: drop the isolation reference
            migrationRefs.releaseIfUnreferenced(pfn); // the last, when the page's mappings went while it was out
        }
        if (target >= 0) {
            descriptors.setRefcount(target, 1);
            if (huge) {
                pool.free(target);
            } else {
                memory.free(target);
            }
        }
        if (rc != -Errno.EAGAIN) {
            fail.addAndGet(huge ? pool.size().frames() : 1);
            if (huge) {
                hugetlbFail.incrementAndGet();
            }
        }
    }

    private static org.vmcore.impl.stat.MigrationPhaseEvent phaseEvent() {
        var event = new org.vmcore.impl.stat.MigrationPhaseEvent();
        event.begin();
        return event;
    }

    private static void commit(org.vmcore.impl.stat.MigrationPhaseEvent event, String phase, long pfn, long target, PageSize size) {
        if (event.shouldCommit()) {
            event.phase = phase;
            event.oldPfn = pfn;
            event.newPfn = target;
            event.size = size.bytes();
            event.commit();
        }
    }

    private void checked(String operation) {
        synchronized (machine.lock()) {
            machine.afterOperation(operation);
        }
    }

    /** Tells the observer, unless it (or a notifier) already threw during this folio's migration. */
    private void notify(MigrationPhase phase, long pfn, long target, PageSize size, int toNode, CallbackFailures move) {
        MigrationObserver o = observer;
        if (o != null && !move.any()) {
            CallbackFailures calls = machine.callbackFailures();
            calls.enter();
            try {
                o.onPhase(new MigrationEvent(phase, pfn, target, size, toNode));
            } catch (Throwable e) { // anything: also a checked exception thrown sneakily
                move.add(e);
            } finally {
                calls.exit();
            }
        }
    }


    private SimAddressSpace checkSpace(AddressSpace addressSpace) {
        machine.ensureOpen();
        if (!(addressSpace instanceof SimAddressSpace mm) || mm.machine() != machine) {
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
