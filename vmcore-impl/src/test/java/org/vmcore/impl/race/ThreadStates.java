package org.vmcore.impl.race;

import java.time.Duration;
import java.util.Queue;

/**
 * Whether a thread of a race replay waits for a lock another thread holds. A thread passes
 * through short waits on its way (a monitor, a lock someone held for a moment), so "blocked"
 * means WAITING without a break for {@link #SETTLE}; "done" means it finished first.
 */
public final class ThreadStates {
    /** How long a thread must stay WAITING to count as blocked. */
    public static final Duration SETTLE = Duration.ofMillis(150);
    /** How long to watch a thread before giving up. */
    public static final Duration WAIT = Duration.ofSeconds(20);

    private ThreadStates() {
    }

    /** Starts {@code action} on a new platform thread; what it throws lands in {@code failures}. */
    public static Thread start(String name, Queue<Throwable> failures, Runnable action) {
        return Thread.ofPlatform().name(name).start(() -> {
            try {
                action.run();
            } catch (Throwable e) {
                failures.add(e);
            }
        });
    }

    /** Waits up to {@link #WAIT} for {@code t}; fails if it is still running then. */
    public static void join(Thread t) throws InterruptedException {
        t.join(WAIT.toMillis());
        if (t.isAlive()) {
            throw new AssertionError(t.getName() + " still runs after " + WAIT);
        }
    }

    /** True when {@code t} stays blocked (WAITING) for the settle time; false when it finishes first. */
    public static boolean blockedOrDone(Thread t) throws InterruptedException {
        return blockedOrDone(t, WAIT);
    }

    /** As {@link #blockedOrDone(Thread)}, giving up after {@code wait}. */
    public static boolean blockedOrDone(Thread t, Duration wait) throws InterruptedException {
        long deadline = System.nanoTime() + wait.toNanos();
        long waitingSince = -1;
        while (System.nanoTime() < deadline) {
            Thread.State state = t.getState();
            if (state == Thread.State.TERMINATED) {
                return false;
            }
            long now = System.nanoTime();
            if (state != Thread.State.WAITING) {
                waitingSince = -1;
            } else if (waitingSince < 0) {
                waitingSince = now;
            } else if (now - waitingSince >= SETTLE.toNanos()) {
                return true;
            }
            Thread.sleep(1);
        }
        throw new AssertionError(t.getName() + " neither blocked nor finished within " + wait);
    }
}
