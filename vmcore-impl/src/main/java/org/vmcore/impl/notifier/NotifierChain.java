package org.vmcore.impl.notifier;

import java.util.ArrayDeque;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.impl.stat.NotifierEvent;

/**
 * The MMU notifiers of one address space (its mmu_notifier_subscriptions) and the
 * invalidations in progress, which the stale-translation detector treats as open flush
 * windows: between a range's start and end, translations in it may legitimately be stale.
 *
 * <p>Notifiers are user code and may throw. Only {@link #rangeStart} can abort an operation,
 * and then it leaves nothing open (see there). Every other call goes to every notifier
 * whatever the earlier ones threw, and the exceptions go to the machine's
 * {@link CallbackFailures}, to be rethrown when the public operation ends; so a range that was
 * opened is always closed and a device that was not told is never left with stale translations.
 */
public final class NotifierChain {
    private final AddressSpace mm;
    private final CallbackFailures failures;
    private final List<MmuNotifier> notifiers = new CopyOnWriteArrayList<>();
    // Open ranges as [start, end) pairs; replaced whole so that CPU threads read a consistent copy.
    private volatile long[] open = new long[0];
    // The JFR events of the open ranges, in the order they opened (engine thread only).
    private final ArrayDeque<NotifierEvent> events = new ArrayDeque<>();

    /** The address space whose notifiers these are. */
    public AddressSpace owner() {
        return mm;
    }

    public NotifierChain(AddressSpace mm, CallbackFailures failures) {
        this.mm = mm;
        this.failures = failures;
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

    /**
     * mmu_notifier_invalidate_range_start for an operation that has already changed something
     * and must complete: every notifier is called, what they throw is collected, and the range
     * stays open until {@link #rangeEnd}.
     */
    public void rangeStartCompleting(NotifierRange range) {
        opened(range);
        for (MmuNotifier n : notifiers) {
            try {
                n.invalidateRangeStart(range);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
    }

    private void opened(NotifierRange range) {
        NotifierEvent event = new NotifierEvent();
        event.begin();
        events.push(event);
        long[] cur = open;
        long[] next = Arrays.copyOf(cur, cur.length + 2);
        next[cur.length] = range.start();
        next[cur.length + 1] = range.end();
        open = next;
    }

    /**
     * mmu_notifier_invalidate_range_start. If a notifier throws, the notifiers that already
     * started get their end (as mn_hlist_invalidate_range_start pairs them on failure), the
     * later ones are not called, the range is closed again and the exception is thrown: the
     * caller must not have changed anything yet, and must not call {@link #rangeEnd}.
     */
    public void rangeStart(NotifierRange range) {
        opened(range);
        int started = 0;
        try {
            for (MmuNotifier n : notifiers) {
                n.invalidateRangeStart(range);
                started++;
            }
        } catch (RuntimeException | Error e) {
            for (MmuNotifier n : notifiers.subList(0, Math.min(started, notifiers.size()))) {
                try {
                    n.invalidateRangeEnd(range);
                } catch (RuntimeException | Error suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            events.poll();
            close(range);
            throw e;
        }
    }

    /** mmu_notifier_invalidate_range_end: every notifier hears it and the range closes, whatever they throw. */
    public void rangeEnd(NotifierRange range) {
        for (MmuNotifier n : notifiers) {
            try {
                n.invalidateRangeEnd(range);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
        NotifierEvent event = events.poll();
        if (event != null && event.shouldCommit()) {
            event.addressSpace = mm.id();
            event.start = range.start();
            event.end = range.end();
            event.event = range.event().name();
            event.commit();
        }
        close(range);
    }

    private void close(NotifierRange range) {
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

    /** Whether any invalidation is in progress (none may be left open after an operation). */
    public boolean anyOpen() {
        return open.length != 0;
    }

    /** mmu_notifier_arch_invalidate_secondary_tlbs, right after a CPU flush. */
    public void secondaryTlbs(long start, long end) {
        for (MmuNotifier n : notifiers) {
            try {
                n.invalidateSecondaryTlbs(mm, start, end);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
    }

    public boolean clearFlushYoung(long start, long end) {
        boolean young = false;
        for (MmuNotifier n : notifiers) {
            try {
                young |= n.clearFlushYoung(mm, start, end);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
        return young;
    }

    public boolean clearYoung(long start, long end) {
        boolean young = false;
        for (MmuNotifier n : notifiers) {
            try {
                young |= n.clearYoung(mm, start, end);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
        return young;
    }

    public boolean testYoung(long address) {
        for (MmuNotifier n : notifiers) {
            try {
                if (n.testYoung(mm, address)) {
                    return true;
                }
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
        return false;
    }

    /** mmu_notifier_release at exit: every notifier hears it once and is dropped, whatever they throw. */
    public void release() {
        for (MmuNotifier n : notifiers) {
            try {
                n.release(mm);
            } catch (RuntimeException | Error e) {
                failures.add(e);
            }
        }
        notifiers.clear();
    }
}
