package org.vmcore.impl.mm;

import java.util.concurrent.atomic.AtomicLong;

/** The machine's pglazyfree and pglazyfreed (/proc/vmstat): pages made lazy free, and lazy-free pages dropped. */
public final class ReclaimCounts {
    private final AtomicLong lazyfree = new AtomicLong();
    private final AtomicLong lazyfreed = new AtomicLong();

    void addLazyfree(long pages) {
        lazyfree.addAndGet(pages);
    }

    /** Counts pages reclaim dropped while lazy free. */
    public void addLazyfreed(long pages) {
        lazyfreed.addAndGet(pages);
    }

    /** pglazyfree. */
    public long lazyfree() {
        return lazyfree.get();
    }

    /** pglazyfreed. */
    public long lazyfreed() {
        return lazyfreed.get();
    }
}
