package org.vmcore.impl.migrate;

import java.util.LinkedHashMap;
import java.util.Map;
import org.vmcore.api.PageReference;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * migrate_pages(2) (mm/mempolicy.c: do_migrate_pages, queue_pages_range): for each pair of nodes,
 * the pages of the address space on the source node are queued (MPOL_MF_MOVE takes only pages
 * mapped once, MPOL_MF_MOVE_ALL every one) and each is migrated by {@link MigrateFolio}. The
 * queue is built under the machine lock, the pages move one by one with the lock released between;
 * each stays isolated ({@link MigrateFolio#isolate}) from its queueing to its migration.
 *
 * <p>It may touch the address space's mapped pages (read only), physical memory's node map and
 * the frame descriptors.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class MigratePages {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MigrateFolio folio;
    private final OperationHook hook;

    MigratePages(MachineLock lock, PhysicalMemory memory, MigrateFolio folio, OperationHook hook) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.folio = folio;
        this.hook = hook;
    }

    /** do_migrate_pages: every page of {@code mm} on {@code fromNodes[i]} moves to {@code toNodes[i]}; returns how many did not. */
    int migratePages(SimAddressSpace mm, int[] fromNodes, int[] toNodes, boolean moveAll) {
        int notMigrated = 0;
        for (int i = 0; i < fromNodes.length; i++) {
            if (fromNodes[i] == toNodes[i]) {
                continue;
            }
            Map<Long, PageReference> queue = new LinkedHashMap<>();
            try {
                try (MachineLock.Held locked = lock.shared(); MachineLock.Held mmap = mm.mmapRead()) {
                    mm.ensureOpen();
                    int source = fromNodes[i];
                    for (VmArea v : mm.vmaAreas()) {
                        mm.forEachMappedPage(v, (va, page) -> {
                            long pfn = descriptors.folio(page); // a page of a huge page queues its folio
                            // queue_folios_pte_range / queue_pages_hugetlb: MOVE takes only unshared pages,
                            // each isolated (a reference held) until its migration is over
                            if (!queue.containsKey(pfn) && memory.nodeOf(pfn) == source
                                    && (moveAll || !descriptors.folioMappedShared(pfn))) {
                                PageReference ref = folio.isolate(pfn);
                                if (ref != null) {
                                    queue.put(pfn, ref);
                                }
                            }
                        });
                    }
                }
                for (var it = queue.entrySet().iterator(); it.hasNext(); ) {
                    var e = it.next();
                    int rc;
                    try {
                        rc = folio.migrateQueued(e.getKey(), toNodes[i]);
                    } finally {
                        folio.putback(e.getValue());
                        it.remove();
                    }
                    if (rc != 0) {
                        notMigrated++;
                    }
                }
            } finally {
                queue.values().forEach(folio::putback); // those a failure left queued
            }
        }
        checked("migrate_pages");
        return notMigrated;
    }

    private void checked(String operation) {
        hook.afterOperation(operation);
    }
}
