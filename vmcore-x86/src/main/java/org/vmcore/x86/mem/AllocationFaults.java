package org.vmcore.x86.mem;

import java.util.concurrent.atomic.AtomicLongArray;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.InvalidArgumentException;

/**
 * Fault injection for allocations: counts the allocations of each {@link AllocationKind} and
 * makes the n-th one from the moment it is armed fail once, as if memory had run out.
 *
 * <p>The counts are striped by thread (padded counters, summed when read), so that allocations
 * on different cores do not fight over one cache line; once something is armed, counting goes
 * through this object's monitor, so that "the n-th allocation" stays exact.
 */
public final class AllocationFaults {
    private static final int STRIPES = 16;
    private static final int PAD = 16; // longs per counter: 128 bytes
    private static final int KINDS = AllocationKind.values().length;

    private final AtomicLongArray counts = new AtomicLongArray(STRIPES * KINDS * PAD);
    private volatile boolean armed;
    private final AtomicLongArray armedAt = new AtomicLongArray(AllocationKind.values().length);
    private final AtomicLongArray armedUntil = new AtomicLongArray(AllocationKind.values().length);

    /** Fault injection with nothing armed: every allocation succeeds until {@link #failNth} is called. */
    public AllocationFaults() {
    }

    /**
     * Makes the {@code nth} allocation of {@code kind} from now on fail (1 is the next one).
     *
     * @param kind the kind of allocation to fail
     * @param nth which allocation of that kind to fail, counted from now; 1 or more
     */
    public void failNth(AllocationKind kind, long nth) {
        failNth(kind, nth, 1);
    }

    /**
     * Makes {@code times} allocations of {@code kind} fail, starting with the {@code nth} from
     * now on: enough failures to defeat a fallback to another node.
     *
     * @param kind the kind of allocation to fail
     * @param nth the first allocation of that kind to fail, counted from now; 1 or more
     * @param times how many consecutive allocations fail; 1 or more
     */
    public synchronized void failNth(AllocationKind kind, long nth, int times) {
        if (times < 1) {
            throw new InvalidArgumentException("times", times, "must be 1 or more");
        }
        if (kind == null) {
            throw new InvalidArgumentException("kind", null, "must not be null");
        }
        if (nth < 1) {
            throw new InvalidArgumentException("nth", nth, "must be 1 or more");
        }
        long first = count(kind) + nth;
        armedAt.set(kind.ordinal(), first);
        armedUntil.set(kind.ordinal(), first + times - 1);
        armed = true;
    }

    /**
     * Allocations of {@code kind} attempted so far (failed ones included).
     *
     * @param kind the kind of allocation counted
     * @return the number of allocations of that kind since this object was made
     */
    public long count(AllocationKind kind) {
        long sum = 0;
        for (int stripe = 0; stripe < STRIPES; stripe++) {
            sum += counts.get(index(stripe, kind));
        }
        return sum;
    }

    /**
     * Counts one allocation of {@code kind}; true when it must fail.
     *
     * @param kind the kind of the allocation being attempted
     * @return true when this allocation falls in the armed range and must report out of memory
     */
    public boolean shouldFail(AllocationKind kind) {
        int at = index(stripe(), kind);
        if (!armed) {
            counts.getAndIncrement(at);
            return false;
        }
        synchronized (this) {
            counts.getAndIncrement(at);
            long n = count(kind);
            long from = armedAt.get(kind.ordinal());
            return from > 0 && n >= from && n <= armedUntil.get(kind.ordinal());
        }
    }

    private static int index(int stripe, AllocationKind kind) {
        return (stripe * KINDS + kind.ordinal()) * PAD;
    }

    private static int stripe() {
        return (int) ((Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L) >>> 60);
    }
}
