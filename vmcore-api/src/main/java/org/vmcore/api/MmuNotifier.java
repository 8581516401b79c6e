package org.vmcore.api;

/**
 * A secondary MMU's view of an address space (struct mmu_notifier_ops). vmcore calls these at
 * the points and with the ranges the kernel uses: {@link #invalidateRangeStart} before entries
 * in the range change and {@link #invalidateRangeEnd} after, {@link #invalidateSecondaryTlbs}
 * right after each CPU TLB flush of the address space, the young callbacks for page aging, and
 * {@link #release} when the address space exits. Hugetlb ranges are widened to whole PUD windows
 * where a PMD table may be shared. Callbacks run on the thread of the operation, under the locks
 * Linux holds there (the address space's mmap_lock, for instance), and must not change the
 * address space they are notified for: that is refused with {@link VmException}. They may read it
 * and use other address spaces, whose locks they only try: when another thread holds one, the call
 * throws {@link VmException} instead of waiting (waiting could deadlock). Machine-wide calls
 * (migration, rmap walks, {@code checkInvariants}, {@code pageTableDot}) throw
 * {@link IllegalStateException} there, since they wait for every operation in progress; a
 * {@code close()} of the machine or an address space happens when the operation ends.
 *
 * <p>Every callback may throw. The engine then stays consistent and loses no data, and the
 * exception reaches the caller of the public operation. A throw from {@link #invalidateRangeStart}
 * while the operation has changed nothing yet (mprotect, munmap, fork, each mapping of a
 * migration) aborts it: the notifiers that had started get their end, the range is closed, and
 * the operation is undone (a migration puts the page back). Any other throw is collected: the
 * operation completes, every other notifier still gets every call, every range opened is closed,
 * and the first exception is rethrown at the end with the later ones suppressed into it; an
 * exception from {@link #release} does not stop the address space (or machine) from being freed.
 */
public interface MmuNotifier {
    /**
     * Entries in the range are about to change; do not establish new translations in it until the end.
     *
     * @param range the range being invalidated
     */
    default void invalidateRangeStart(NotifierRange range) {
    }

    /**
     * The change of the matching start is complete.
     *
     * @param range the range being invalidated
     */
    default void invalidateRangeEnd(NotifierRange range) {
    }

    /**
     * Drop cached translations of [start, end): called right after the CPU TLB flush.
     *
     * @param addressSpace the address space the notifier is registered on
     * @param start the first virtual address of the range, page aligned
     * @param end the virtual address just after the range, page aligned
     */
    default void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
    }

    /**
     * Clear and flush the accessed state of [start, end); return whether it was young.
     *
     * @param addressSpace the address space the notifier is registered on
     * @param start the first virtual address of the range, page aligned
     * @param end the virtual address just after the range, page aligned
     * @return whether the device saw any page of the range accessed since it was last cleared
     */
    default boolean clearFlushYoung(AddressSpace addressSpace, long start, long end) {
        return false;
    }

    /**
     * Clear the accessed state of [start, end) without a flush; return whether it was young.
     *
     * @param addressSpace the address space the notifier is registered on
     * @param start the first virtual address of the range, page aligned
     * @param end the virtual address just after the range, page aligned
     * @return whether the device saw any page of the range accessed since it was last cleared
     */
    default boolean clearYoung(AddressSpace addressSpace, long start, long end) {
        return false;
    }

    /**
     * Whether {@code address} was accessed through the secondary MMU since it was last cleared.
     *
     * @param addressSpace the address space the notifier is registered on
     * @param address the virtual address
     * @return whether {@code address} was accessed through the secondary MMU since it was last cleared
     */
    default boolean testYoung(AddressSpace addressSpace, long address) {
        return false;
    }

    /**
     * The address space exits; drop everything. The notifier is unregistered afterwards.
     *
     * @param addressSpace the address space the notifier is registered on
     */
    default void release(AddressSpace addressSpace) {
    }
}
