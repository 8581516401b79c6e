package org.vmcore.impl.migrate;

import org.vmcore.api.Errno;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * soft_offline_page (mm/memory-failure.c): a page in use is migrated away (to its home node
 * first, then the others) and the old frame is poisoned so it is never used again; a free huge
 * page is dissolved into the buddy allocator instead; a page poisoned already answers -EBUSY.
 *
 * <p>It may touch the frame descriptors, the hugetlb pools and physical memory's node map.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class SoftOffline {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final FrameDescriptors descriptors;
    private final MigrateFolio folio;
    private final OperationHook hook;
    private final HugetlbPools pools;
    private final SplitHugePage split;

    SoftOffline(MachineLock lock, PhysicalMemory memory, MigrateFolio folio, OperationHook hook, HugetlbPools pools, SplitHugePage split) {
        this.split = split;
        this.lock = lock;
        this.memory = memory;
        this.descriptors = memory.descriptors();
        this.folio = folio;
        this.hook = hook;
        this.pools = pools;
    }

    /** soft_offline_page of {@code pfn}: 0, or -EBUSY when it is poisoned already or cannot move. */
    int softOfflinePage(long pfn) {
        try (MachineLock.Held locked = lock.exclusive()) {
            lock.ensureOpen();
            checkPfn(pfn);
            int flags = descriptors.flags(pfn);
            if ((flags & (FrameFlags.HWPOISON | FrameFlags.RESERVED)) != 0) {
                return -Errno.EBUSY; // poisoned already, or the shared zero page, which cannot go
            }
            long head = descriptors.folio(pfn);
            if ((descriptors.flags(head) & FrameFlags.LARGE_RMAPPABLE) != 0) { // try_to_split_thp_page
                if (split.split(head) != 0 || (descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0) {
                    return -Errno.EBUSY; // not split (a PMD maps it, or it is busy), or the page went with the split
                }
                flags = descriptors.flags(pfn);
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

    private void checkPfn(long pfn) {
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(memory.frameCount()));
        }
    }

    private void checked(String operation) {
        hook.afterOperation(operation);
    }
}
