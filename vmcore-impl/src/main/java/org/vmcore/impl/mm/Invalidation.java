package org.vmcore.impl.mm;

import org.vmcore.api.NotifierEvent;
import org.vmcore.api.NotifierRange;

/**
 * One MMU-notifier invalidation: the range is announced before entries change and closed after
 * the TLB flush, as mmu_notifier_invalidate_range_start/end bracket the kernel's changes.
 */
final class Invalidation implements AutoCloseable {
    private final SimAddressSpace mm;
    private final NotifierRange range;

    private Invalidation(SimAddressSpace mm, NotifierRange range) {
        this.mm = mm;
        this.range = range;
    }

    static Invalidation start(SimAddressSpace mm, long start, long end, NotifierEvent event) {
        NotifierRange range = new NotifierRange(mm, start, end, event);
        mm.notifiers().rangeStart(range);
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
