package org.vmcore.api;

/**
 * The outcome for one mapping visited by an unmap or migration rmap walk.
 *
 * @param addressSpace the address space
 * @param address      the virtual address of the page in it
 * @param outcome      what was done
 */
public record MappingResult(AddressSpace addressSpace, long address, UnmapOutcome outcome) {
    @Override
    public String toString() {
        return addressSpace + "@0x" + Long.toHexString(address) + " " + outcome;
    }
}
