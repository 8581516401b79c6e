package org.vmcore.impl.migrate;

import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongFunction;
import org.vmcore.api.Errno;
import org.vmcore.api.MigrationEvent;
import org.vmcore.api.MigrationObserver;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.FolioLock;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.rmap.TryToUnmap;
import org.vmcore.impl.stat.MigrationPhaseEvent;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.MappingOwner;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * Migrating one folio (mm/migrate.c: unmap_and_move, unmap_and_move_huge_page, with
 * migrate_pages' retry passes): lock, isolate, allocate the target on the wanted node, unmap
 * with migration entries (try_to_migrate), check references, copy, move the page-cache slot
 * (folio_migrate_mapping), remove the migration entries (remove_migration_ptes), unlock, free the
 * old page. A failure puts the page back unchanged; -EAGAIN is retried for up to 10 passes. The
 * {@link MigrationObserver} hears each phase; pgmigrate and hugetlb_migrate counters are kept here.
 *
 * <p>It may touch physical memory, the hugetlb pools, the mapping registry, try_to_migrate and
 * remove_migration_ptes, and the operation hook. Each page is migrated under the machine lock,
 * released between pages, so CPUs that fault on a migration entry wait exactly until it ends.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class MigrateFolio {
    private static final int PASSES = 10;

    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final HugetlbPools pools;
    private final MappingRegistry registry;
    private final TryToUnmap unmap;
    private final RemoveMigrationPtes removeMigrationPtes;
    private final MigrationEntryRefs migrationRefs;
    private final CallbackFailures callbackFailures;
    private final OperationHook hook;
    private final MigratingThread migrating;
    private final LongFunction<PageReference> tryGetPage;
    private final SwapCache swapCache;
    private volatile MigrationObserver observer;
    private final AtomicLong success = new AtomicLong();
    private final AtomicLong fail = new AtomicLong();
    private final AtomicLong hugetlbSuccess = new AtomicLong();
    private final AtomicLong thpSuccess = new AtomicLong();
    private final AtomicLong thpFail = new AtomicLong();
    private final AtomicLong hugetlbFail = new AtomicLong();

    MigrateFolio(MachineLock lock, PhysicalMemory memory, HugetlbPools pools, MappingRegistry registry, TryToUnmap unmap,
                 RemoveMigrationPtes removeMigrationPtes, MigrationEntryRefs migrationRefs, CallbackFailures callbackFailures,
                 OperationHook hook, MigratingThread migrating, LongFunction<PageReference> tryGetPage, SwapCache swapCache) {
        this.tryGetPage = tryGetPage;
        this.swapCache = swapCache;
        this.lock = lock;
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.pools = pools;
        this.registry = registry;
        this.unmap = unmap;
        this.removeMigrationPtes = removeMigrationPtes;
        this.migrationRefs = migrationRefs;
        this.callbackFailures = callbackFailures;
        this.hook = hook;
        this.migrating = migrating;
    }

    void setObserver(MigrationObserver observer) {
        this.observer = observer;
    }

    /** pgmigrate_success/fail and hugetlb_migrate_success/fail, as /proc/vmstat names them. */
    Map<String, Long> stats() {
        Map<String, Long> out = new LinkedHashMap<>();
        out.put("pgmigrate_success", success.get());
        out.put("pgmigrate_fail", fail.get());
        out.put("hugetlb_migrate_success", hugetlbSuccess.get());
        out.put("hugetlb_migrate_fail", hugetlbFail.get());
        out.put("thp_migration_success", thpSuccess.get());
        out.put("thp_migration_fail", thpFail.get());
        return out;
    }

    /**
     * migrate_pages' retry loop for one folio: up to 10 passes while it answers -EAGAIN, each
     * under the machine lock held shared: other operations go on meanwhile, and only the folio
     * lock and the rmap and page-table locks the migration takes keep them off this page.
     */
    int migrateWithRetries(long pfn, int toNode, boolean poisonOld) {
        return migrateWithRetries(pfn, toNode, poisonOld, 0);
    }

    /**
     * As {@link #migrateWithRetries(long, int, boolean)} for a page the caller {@link #isolate isolated}
     * when it queued it, so that the page was not freed and reused by another process before its turn.
     */
    int migrateQueued(long pfn, int toNode) {
        return migrateWithRetries(pfn, toNode, false, 1);
    }

    /**
     * isolate_folio_to_list, under the machine lock, for a mapped page that move_pages or
     * migrate_pages queues: a reference (a PFN walker's, which the invariant checker counts) and
     * PG_isolated, held until {@link #putback}; null when another call has the page queued.
     */
    PageReference isolate(long pfn) {
        if (descriptors.folio(pfn) != pfn) {
            return null; // a page inside a transparent huge page: only its head isolates it
        }
        PageReference ref = tryGetPage.apply(pfn);
        if (ref != null && !descriptors.trySetFlag(ref.pfn(), FrameFlags.ISOLATED)) {
            ref.close();
            return null;
        }
        return ref;
    }

    /** folio_putback of an {@link #isolate isolated} page, once: PG_isolated goes, then the reference (maybe the last). */
    void putback(PageReference ref) {
        try (MachineLock.Held locked = lock.shared()) {
            if (!lock.isClosed()) { // a close (a callback's, between pages) freed the descriptors
                descriptors.clearFlags(ref.pfn(), FrameFlags.ISOLATED);
            }
            ref.close();
        }
    }

    private int migrateWithRetries(long pfn, int toNode, boolean poisonOld, int queued) {
        int rc = -Errno.EAGAIN;
        for (int pass = 0; pass < PASSES && rc == -Errno.EAGAIN; pass++) {
            if (pass > 0) {
                Thread.yield(); // let the fault or truncation holding the page finish
            }
            Throwable failure = null;
            try (MachineLock.Held locked = lock.shared()) {
                lock.ensureOpen();
                try {
                    rc = migrateOne(pfn, toNode, poisonOld, queued);
                } catch (Throwable e) {
                    failure = e;
                }
            }
            if (failure != null) {
                throw hook.operationFailed(failure);
            }
            hook.operationDone(); // a close a callback asked for happens between pages
        }
        return rc;
    }

    /**
     * unmap_and_move for one folio, under the machine lock: isolation (a reference unless the
     * page is free), the folio lock (only tried: a page locked by a fault or another migration
     * answers -EAGAIN), then the move.
     */
    private int migrateOne(long pfn, int toNode, boolean poisonOld, int queued) {
        assert lock.isHeldByCurrentThread();
        int flags = descriptors.flags(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0 || (flags & FrameFlags.HWPOISON) != 0) {
            return -Errno.ENOENT; // freed or poisoned since it was queued
        }
        if (memory.nodeOf(pfn) == toNode && !poisonOld) {
            return 0;
        }
        boolean thp = (flags & FrameFlags.LARGE_RMAPPABLE) != 0;
        if (!descriptors.getUnlessZero(pfn)) { // isolation: the page stays alive while it is unmapped
            return -Errno.ENOENT;
        }
        if (!FolioLock.tryLock(descriptors, pfn)) {
            putIsolation(pfn); // a truncation holding the lock may have dropped the cache's reference
            return -Errno.EAGAIN;
        }
        flags = descriptors.flags(pfn); // again, under the lock: it may have left its file meanwhile
        if ((flags & FrameFlags.ALLOCATED) == 0 || descriptors.mapping(pfn) == 0 || (flags & FrameFlags.HWPOISON) != 0) {
            FolioLock.unlock(descriptors, pfn);
            putIsolation(pfn);
            return -Errno.ENOENT;
        }
        boolean huge = (flags & FrameFlags.HUGETLB) != 0;
        HugePagePool pool = huge ? pools.poolOf(pfn) : null;
        PageSize size = pool != null ? pool.size() : thp ? PageSize.SIZE_2M : PageSize.SIZE_4K;
        long target = huge ? pool.allocateOnNode(toNode) : memory.tryAllocate(toNode, thp ? MemMap.LARGE_ORDER : 0, false);
        int rc;
        migrating.enter(pfn);
        if (target >= 0) {
            // the new folio is locked too until its entries are in place (migrate_folio_unmap's
            // folio_trylock(dst)): a truncation that finds it in the cache after the copy waits
            FolioLock.tryLock(descriptors, target);
            migrating.enter(target);
        }
        FolioFailures move = new FolioFailures(); // this folio's own, settled before it is rethrown
        try {
            if (target < 0) {
                rc = -Errno.ENOMEM;
            } else {
                rc = moveMapped(pfn, target, size, toNode, queued, move);
            }
        } finally {
            if (target >= 0) {
                migrating.exit();
                FolioLock.unlock(descriptors, target);
            }
            migrating.exit();
            FolioLock.unlock(descriptors, pfn);
        }
        finish(pfn, target, rc, huge, pool, poisonOld, size);
        if (move.any()) {
            throw CallbackFailures.sneaky(callbackFailures.suppressInto(move.take()));
        }
        callbackFailures.rethrow(); // a notifier failure after the copy: the migration completed
        return rc;
    }

    /**
     * Unmap, copy, remap. A callback that throws before the copy (a notifier during the unmap, the
     * observer at AFTER_UNMAP or BEFORE_COPY) makes it put the page back as a failed migration
     * does; one that throws after the copy lets the migration complete. Either way the failure is
     * left in {@code move}, the observer is not called again, and the caller rethrows it.
     */
    private int moveMapped(long pfn, long target, PageSize size, int toNode, int queued, FolioFailures move) {
        boolean wasMapped = memory.descriptors().folioMapcount(pfn) > 0;
        if (wasMapped) {
            var event = phaseEvent();
            try {
                unmap.tryToMigrate(pfn);
            } catch (Throwable e) { // a notifier refused at invalidateRangeStart
                move.add(e);
            }
            Throwable collected = callbackFailures.take();
            if (collected != null) {
                move.add(collected);
            }
            commit(event, "unmap", pfn, target, size);
            notify(MigrationPhase.AFTER_UNMAP, pfn, target, size, toNode, move);
        }
        int rc = -Errno.EAGAIN;
        MappingOwner owner = registry.owner(descriptors.mapping(pfn));
        boolean cached = (descriptors.flags(pfn) & FrameFlags.ANON) == 0 && owner != null;
        // migrate_huge_page_move_mapping: the isolation references plus the page cache's, nothing else
        int expected = 1 + queued + (cached ? 1 : 0) + (swapCache.slotOf(pfn) >= 0 ? 1 : 0); // and the swap cache's
        if (!move.any() && memory.descriptors().folioMapcount(pfn) == 0 && descriptors.refcount(pfn) == expected) {
            notify(MigrationPhase.BEFORE_COPY, pfn, target, size, toNode, move);
        }
        if (!move.any() && memory.descriptors().folioMapcount(pfn) == 0 && descriptors.refcount(pfn) == expected) {
            var event = phaseEvent();
            memory.contents().copy(pfn, target, size.frames());
            Initiator.pageCopy(size.bytes());
            descriptors.setFlags(target, descriptors.flags(pfn)
                    & (FrameFlags.ANON | FrameFlags.UPTODATE | FrameFlags.DIRTY | FrameFlags.LAZYFREE | FrameFlags.LARGE_RMAPPABLE));
            descriptors.setMapping(target, descriptors.mapping(pfn), descriptors.index(pfn));
            if (cached) {
                replaceInPageCache((FileMapping) owner, pfn, target); // the cache's reference moves with the slot
                descriptors.addRefcount(target, 1);
                descriptors.addRefcount(pfn, -1);
            }
            swapCache.migrate(pfn, target);
            if ((descriptors.flags(pfn) & FrameFlags.ANON) == 0) {
                // move_to_new_folio: the old file folio leaves its mapping, so a PFN walker still
                // holding it (soft offline, memory offline) does not take it for a cache page
                descriptors.setMapping(pfn, 0, 0);
            }
            commit(event, "copy", pfn, target, size);
            rc = 0;
            notify(MigrationPhase.AFTER_COPY, pfn, target, size, toNode, move);
        }
        if (wasMapped) {
            var event = phaseEvent();
            removeMigrationPtes.removeMigrationPtes(pfn, rc == 0 ? target : pfn);
            commit(event, rc == 0 ? "remap" : "put back", pfn, target, size);
            notify(MigrationPhase.AFTER_REMAP, pfn, target, size, toNode, move);
        }
        return rc != 0 && move.any() ? -Errno.EBUSY : rc;
    }

    private void finish(long pfn, long target, int rc, boolean huge, HugePagePool pool, boolean poisonOld, PageSize size) {
        boolean thp = !huge && size != PageSize.SIZE_4K;
        if (rc == 0) {
            if (descriptors.addRefcount(target, -1) == 0) { // the allocation's reference: mappings and cache hold it now
                migrationRefs.releaseIfUnreferenced(target); // unless the page's mappings went while it moved
            }
            if (poisonOld) {
                // page_handle_poison: the frame is poisoned now, even while a PFN walker still holds
                // a reference to it; the walker's put then keeps it out of use (SpeculativeRefs)
                descriptors.setFlags(pfn, FrameFlags.HWPOISON);
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
            success.addAndGet(size.frames());
            if (huge) {
                hugetlbSuccess.incrementAndGet();
            } else if (thp) {
                thpSuccess.incrementAndGet();
            }
            return;
        }
        putIsolation(pfn); // put back; the last reference when the page's mappings went while it was out
        if (target >= 0) {
            // folio_put of the new page: only its allocation reference is the migration's. A PFN
            // walker that took one meanwhile (Machine.tryGetPage, from an observer) keeps the page
            // until its own put frees it.
            if (descriptors.refcount(target) > 1) {
                descriptors.addRefcount(target, -1);
            } else {
                descriptors.setRefcount(target, 1);
                if (huge) {
                    pool.free(target);
                } else {
                    memory.free(target);
                }
            }
        }
        if (rc != -Errno.EAGAIN) {
            fail.addAndGet(size.frames());
            if (huge) {
                hugetlbFail.incrementAndGet();
            } else if (thp) {
                thpFail.incrementAndGet();
            }
        }
    }

    /** Drops the isolation reference; the page goes if it was the last and no migration entry points at it. */
    private void putIsolation(long pfn) {
        if (descriptors.addRefcount(pfn, -1) == 0) {
            migrationRefs.releaseIfUnreferenced(pfn);
        }
    }

    private static MigrationPhaseEvent phaseEvent() {
        var event = new MigrationPhaseEvent();
        event.begin();
        return event;
    }

    private static void commit(MigrationPhaseEvent event, String phase, long pfn, long target, PageSize size) {
        if (event.shouldCommit()) {
            event.phase = phase;
            event.oldPfn = pfn;
            event.newPfn = target;
            event.size = size.bytes();
            event.commit();
        }
    }

    /** Tells the observer, unless it (or a notifier) already threw during this folio's migration. */
    private void notify(MigrationPhase phase, long pfn, long target, PageSize size, int toNode, FolioFailures move) {
        MigrationObserver o = observer;
        if (o != null && !move.any()) {
            callbackFailures.enter();
            try {
                o.onPhase(new MigrationEvent(phase, pfn, target, size, toNode));
            } catch (Throwable e) {
                move.add(e);
            } finally {
                callbackFailures.exit();
            }
        }
    }


    /**
     * Moves a page-cache slot from {@code oldPfn} to {@code newPfn} (folio_migrate_mapping of a
     * file page), under the cache's lock. Pages leave a cache only under their folio lock, which
     * the migration holds, so the slot still holds the old page.
     */
    private void replaceInPageCache(FileMapping mapping, long oldPfn, long newPfn) {
        long index = descriptors.index(oldPfn) >>> descriptors.order(oldPfn);
        synchronized (mapping) {
            if (mapping.find(index) != oldPfn) {
                throw new IllegalStateException("page cache slot " + index + " does not hold pfn 0x" + Long.toHexString(oldPfn));
            }
            mapping.add(index, newPfn);
        }
    }

    /**
     * What the callbacks of one folio's migration threw: a plain local collector (the first
     * failure, later ones suppressed into it), where the machine's per-thread record would cost a
     * thread-local per folio.
     */
    private static final class FolioFailures {
        private Throwable first;

        void add(Throwable t) {
            if (first == null) {
                first = t;
            } else if (first != t) {
                first.addSuppressed(t);
            }
        }

        boolean any() {
            return first != null;
        }

        Throwable take() {
            Throwable e = first;
            first = null;
            return e;
        }
    }
}
