package org.vmcore.impl.cpu;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.StaleAccess;

/** The record of stale-translation uses the detector has seen, in order. Thread-safe. */
public final class StaleDetector {
    private final List<StaleAccess> seen = new ArrayList<>();

    public synchronized void record(String who, AddressSpace mm, long va, boolean write, long cachedPfn, long currentPfn) {
        seen.add(new StaleAccess(who, mm, va, write, cachedPfn, currentPfn));
    }

    public synchronized List<StaleAccess> snapshot() {
        return List.copyOf(seen);
    }

    public synchronized void clear() {
        seen.clear();
    }
}
