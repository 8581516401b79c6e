package org.vmcore.impl.hugetlb;

import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The hstate of one huge-page size: per-node free lists of preallocated huge pages
 * (nr_hugepages) and the global count of reserved pages. A free huge page has refcount 0 and
 * the HUGETLB and HEAD flags; an allocated one refcount 1 until it is mapped or cached.
 * Overcommit (surplus pages) is not modelled: surplus is always 0.
 */
public final class HugePagePool {
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final PageSize size;
    private final LongArrayList[] free;
    private final long[] total;
    private long reserved;

    public HugePagePool(PhysicalMemory memory, PageSize size, long[] perNode) {
        this.memory = memory;
        this.descriptors = SharedSecrets.memMap(memory);
        this.size = size;
        int nodes = memory.nodes().size();
        this.free = new LongArrayList[nodes];
        this.total = new long[nodes];
        for (int node = 0; node < nodes; node++) {
            free[node] = new LongArrayList();
            for (long i = 0; i < perNode[node]; i++) {
                long pfn = memory.tryAllocate(node, size.order(), false);
                if (pfn < 0) {
                    throw new OutOfMemoryException("node " + node + " cannot hold " + perNode[node] + " huge pages of "
                            + size.label() + " (got " + i + ")");
                }
                descriptors.setFlags(pfn, FrameFlags.HUGETLB | FrameFlags.HEAD);
                descriptors.setRefcount(pfn, 0);
                free[node].add(pfn);
                total[node]++;
            }
            free[node].reverseThis(); // hand out the lowest address first
        }
    }

    public PageSize size() {
        return size;
    }

    public synchronized long freePages() {
        long n = 0;
        for (LongArrayList list : free) {
            n += list.size();
        }
        return n;
    }

    public synchronized long reserved() {
        return reserved;
    }

    /** Free pages that no reservation holds: what an unreserved allocation may take. */
    public synchronized long available() {
        return freePages() - reserved;
    }

    /** Reserves {@code pages} (hugetlb_acct_memory); false, with nothing changed, when too few are free. */
    public synchronized boolean reserve(long pages) {
        if (pages > freePages() - reserved) {
            return false;
        }
        reserved += pages;
        return true;
    }

    /** Returns {@code pages} unused reservations. */
    public synchronized void unreserve(long pages) {
        if (pages > reserved) {
            throw new IllegalStateException("unreserving " + pages + " of " + size.label() + " with only " + reserved + " reserved");
        }
        reserved -= pages;
    }

    /**
     * Takes a free huge page, from {@code preferredNode} first, zeroed, with refcount 1. With
     * {@code useReservation} it consumes one reserved page; without, it may only take a page
     * that no reservation holds.
     *
     * @return the head PFN, or -1 when none is free
     */
    public synchronized long allocate(int preferredNode, boolean useReservation) {
        if (memory.faults().shouldFail(AllocationKind.HUGE_PAGE)) {
            return -1;
        }
        if (useReservation ? reserved == 0 || freePages() == 0 : available() <= 0) {
            return -1;
        }
        for (int i = 0; i < free.length; i++) {
            int node = (preferredNode + i) % free.length;
            if (!free[node].isEmpty()) {
                long pfn = free[node].removeAtIndex(free[node].size() - 1);
                if (useReservation) {
                    reserved--;
                }
                memory.contents().zero(pfn, size.frames());
                descriptors.setRefcount(pfn, 1);
                return pfn;
            }
        }
        return -1;
    }

    /**
     * A page on exactly {@code node} for a migration target (alloc_hugetlb_folio_nodemask with
     * __GFP_THISNODE): not zeroed, since the copy overwrites it, and only if a free page is left
     * that no reservation holds.
     *
     * @return the head PFN with refcount 1, or -1
     */
    public synchronized long allocateOnNode(int node) {
        if (memory.faults().shouldFail(AllocationKind.HUGE_PAGE)) {
            return -1;
        }
        if (available() <= 0 || free[node].isEmpty()) {
            return -1;
        }
        long pfn = free[node].removeAtIndex(free[node].size() - 1);
        descriptors.setRefcount(pfn, 1);
        return pfn;
    }

    /** Every free page, all nodes. */
    public synchronized long[] freeList() {
        org.eclipse.collections.impl.list.mutable.primitive.LongArrayList all =
                new org.eclipse.collections.impl.list.mutable.primitive.LongArrayList();
        for (LongArrayList list : free) {
            all.addAll(list);
        }
        return all.toArray();
    }

    /** Whether {@code pfn} heads a free page of this pool. */
    public synchronized boolean isFree(long pfn) {
        return free[memory.nodeOf(pfn)].contains(pfn);
    }

    /**
     * Takes the free page {@code pfn} out of the pool (dissolve_free_huge_page): nr_hugepages
     * shrinks by one and the block goes back to the buddy allocator, unless {@code poison}, in
     * which case it is marked HWPOISON and stays out of use.
     *
     * @return false if the page is not free in this pool, or taking it would break a reservation
     */
    public synchronized boolean dissolve(long pfn, boolean poison) {
        int node = memory.nodeOf(pfn);
        int at = free[node].indexOf(pfn);
        if (at < 0 || freePages() - 1 < reserved) {
            return false;
        }
        free[node].removeAtIndex(at);
        total[node]--;
        retire(pfn, poison);
        return true;
    }

    /** Takes an in-use page that was just migrated away out of the pool instead of freeing it. */
    public synchronized void retireInUse(long pfn, boolean poison) {
        total[memory.nodeOf(pfn)]--;
        retire(pfn, poison);
    }

    private void retire(long pfn, boolean poison) {
        descriptors.setRefcount(pfn, 0);
        descriptors.setMapcount(pfn, 0);
        descriptors.setMapping(pfn, 0, 0);
        descriptors.clearFlags(pfn, FrameFlags.HUGETLB | FrameFlags.ANON | FrameFlags.DIRTY | FrameFlags.UPTODATE);
        if (poison) {
            descriptors.setFlags(pfn, FrameFlags.HWPOISON);
        } else {
            descriptors.clearFlags(pfn, FrameFlags.HEAD);
            memory.free(pfn);
        }
    }

    /** Returns a page whose last reference went away (free_huge_folio). */
    public synchronized void free(long pfn) {
        descriptors.setRefcount(pfn, 0);
        descriptors.setMapcount(pfn, 0);
        descriptors.setMapping(pfn, 0, 0);
        descriptors.clearFlags(pfn, FrameFlags.ANON | FrameFlags.DIRTY | FrameFlags.UPTODATE);
        free[memory.nodeOf(pfn)].add(pfn);
    }

    public synchronized HugetlbPoolState state(int node) {
        return new HugetlbPoolState(node, size, total[node], free[node].size(), reserved, 0);
    }
}
