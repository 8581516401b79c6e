package org.vmcore.impl.lock;

/**
 * The split page-table locks (ptlock_ptr, pmd_lockptr): one lock per page-table frame, so that
 * faults on different tables of one address space do not wait for each other, and the sharers of
 * a PMD table share its lock as they share the table. Linux keeps the lock in the table's struct
 * page; vmcore hashes the table's frame number into a fixed array of locks, which keeps the lock
 * of a table the same for every sharer without any allocation on the fault path. Two tables may
 * hash to one lock: no path holds two page-table locks at once, so that only costs parallelism.
 */
public final class PtLocks {
    /** Lock class of every split page-table lock. */
    public static final LockClass PTL = LockClass.of("ptl");
    private static final int STRIPES = 1024;

    private final KMutex[] locks = new KMutex[STRIPES];

    public PtLocks() {
        for (int i = 0; i < STRIPES; i++) {
            locks[i] = new KMutex(PTL);
        }
    }

    /** The lock of the page table in frame {@code tablePfn}. */
    public KMutex of(long tablePfn) {
        long h = tablePfn * 0x9E3779B97F4A7C15L;
        return locks[(int) (h >>> 54)];
    }

    /** The lock of the table that holds the entry at physical address {@code slot}. */
    public KMutex ofSlot(long slot) {
        return of(slot >>> 12);
    }
}
