package org.vmcore.x86.mem;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.internal.MemMap;

/**
 * The per-CPU page lists (struct per_cpu_pages): free 4 KiB frames kept close to the allocating
 * CPU, refilled from the buddy allocator in batches and given back in batches, so that order-0
 * allocations on different cores do not take the buddy allocator's lock each time. vmcore's
 * "CPU" here is the allocating thread, hashed to one of a few lists. Frames on a list are free
 * (their descriptors cleared) and count as free memory; whoever inspects or isolates the buddy
 * allocator directly drains the lists into it first (drain_all_pages), so it sees every free
 * frame.
 */
final class PerCpuPages {
    private static final int STRIPES = 16;
    private static final int BATCH = 64; // pcp->batch
    private static final int HIGH = 64 * BATCH; // pcp->high (16 MiB of frames): above it, a batch goes back

    private final BuddyAllocator[] allocators;
    private final MemMap descriptors;
    private final Stripe[] stripes = new Stripe[STRIPES];

    /** One list per node; its monitor guards it. Padded so that two lists share no cache line. */
    private static final class Stripe {
        final long[][] frames;
        final int[] counts;
        @SuppressWarnings("unused")
        long p0;
        @SuppressWarnings("unused")
        long p1;
        @SuppressWarnings("unused")
        long p2;
        @SuppressWarnings("unused")
        long p3;
        @SuppressWarnings("unused")
        long p4;
        @SuppressWarnings("unused")
        long p5;
        @SuppressWarnings("unused")
        long p6;

        Stripe(int nodes) {
            frames = new long[nodes][HIGH + BATCH];
            counts = new int[nodes];
        }
    }

    PerCpuPages(BuddyAllocator[] allocators, MemMap descriptors) {
        this.allocators = allocators;
        this.descriptors = descriptors;
        for (int i = 0; i < STRIPES; i++) {
            stripes[i] = new Stripe(allocators.length);
        }
    }

    /** A frame of {@code node} from the current thread's list, refilled when empty; -1 when the node has none. */
    long allocate(int node) {
        long pfn = -1;
        // Our list (refilled from the buddy allocator), else another list: twice, since frames
        // move between the two while we look.
        for (int attempt = 0; attempt < 2 && pfn < 0; attempt++) {
            pfn = take(stripes[stripe()], node);
            if (pfn < 0) {
                pfn = steal(node);
            }
        }
        if (pfn >= 0) {
            descriptors.initAllocated(pfn, 0, node);
        }
        return pfn;
    }

    private long take(Stripe s, int node) {
        synchronized (s) {
            if (s.counts[node] == 0) {
                long[] list = s.frames[node];
                int got = allocators[node].takeFrames(list, BATCH);
                // takeFrames lists them in allocation order; the list hands out from its end
                for (int i = 0, j = got - 1; i < j; i++, j--) {
                    long t = list[i];
                    list[i] = list[j];
                    list[j] = t;
                }
                s.counts[node] = got;
                if (got == 0) {
                    return -1;
                }
            }
            return s.frames[node][--s.counts[node]];
        }
    }

    /** A frame of {@code node} from any list, when the buddy allocator has none left for ours. */
    private long steal(int node) {
        for (Stripe s : stripes) {
            synchronized (s) {
                if (s.counts[node] > 0) {
                    return s.frames[node][--s.counts[node]];
                }
            }
        }
        return -1;
    }

    /**
     * Frees an order-0 frame of {@code node} onto the current thread's list; a batch goes back
     * to the buddy allocator when the list is too long.
     *
     * @return false when the frame heads a larger block (the caller frees it to the buddy allocator)
     */
    boolean free(long pfn, int node) {
        int flags = descriptors.flags(pfn);
        if ((flags & FrameFlags.ALLOCATED) == 0) {
            throw new InvalidArgumentException("pfn", pfn, "must head an allocated block (double free or tail frame)");
        }
        if (descriptors.order(pfn) != 0) {
            return false;
        }
        descriptors.clear(pfn);
        Stripe s = stripes[stripe()];
        synchronized (s) {
            long[] list = s.frames[node];
            list[s.counts[node]++] = pfn;
            if (s.counts[node] >= HIGH + BATCH) {
                allocators[node].returnFrames(list, 0, BATCH); // the coldest first
                System.arraycopy(list, BATCH, list, 0, s.counts[node] - BATCH);
                s.counts[node] -= BATCH;
            }
        }
        return true;
    }

    /** Frames sitting on the lists of {@code node}. */
    long cached(int node) {
        long n = 0;
        for (Stripe s : stripes) {
            synchronized (s) {
                n += s.counts[node];
            }
        }
        return n;
    }

    /** drain_all_pages: every list gives its frames back to the buddy allocator. */
    void drainAll() {
        for (Stripe s : stripes) {
            synchronized (s) {
                for (int node = 0; node < allocators.length; node++) {
                    allocators[node].returnFrames(s.frames[node], 0, s.counts[node]);
                    s.counts[node] = 0;
                }
            }
        }
    }

    private static int stripe() {
        return (int) ((Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L) >>> 60);
    }
}
