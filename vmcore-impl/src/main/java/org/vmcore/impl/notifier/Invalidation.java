package org.vmcore.impl.notifier;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;

/**
 * One MMU-notifier invalidation: the range is announced before entries change and closed after
 * the TLB flush, as mmu_notifier_invalidate_range_start/end bracket the kernel's changes.
 *
 * <p>{@link #start} is for an operation that has changed nothing yet: a notifier that throws
 * aborts it, with no range left open. {@link #startCompleting} is for one that must go on: what
 * the notifiers throw is collected and rethrown when the public operation ends.
 *
 * <p>Every notifier bracket of the engine goes through here. It touches only the address
 * space's {@link NotifierChain}; callers hold the machine lock.
 */
public final class Invalidation implements AutoCloseable {
    private final NotifierChain notifiers;
    private final NotifierRange range;

    private Invalidation(NotifierChain notifiers, NotifierRange range) {
        this.notifiers = notifiers;
        this.range = range;
    }

    /** Opens the range; throws what a notifier threw, with the range closed again. */
    public static Invalidation start(NotifierChain notifiers, long start, long end, NotifierEvent event) {
        NotifierRange range = new NotifierRange(notifiers.owner(), start, end, event);
        notifiers.rangeStart(range);
        return new Invalidation(notifiers, range);
    }

    /** Opens the range whatever the notifiers throw (collected for the end of the operation). */
    public static Invalidation startCompleting(NotifierChain notifiers, long start, long end, NotifierEvent event) {
        NotifierRange range = new NotifierRange(notifiers.owner(), start, end, event);
        notifiers.rangeStartCompleting(range);
        return new Invalidation(notifiers, range);
    }

    public NotifierRange range() {
        return range;
    }

    @Override
    public void close() {
        notifiers.rangeEnd(range);
    }
}
