package org.vmcore.api;

/**
 * One translation cached in a CPU's TLB, for inspection.
 *
 * @param cpu          the CPU
 * @param pcid         the PCID it is tagged with
 * @param addressSpace the address space that PCID belongs to now, or null if none
 * @param address      the virtual address of the page
 * @param size         the page size
 * @param pfn          the head PFN it translates to
 * @param writable     whether a store may use it
 * @param dirty        whether the leaf's D bit was set when it was cached
 */
public record TlbEntry(int cpu, int pcid, AddressSpace addressSpace, long address, PageSize size, long pfn, boolean writable,
                       boolean dirty) {
    @Override
    public String toString() {
        return String.format("cpu%d pcid=%d %s 0x%x -> pfn 0x%x (%s%s%s)", cpu, pcid, addressSpace, address, pfn, size.label(),
                writable ? " rw" : " ro", dirty ? " dirty" : "");
    }
}
