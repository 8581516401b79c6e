package org.vmcore.impl.lock;

/**
 * hugetlb_fault_mutex_table: a fixed table of mutexes hashed by (mapping, page index), so that two
 * faults on the same page of a hugetlbfs file (from any address space) run one after the other,
 * and a fault and the truncation of its page do too, while faults on other pages do not wait.
 */
public final class FaultMutexTable {
    /** Lock class of every hugetlb fault mutex. */
    public static final LockClass HUGETLB_FAULT_MUTEX = LockClass.of("hugetlb_fault_mutex");
    private static final int SIZE = 256;

    private final KMutex[] mutexes = new KMutex[SIZE];

    public FaultMutexTable() {
        for (int i = 0; i < SIZE; i++) {
            mutexes[i] = new KMutex(HUGETLB_FAULT_MUTEX);
        }
    }

    /** The mutex of page {@code index} of the file whose mapping id is {@code mapping} (hugetlb_fault_mutex_hash). */
    public KMutex of(long mapping, long index) {
        long h = (mapping * 0x9E3779B97F4A7C15L) ^ (index * 0xC2B2AE3D27D4EB4FL);
        return mutexes[(int) ((h ^ (h >>> 29)) & (SIZE - 1))];
    }
}
