package org.vmcore.api;

/**
 * The range of an invalidation (struct mmu_notifier_range).
 *
 * @param addressSpace the address space whose entries change
 * @param start        first address
 * @param end          the address after the range
 * @param event        why
 */
public record NotifierRange(AddressSpace addressSpace, long start, long end, NotifierEvent event) {
    @Override
    public String toString() {
        return String.format("%s %s [0x%x, 0x%x)", addressSpace, event, start, end);
    }
}
