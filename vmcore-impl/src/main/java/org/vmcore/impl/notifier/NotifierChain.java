package org.vmcore.impl.notifier;

import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;

/**
 * The MMU notifiers of one address space (its mmu_notifier_subscriptions) and the
 * invalidations in progress, which the stale-translation detector treats as open flush
 * windows: between a range's start and end, translations in it may legitimately be stale.
 */
public final class NotifierChain {
    private final AddressSpace mm;
    private final List<MmuNotifier> notifiers = new CopyOnWriteArrayList<>();
    // Open ranges as [start, end) pairs; replaced whole so that CPU threads read a consistent copy.
    private volatile long[] open = new long[0];
    // The JFR events of the open ranges, in the order they opened (engine thread only).
    private final java.util.ArrayDeque<org.vmcore.impl.stat.NotifierEvent> events = new java.util.ArrayDeque<>();

    public NotifierChain(AddressSpace mm) {
        this.mm = mm;
    }

    public void register(MmuNotifier notifier) {
        if (notifier == null) {
            throw new InvalidArgumentException("notifier", null, "must not be null");
        }
        if (notifiers.contains(notifier)) {
            throw new InvalidArgumentException("notifier", notifier, "must not be registered twice");
        }
        notifiers.add(notifier);
    }

    public boolean unregister(MmuNotifier notifier) {
        return notifiers.remove(notifier);
    }

    public boolean isEmpty() {
        return notifiers.isEmpty();
    }

    /** mmu_notifier_invalidate_range_start. */
    public void rangeStart(NotifierRange range) {
        org.vmcore.impl.stat.NotifierEvent event = new org.vmcore.impl.stat.NotifierEvent();
        event.begin();
        events.push(event);
        long[] cur = open;
        long[] next = java.util.Arrays.copyOf(cur, cur.length + 2);
        next[cur.length] = range.start();
        next[cur.length + 1] = range.end();
        open = next;
        for (MmuNotifier n : notifiers) {
            n.invalidateRangeStart(range);
        }
    }

    /** mmu_notifier_invalidate_range_end. */
    public void rangeEnd(NotifierRange range) {
        for (MmuNotifier n : notifiers) {
            n.invalidateRangeEnd(range);
        }
        org.vmcore.impl.stat.NotifierEvent event = events.poll();
        if (event != null && event.shouldCommit()) {
            event.addressSpace = mm.id();
            event.start = range.start();
            event.end = range.end();
            event.event = range.event().name();
            event.commit();
        }
        long[] cur = open;
        for (int i = 0; i < cur.length; i += 2) {
            if (cur[i] == range.start() && cur[i + 1] == range.end()) {
                long[] next = new long[cur.length - 2];
                System.arraycopy(cur, 0, next, 0, i);
                System.arraycopy(cur, i + 2, next, i, cur.length - i - 2);
                open = next;
                return;
            }
        }
        throw new IllegalStateException("no open invalidation " + range);
    }

    /** Whether an invalidation covering {@code va} is in progress. */
    public boolean isInvalidating(long va) {
        long[] cur = open;
        for (int i = 0; i < cur.length; i += 2) {
            if (Long.compareUnsigned(va, cur[i]) >= 0 && Long.compareUnsigned(va, cur[i + 1]) < 0) {
                return true;
            }
        }
        return false;
    }

    /** mmu_notifier_arch_invalidate_secondary_tlbs, right after a CPU flush. */
    public void secondaryTlbs(long start, long end) {
        for (MmuNotifier n : notifiers) {
            n.invalidateSecondaryTlbs(mm, start, end);
        }
    }

    public boolean clearFlushYoung(long start, long end) {
        boolean young = false;
        for (MmuNotifier n : notifiers) {
            young |= n.clearFlushYoung(mm, start, end);
        }
        return young;
    }

    public boolean clearYoung(long start, long end) {
        boolean young = false;
        for (MmuNotifier n : notifiers) {
            young |= n.clearYoung(mm, start, end);
        }
        return young;
    }

    public boolean testYoung(long address) {
        for (MmuNotifier n : notifiers) {
            if (n.testYoung(mm, address)) {
                return true;
            }
        }
        return false;
    }

    /** mmu_notifier_release at exit: every notifier hears it once and is dropped. */
    public void release() {
        for (MmuNotifier n : notifiers) {
            n.release(mm);
        }
        notifiers.clear();
    }
}
