package org.vmcore.impl.migrate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.Errno;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageReference;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * move_pages(2) (mm/migrate.c: do_pages_move, add_page_for_migration, move_pages_and_store_status,
 * do_pages_stat): runs of pages bound for one node form a batch that {@link MigrateFolio} migrates;
 * a page that cannot be queued, or a change of node, migrates the batch so far, and the first batch
 * with failures stops the call (the pages after it are NOT_ATTEMPTED).
 *
 * <p>It may touch the address space's page lookup, physical memory's node map and the frame
 * descriptors; each lookup holds the machine lock, each migration takes it itself. A queued page
 * stays isolated ({@link MigrateFolio#isolate}) until its migration is over, so it cannot be
 * freed and reused by another process meanwhile.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class MovePages {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MigrateFolio folio;
    private final OperationHook hook;

    MovePages(MachineLock lock, PhysicalMemory memory, MigrateFolio folio, OperationHook hook) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.folio = folio;
        this.hook = hook;
    }

    /** do_pages_move: each address's page moves to its node (or, with no nodes, its node is reported). */
    MovePagesResult movePages(SimAddressSpace mm, long[] addresses, int[] nodes, boolean moveAll) {
        List<PageReference> refs = new ArrayList<>();
        try {
            return movePages(mm, addresses, nodes, moveAll, refs);
        } finally {
            refs.forEach(folio::putback); // pages queued but never migrated (the call failed)
        }
    }

    private MovePagesResult movePages(SimAddressSpace mm, long[] addresses, int[] nodes, boolean moveAll,
                                      List<PageReference> refs) {
        int n = addresses.length;
        int[] status = new int[n];
        // do_pages_move: runs of queued pages with one target node form a batch; any page not
        // queued (error or already there) and any change of node migrates the batch so far
        LongArrayList batch = new LongArrayList();
        int batchNode = -1;
        int start = 0;
        for (int i = 0; i < n; i++) {
            if (nodes != null && !batch.isEmpty() && nodes[i] != batchNode) {
                int failed = moveBatch(batch, refs, batchNode, status, start);
                if (failed > 0) {
                    return aborted(status, i, failed + n - i);
                }
            }
            if (batch.isEmpty()) {
                batchNode = nodes == null ? -1 : nodes[i];
                start = i;
            }
            long head = -1;
            try (MachineLock.Held locked = lock.shared(); MachineLock.Held mmap = mm.mmapRead()) {
                mm.ensureOpen();
                status[i] = lookup(mm, addresses[i], nodes == null ? -1 : nodes[i], moveAll);
                if (status[i] == QUEUE) {
                    head = folioAt(mm, addresses[i]); // again: a migration takes no mmap_lock, it may have begun
                    PageReference ref = head < 0 || batch.contains(head) ? null : folio.isolate(head);
                    if (ref == null) {
                        status[i] = head < 0 ? -Errno.ENOENT : -Errno.EBUSY; // already isolated, by this batch or another call
                    } else {
                        refs.add(ref);
                    }
                }
            }
            if (status[i] == QUEUE) {
                batch.add(head);
                continue;
            }
            int failed = moveBatch(batch, refs, batchNode, status, start);
            if (failed > 0) {
                return aborted(status, i + 1, failed + n - i - 1); // page i has its status already
            }
        }
        int failed = moveBatch(batch, refs, batchNode, status, start);
        checked("move_pages");
        return new MovePagesResult(failed, status);
    }

    /** The head of the folio mapped at va (of a transparent huge page mapped by PTEs too), or -1. */
    private long folioAt(SimAddressSpace mm, long va) {
        long pfn = mm.pageAt(va);
        return pfn < 0 ? -1 : descriptors.folio(pfn);
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
        long head = folioAt(mm, va);
        if (head < 0) {
            return -Errno.ENOENT;
        }
        if ((descriptors.flags(head) & FrameFlags.RESERVED) != 0) {
            return -Errno.EFAULT; // the shared zero page: move_pages(2) reports -EFAULT for it (FOLL_DUMP)
        }
        int on = memory.nodeOf(head);
        if (node < 0 || on == node) {
            return on;
        }
        if (!moveAll && descriptors.folioMappedShared(head)) {
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
    private int moveBatch(LongArrayList batch, List<PageReference> refs, int node, int[] status, int start) {
        int failed = 0;
        for (int k = 0; k < batch.size(); k++) {
            int rc = folio.migrateQueued(batch.get(k), node);
            folio.putback(refs.removeFirst()); // the isolation ends with the page's migration
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

    private void checked(String operation) {
        hook.afterOperation(operation);
    }
}
