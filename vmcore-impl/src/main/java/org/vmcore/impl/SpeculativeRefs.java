package org.vmcore.impl;

import org.eclipse.collections.impl.map.mutable.primitive.LongIntHashMap;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageReference;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The references PFN walkers take on whatever page a frame holds (folio_try_get on
 * pfn_folio: page_idle, DAMON, split_huge_pages, memory offlining), and the count of those still
 * held, which the invariant checker adds to the references it expects. Such a reference may land
 * on a page-table page: the table's refcount rises, its share count does not (unless
 * {@code Regression.PRE_59D9094D} keeps the one in the other). Runs under the machine lock (shared: GUP-fast takes its references here, in parallel with other
 * operations); the count of references held is guarded by this object's monitor.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
final class SpeculativeRefs {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final HugetlbPools pools;
    private final LongIntHashMap held = new LongIntHashMap(); // head pfn -> references held

    SpeculativeRefs(MachineLock lock, PhysicalMemory memory, MemMap descriptors, HugetlbPools pools) {
        this.lock = lock;
        this.memory = memory;
        this.descriptors = descriptors;
        this.pools = pools;
    }

    /** get_page_unless_zero on the page holding {@code pfn}; null when it is free. */
    synchronized PageReference tryGet(long pfn) {
        assert lock.isHeldByCurrentThread();
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(memory.frameCount()));
        }
        long head = descriptors.headOf(pfn);
        if (head < 0 || !descriptors.getUnlessZero(head)) {
            return null;
        }
        held.addToValue(head, 1);
        return new Ref(head);
    }

    /** References PFN walkers hold on the page headed by {@code pfn}. */
    synchronized int held(long pfn) {
        assert lock.isHeldByCurrentThread();
        return held.get(pfn);
    }

    /**
     * put_page: the last reference frees the page to the buddy allocator or its pool; a
     * page-table page is left as it is, as the kernel's bad-page check leaks a freed table.
     */
    private void put(long head) {
        try (MachineLock.Held locked = lock.shared()) {
            synchronized (this) {
                if (held.addToValue(head, -1) == 0) {
                    held.remove(head);
                }
            }
            if (descriptors.addRefcount(head, -1) != 0) {
                return;
            }
            int flags = descriptors.flags(head);
            if ((flags & FrameFlags.PGTABLE) != 0) {
                return; // "Bad page state": the frame is never given back
            }
            if ((flags & FrameFlags.HWPOISON) != 0) { // soft offline poisoned it while this reference was held
                retirePoisoned(head, flags);
                return;
            }
            if ((flags & FrameFlags.HUGETLB) != 0) {
                HugePagePool pool = pools.poolOf(head);
                if (!pool.isFree(head)) {
                    pool.free(head);
                }
            } else {
                memory.free(head);
            }
        }
    }

    /** The last put of a page soft offline poisoned: it leaves use for good, as soft offline leaves it. */
    private void retirePoisoned(long head, int flags) {
        if ((flags & FrameFlags.HUGETLB) != 0) {
            pools.poolOf(head).retireInUse(head, true);
            return;
        }
        descriptors.setMapping(head, 0, 0);
        descriptors.clearFlags(head, FrameFlags.ANON | FrameFlags.DIRTY | FrameFlags.UPTODATE);
    }

    private final class Ref implements PageReference {
        private final long pfn;
        private boolean closed;

        Ref(long pfn) {
            this.pfn = pfn;
        }

        @Override
        public long pfn() {
            return pfn;
        }

        @Override
        public void close() {
            try (MachineLock.Held locked = lock.shared()) {
                synchronized (this) {
                    if (closed || lock.isClosed()) {
                        return;
                    }
                    closed = true;
                }
                put(pfn);
            }
        }
    }
}
