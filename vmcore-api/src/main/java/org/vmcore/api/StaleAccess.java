package org.vmcore.api;

/**
 * A use of a translation that the address space's page tables no longer hold, outside any open
 * invalidation of that address: what the stale-translation detector reports.
 *
 * @param who          the user: "cpuN" for a CPU's TLB, or a secondary MMU's name
 * @param addressSpace the address space
 * @param address      the virtual address accessed
 * @param write        whether it was a store
 * @param cachedPfn    the frame the stale translation led to
 * @param currentPfn   the frame the page tables map there now, or -1 for none
 */
public record StaleAccess(String who, AddressSpace addressSpace, long address, boolean write, long cachedPfn,
                          long currentPfn) {
    @Override
    public String toString() {
        return String.format("%s %s %s 0x%x through a stale translation to pfn 0x%x (tables map %s)", who, addressSpace,
                write ? "store" : "load", address, cachedPfn, currentPfn < 0 ? "nothing" : "pfn 0x" + Long.toHexString(currentPfn));
    }
}
