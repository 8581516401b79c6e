package org.vmcore.x86.mem;

import java.util.concurrent.atomic.AtomicLongArray;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.InvalidArgumentException;

/**
 * Fault injection for allocations: counts the allocations of each {@link AllocationKind} and
 * makes the n-th one from the moment it is armed fail once, as if memory had run out.
 */
public final class AllocationFaults {
    private final AtomicLongArray counts = new AtomicLongArray(AllocationKind.values().length);
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
        long first = counts.get(kind.ordinal()) + nth;
        armedAt.set(kind.ordinal(), first);
        armedUntil.set(kind.ordinal(), first + times - 1);
    }

    /**
     * Allocations of {@code kind} attempted so far (failed ones included).
     *
     * @param kind the kind of allocation counted
     * @return the number of allocations of that kind since this object was made
     */
    public long count(AllocationKind kind) {
        return counts.get(kind.ordinal());
    }

    /**
     * Counts one allocation of {@code kind}; true when it must fail.
     *
     * @param kind the kind of the allocation being attempted
     * @return true when this allocation falls in the armed range and must report out of memory
     */
    public boolean shouldFail(AllocationKind kind) {
        long n = counts.incrementAndGet(kind.ordinal());
        long from = armedAt.get(kind.ordinal());
        return from > 0 && n >= from && n <= armedUntil.get(kind.ordinal());
    }
}
