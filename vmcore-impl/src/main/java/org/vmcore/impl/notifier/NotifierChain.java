package org.vmcore.impl.notifier;

import java.util.Arrays;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.atomic.AtomicInteger;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.base.MachineLock;
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
    private final MachineLock lock;
    private final AddressSpace mm;
    private final CallbackFailures failures;
    private final List<MmuNotifier> notifiers = new CopyOnWriteArrayList<>();
    // Open ranges as [start, end) pairs; replaced whole so that CPU threads read a consistent copy.
    private volatile long[] open = new long[0];
    // The JFR events of the open ranges, by range (guarded by this chain's monitor: two threads may
    // have ranges open at once, faults of one address space running in parallel).
    private final IdentityHashMap<NotifierRange, NotifierEvent> events = new IdentityHashMap<>();
    // How deep each thread is inside this chain's notifiers.
    private final ThreadLocal<int[]> calling = ThreadLocal.withInitial(() -> new int[1]);
    // Threads inside this chain's notifiers right now; 0 spares the per-thread lookup.
    private final AtomicInteger callers = new AtomicInteger();

    /** The address space whose notifiers these are. */
    public AddressSpace owner() {
        return mm;
    }

    public NotifierChain(MachineLock lock, AddressSpace mm, CallbackFailures failures) {
        this.lock = lock;
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

    /** One call of user code, counted as a callback so that a close it asks for waits for the operation. */
    @FunctionalInterface
    private interface Call {
        void on(MmuNotifier n);
    }

    /** Calls every notifier; what one throws is collected and the others are still called. */
    private void callAll(Call call) {
        failures.enter();
        int[] depth = calling.get();
        depth[0]++;
        callers.incrementAndGet();
        try {
            for (MmuNotifier n : notifiers) {
                try {
                    Initiator.notifierCall();
                    call.on(n);
                } catch (Throwable e) {
                    failures.add(e);
                }
            }
        } finally {
            callers.decrementAndGet();
            depth[0]--;
            failures.exit();
        }
    }

    /**
     * Whether a notifier of this address space is running now on the current thread: the address space must not be changed from inside it, as the
     * kernel's notifiers run under locks (mmap lock, rmap locks) that such a change would need.
     */
    public boolean isCalling() {
        return callers.get() != 0 && calling.get()[0] > 0;
    }

    /**
     * mmu_notifier_invalidate_range_start for an operation that has already changed something
     * and must complete: every notifier is called, what they throw is collected, and the range
     * stays open until {@link #rangeEnd}.
     */
    public void rangeStartCompleting(NotifierRange range) {
        assert lock.isHeldByCurrentThread();
        opened(range);
        callAll(n -> n.invalidateRangeStart(range));
    }

    private synchronized void opened(NotifierRange range) {
        NotifierEvent event = new NotifierEvent();
        event.begin();
        events.put(range, event);
        long[] cur = open;
        long[] next = Arrays.copyOf(cur, cur.length + 2);
        next[cur.length] = range.start();
        next[cur.length + 1] = range.end();
        open = next;
    }

    /**
     * mmu_notifier_invalidate_range_start. If a notifier throws, the notifiers that already
     * started get their end (as mn_hlist_invalidate_range_start pairs them on failure), the
     * later ones are not called, the range is closed again and the exception is thrown as it
     * was: the caller must not have changed anything yet, and must not call {@link #rangeEnd}.
     */
    public void rangeStart(NotifierRange range) {
        assert lock.isHeldByCurrentThread();
        opened(range);
        int started = 0;
        failures.enter();
        int[] depth = calling.get();
        depth[0]++;
        callers.incrementAndGet();
        try {
            for (MmuNotifier n : notifiers) {
                Initiator.notifierCall();
                n.invalidateRangeStart(range);
                started++;
            }
        } catch (Throwable e) {
            for (MmuNotifier n : notifiers.subList(0, Math.min(started, notifiers.size()))) {
                try {
                    n.invalidateRangeEnd(range);
                } catch (Throwable suppressed) {
                    e.addSuppressed(suppressed);
                }
            }
            close(range);
            throw CallbackFailures.<RuntimeException>sneaky(e);
        } finally {
            callers.decrementAndGet();
            depth[0]--;
            failures.exit();
        }
    }

    /** mmu_notifier_invalidate_range_end: every notifier hears it and the range closes, whatever they throw. */
    public void rangeEnd(NotifierRange range) {
        assert lock.isHeldByCurrentThread();
        callAll(n -> n.invalidateRangeEnd(range));
        NotifierEvent event;
        synchronized (this) {
            event = events.get(range);
        }
        if (event != null && event.shouldCommit()) {
            event.addressSpace = mm.id();
            event.start = range.start();
            event.end = range.end();
            event.event = range.event().name();
            event.commit();
        }
        close(range);
    }

    private synchronized void close(NotifierRange range) {
        events.remove(range);
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

    /** Whether an invalidation overlapping {@code [start, end)} is in progress. */
    public boolean isInvalidating(long start, long end) {
        long[] cur = open;
        for (int i = 0; i < cur.length; i += 2) {
            if (Long.compareUnsigned(start, cur[i + 1]) < 0 && Long.compareUnsigned(cur[i], end) < 0) {
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
        callAll(n -> n.invalidateSecondaryTlbs(mm, start, end));
    }

    public boolean clearFlushYoung(long start, long end) {
        boolean[] young = {false};
        callAll(n -> young[0] |= n.clearFlushYoung(mm, start, end));
        return young[0];
    }

    public boolean clearYoung(long start, long end) {
        boolean[] young = {false};
        callAll(n -> young[0] |= n.clearYoung(mm, start, end));
        return young[0];
    }

    /** mmu_notifier_test_young: whether a notifier saw an access; asking stops at the first that did. */
    public boolean testYoung(long address) {
        boolean[] young = {false};
        callAll(n -> young[0] = young[0] || n.testYoung(mm, address));
        return young[0];
    }

    /** mmu_notifier_release at exit: every notifier hears it once and is dropped, whatever they throw. */
    public void release() {
        callAll(n -> n.release(mm));
        notifiers.clear();
    }
}
