package org.vmcore.impl.cpu;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.StaleAccess;

/**
 * The record of stale-translation uses the detector has seen, in order: the first
 * {@link #KEPT} in full, and a count of all. Thread-safe.
 */
public final class StaleDetector {
    /** How many uses are kept in full. */
    public static final int KEPT = 10_000;
    private final List<StaleAccess> seen = new ArrayList<>();
    private long count;

    public synchronized void record(String who, AddressSpace mm, long va, boolean write, long cachedPfn, long currentPfn) {
        count++;
        if (seen.size() < KEPT) {
            seen.add(new StaleAccess(who, mm, va, write, cachedPfn, currentPfn));
        }
    }

    public synchronized long count() {
        return count;
    }

    public synchronized List<StaleAccess> snapshot() {
        return List.copyOf(seen);
    }

    public synchronized void clear() {
        seen.clear();
        count = 0;
    }
}
