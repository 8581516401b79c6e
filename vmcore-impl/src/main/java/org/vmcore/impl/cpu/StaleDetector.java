package org.vmcore.impl.cpu;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.StaleAccess;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.pgtable.Pte;

/**
 * The record of stale-translation uses the detector has seen, in order: the first
 * {@link #KEPT} in full, and a count of all. Thread-safe.
 */
public final class StaleDetector {
    /**
     * Checks a translation a device model used ({@code Machine.checkTranslation}) against the
     * tables: true if {@code pfn} is what va maps now and, for a store, the tables allow writing;
     * otherwise false, recorded as a stale use ({@link StaleAccess.Kind#FRAME} or
     * {@link StaleAccess.Kind#PERMISSION}) when {@code detecting}, no invalidation of va is open
     * and the use is not excused by a flush owed ({@code Mmu.excused}). The caller holds the machine lock.
     */
    public boolean check(String who, SimAddressSpace mm, long va, long pfn, boolean write, boolean detecting) {
        long now = mm.isClosed() ? -1 : mm.pageAt(va);
        boolean refused = now == pfn && write && (mm.permissionsAt(va) & Pte.RW) == 0;
        if (now == pfn && !refused) {
            return true;
        }
        StaleAccess.Kind kind = refused ? StaleAccess.Kind.PERMISSION : StaleAccess.Kind.FRAME;
        if (detecting && !Mmu.excused(mm, va, kind)) {
            record(who, mm, va, write, pfn, now, kind);
        }
        return false;
    }

    /** How many uses are kept in full. */
    public static final int KEPT = 10_000;
    private final List<StaleAccess> seen = new ArrayList<>();
    private long count;

    public synchronized void record(String who, AddressSpace mm, long va, boolean write, long cachedPfn, long currentPfn,
                                    StaleAccess.Kind kind) {
        count++;
        if (seen.size() < KEPT) {
            seen.add(new StaleAccess(who, mm, va, write, cachedPfn, currentPfn, kind));
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
