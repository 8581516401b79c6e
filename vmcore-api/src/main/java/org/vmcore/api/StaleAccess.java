package org.vmcore.api;

/**
 * A use of a translation that the address space's page tables no longer hold, outside any open
 * invalidation of that address and outside a TLB flush its address space is still owed: what
 * the stale-translation detector reports. {@link #kind()} says what was stale.
 *
 * @param who          the user: "cpuN" for a CPU's TLB, or a secondary MMU's name
 * @param addressSpace the address space
 * @param address      the virtual address accessed
 * @param write        whether it was a store
 * @param cachedPfn    the frame the stale translation led to
 * @param currentPfn   the frame the page tables map there now, or -1 for none
 * @param kind         what was stale: the frame, the permissions, or the upper entry a walk started from
 */
public record StaleAccess(String who, AddressSpace addressSpace, long address, boolean write, long cachedPfn,
                          long currentPfn, Kind kind) {
    /** What made a use stale. */
    public enum Kind {
        /** The translation leads to a frame the tables no longer map at the address. */
        FRAME,
        /**
         * The tables map the same frame but would refuse the access: a store after the entry
         * lost RW, a user access after U/S was cleared, a fetch after NX was set.
         */
        PERMISSION,
        /**
         * A CPU's walk started from a paging-structure-cache entry (a cached PML4E, PDPTE or
         * PDE) that the tables no longer hold, or hold with fewer permissions, and translated
         * the address: recorded on that first access, before any TLB hit the walk's result may
         * give.
         */
        PAGING_STRUCTURE
    }

    /**
     * A use of a translation to a frame the tables no longer map there ({@link Kind#FRAME}), the
     * only kind before the detector also checked permissions and paging-structure caches.
     *
     * @param who          the user: "cpuN" for a CPU's TLB, or a secondary MMU's name
     * @param addressSpace the address space
     * @param address      the virtual address accessed
     * @param write        whether it was a store
     * @param cachedPfn    the frame the stale translation led to
     * @param currentPfn   the frame the page tables map there now, or -1 for none
     */
    public StaleAccess(String who, AddressSpace addressSpace, long address, boolean write, long cachedPfn,
                       long currentPfn) {
        this(who, addressSpace, address, write, cachedPfn, currentPfn, Kind.FRAME);
    }

    @Override
    public String toString() {
        String tables = currentPfn < 0 ? "nothing" : "pfn 0x" + Long.toHexString(currentPfn);
        String use = String.format("%s %s %s 0x%x", who, addressSpace, write ? "store" : "load", address);
        return switch (kind) {
            case FRAME -> String.format("%s through a stale translation to pfn 0x%x (tables map %s)", use, cachedPfn, tables);
            case PERMISSION -> String.format("%s through a cached translation to pfn 0x%x that the tables now refuse", use,
                    cachedPfn);
            case PAGING_STRUCTURE -> String.format("%s by a walk from a stale paging-structure-cache entry to pfn 0x%x (tables map %s)",
                    use, cachedPfn, tables);
        };
    }
}
