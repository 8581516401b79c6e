package org.vmcore.impl.base;

import java.util.HashMap;
import java.util.Map;

/**
 * The lockless page-table walks in progress (GUP-fast, which Linux runs with interrupts off and
 * no lock), and the barrier that waits for them: tlb_remove_table_sync_one, the IPI broadcast
 * that returns only when every CPU has left such a walk. Since 1013af4f585f huge_pmd_unshare
 * calls it before a formerly shared PMD table can become another process's private table, so no
 * walker can still be reading it then.
 */
public final class LocklessWalkers {
    // Walks in progress: thread -> the generation it started in (guarded by this monitor).
    private final Map<Thread, Long> active = new HashMap<>();
    private long generation;
    private volatile boolean syncOnUnshare = true;

    /** A lockless walk starts on the current thread (local_irq_save). */
    public synchronized void enter() {
        active.put(Thread.currentThread(), generation);
    }

    /** The current thread's lockless walk ends (local_irq_restore). */
    public synchronized void exit() {
        active.remove(Thread.currentThread());
        notifyAll();
    }

    /**
     * tlb_remove_table_sync_one: waits until every lockless walk that started before the call
     * has ended. The current thread's own walk, if any, does not count (an IPI is not sent to
     * oneself).
     */
    public synchronized void sync() {
        long g = ++generation;
        Thread self = Thread.currentThread();
        boolean interrupted = false;
        while (anyOlderThan(g, self)) {
            try {
                wait();
            } catch (InterruptedException e) {
                interrupted = true; // an IPI cannot be interrupted: keep waiting, restore the flag
            }
        }
        if (interrupted) {
            self.interrupt();
        }
    }

    private boolean anyOlderThan(long g, Thread self) {
        for (Map.Entry<Thread, Long> e : active.entrySet()) {
            if (e.getKey() != self && e.getValue() < g) {
                return true;
            }
        }
        return false;
    }

    /** Whether huge_pmd_unshare waits for lockless walkers (false with Regression.PRE_1013AF4F). */
    public boolean syncOnUnshare() {
        return syncOnUnshare;
    }

    /** Set once by the machine from its regressions. */
    public void setSyncOnUnshare(boolean sync) {
        syncOnUnshare = sync;
    }
}
