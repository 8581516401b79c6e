package org.vmcore.impl.mm;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.function.LongToIntFunction;
import org.eclipse.collections.impl.set.mutable.primitive.LongHashSet;
import org.vmcore.api.Errno;
import org.vmcore.api.ThpMode;
import org.vmcore.api.VmstatCounter;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * What the machine knows of transparent huge pages (mm/huge_memory.c's globals): the mode of
 * /sys/kernel/mm/transparent_hugepage/enabled, the thp_* events of /proc/vmstat (those of
 * migration and splitting are counted by the migration service), the deferred split queue
 * (partly unmapped huge pages, which {@link #splitDeferred} splits as the kernel's shrinker does
 * under memory pressure) and the huge
 * zero page, allocated on the first read fault that wants one and kept until the machine closes
 * (the kernel frees it under memory pressure when nothing maps it).
 */
public final class Thp {
    /** The thp_* events, in {@link VmstatCounter} order. */
    enum Event {
        FAULT_ALLOC(VmstatCounter.THP_FAULT_ALLOC),
        FAULT_FALLBACK(VmstatCounter.THP_FAULT_FALLBACK),
        COLLAPSE_ALLOC(VmstatCounter.THP_COLLAPSE_ALLOC),
        SPLIT_PMD(VmstatCounter.THP_SPLIT_PMD),
        DEFERRED_SPLIT_PAGE(VmstatCounter.THP_DEFERRED_SPLIT_PAGE),
        ZERO_PAGE_ALLOC(VmstatCounter.THP_ZERO_PAGE_ALLOC),
        SWPOUT_FALLBACK(VmstatCounter.THP_SWPOUT_FALLBACK);

        final VmstatCounter counter;

        Event(VmstatCounter counter) {
            this.counter = counter;
        }
    }

    private final ThpMode mode;
    private final PhysicalMemory memory;
    private final AtomicLongArray events = new AtomicLongArray(Event.values().length);
    private volatile long hugeZeroPfn = -1;
    private final LongHashSet deferred = new LongHashSet(); // ds_queue, by head PFN; guarded by itself
    private volatile LongToIntFunction splitter = head -> -1;

    public Thp(ThpMode mode, PhysicalMemory memory) {
        this.mode = mode;
        this.memory = memory;
    }

    /** always, madvise or never. */
    ThpMode mode() {
        return mode;
    }

    void count(Event event) {
        events.incrementAndGet(event.ordinal());
    }

    /** Writes the thp_* events into {@code vmstat}, indexed by {@link VmstatCounter#ordinal()}. */
    public void report(long[] vmstat) {
        for (Event e : Event.values()) {
            vmstat[e.counter.ordinal()] = events.get(e.ordinal());
        }
    }

    /**
     * get_huge_zero_folio: the huge zero page, allocated (zeroed, reserved) the first time; -1
     * when no 2 MiB block is free for it, and the fault falls back to 4 KiB pages.
     */
    long hugeZeroPfn() {
        long pfn = hugeZeroPfn;
        return pfn >= 0 ? pfn : allocateHugeZero();
    }

    /** thp_swpout_fallback: a huge page split so that its pages could be swapped one by one. */
    public void countSwapoutFallback() {
        count(Event.SWPOUT_FALLBACK);
    }

    /**
     * thp_deferred_split_page for a huge page mapped only by PTEs whose split unmaps them one by
     * one: the first one gone leaves it partly mapped, and deferred_split_folio counts it.
     */
    public void countDeferredSplit() {
        count(Event.DEFERRED_SPLIT_PAGE);
    }

    /** thp_split_pmd, for PMD entries a split of the huge page itself replaced. */
    public void countSplitPmds(int n) {
        events.addAndGet(Event.SPLIT_PMD.ordinal(), n);
    }

    /** Sets how a huge page is split (split_huge_page, from the migration service). */
    public void setSplitter(LongToIntFunction splitter) {
        this.splitter = splitter;
    }

    /** split_huge_page of the huge page at {@code head} (through the migration service); 0 when split. */
    int split(long head) {
        return splitter.applyAsInt(head);
    }

    /** deferred_split_folio: queues the partly unmapped huge page at {@code head}. */
    void queueDeferred(long head) {
        synchronized (deferred) {
            deferred.add(head);
        }
    }

    /**
     * deferred_split_scan: splits up to {@code max} queued huge pages that are still partly mapped
     * huge pages (a queued page freed since is just forgotten), giving back the memory of their
     * unmapped pages; one that cannot be split now stays queued. A notifier that refuses a split's
     * unmap leaves that page queued; what it threw goes to {@code failures}, for the operation that
     * ran the shrinker to rethrow once done. The caller holds the machine lock shared. Returns how
     * many it split.
     */
    public int splitDeferred(int max, MemMap descriptors, CallbackFailures failures) {
        long[] heads;
        synchronized (deferred) {
            heads = deferred.toArray();
        }
        int split = 0;
        int want = FrameFlags.LARGE_RMAPPABLE | FrameFlags.PARTIALLY_MAPPED | FrameFlags.ALLOCATED;
        for (int i = 0; i < heads.length && split < max; i++) {
            long head = heads[i];
            boolean queued = (descriptors.flags(head) & want) == want;
            int rc;
            try {
                rc = queued ? splitter.applyAsInt(head) : 0;
            } catch (RuntimeException e) {
                failures.add(e);
                continue;
            }
            if (rc == -Errno.EAGAIN) {
                continue; // busy: stays queued
            }
            synchronized (deferred) {
                deferred.remove(head);
            }
            split += queued && (descriptors.flags(head) & FrameFlags.LARGE_RMAPPABLE) == 0 ? 1 : 0;
        }
        return split;
    }

    /** Whether {@code pfn} is the huge zero page. */
    boolean isHugeZero(long pfn) {
        return pfn == hugeZeroPfn;
    }

    private synchronized long allocateHugeZero() {
        if (hugeZeroPfn >= 0) {
            return hugeZeroPfn;
        }
        for (int node = 0; node < memory.nodes().size(); node++) {
            long pfn = memory.tryAllocate(node, MemMap.LARGE_ORDER, true);
            if (pfn >= 0) {
                SharedSecrets.memMap(memory).setFlags(pfn, FrameFlags.RESERVED | FrameFlags.UPTODATE);
                count(Event.ZERO_PAGE_ALLOC);
                hugeZeroPfn = pfn;
                return pfn;
            }
        }
        return -1;
    }
}
