package org.vmcore.impl.mm;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;

/**
 * One MMU-notifier invalidation: the range is announced before entries change and closed after
 * the TLB flush, as mmu_notifier_invalidate_range_start/end bracket the kernel's changes.
 *
 * <p>{@link #start} is for an operation that has changed nothing yet: a notifier that throws
 * aborts it, with no range left open. {@link #startCompleting} is for one that must go on: what
 * the notifiers throw is collected and rethrown when the public operation ends.
 */
final class Invalidation implements AutoCloseable {
    private final SimAddressSpace mm;
    private final NotifierRange range;

    private Invalidation(SimAddressSpace mm, NotifierRange range) {
        this.mm = mm;
        this.range = range;
    }

    /** Opens the range; throws what a notifier threw, with the range closed again. */
    static Invalidation start(SimAddressSpace mm, long start, long end, NotifierEvent event) {
        NotifierRange range = new NotifierRange(mm, start, end, event);
        mm.notifiers().rangeStart(range);
        return new Invalidation(mm, range);
    }

    /** Opens the range whatever the notifiers throw (collected for the end of the operation). */
    static Invalidation startCompleting(SimAddressSpace mm, long start, long end, NotifierEvent event) {
        NotifierRange range = new NotifierRange(mm, start, end, event);
        mm.notifiers().rangeStartCompleting(range);
        return new Invalidation(mm, range);
    }

    NotifierRange range() {
        return range;
    }

    @Override
    public void close() {
        mm.notifiers().rangeEnd(range);
    }
}
