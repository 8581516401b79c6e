package org.vmcore.api;

/**
 * One place where a page is mapped: an address space and the virtual address of the page's
 * first byte in it.
 *
 * @param addressSpace the mapping process
 * @param address      the virtual address of the page's head
 */
public record Mapping(AddressSpace addressSpace, long address) {
    @Override
    public String toString() {
        return "mm" + addressSpace.id() + "@0x" + Long.toHexString(address);
    }
}
