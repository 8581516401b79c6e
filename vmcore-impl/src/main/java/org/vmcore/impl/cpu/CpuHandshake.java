package org.vmcore.impl.cpu;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.util.concurrent.locks.ReentrantLock;

/**
 * The handshake between one CPU's accesses and the flushes other threads send it: the model of
 * a TLB-shootdown IPI. The CPU is busy for the length of one access (or one window of a batch)
 * and backs off while a flush waits; a flusher announces itself and waits until no access is in
 * progress. It is a Dekker handshake: the CPU stores {@code busy} then loads {@code waiters}, the
 * flusher stores {@code waiters} then loads {@code busy}, both with volatile (sequentially
 * consistent) accesses, so they cannot both miss each other. So when {@link #runFlush} returns,
 * no access through a flushed entry is running or can start.
 *
 * <p>Each field is accessed one way only, and the accessor says how, in the style of JCTools:
 * {@code sv} store volatile, {@code so} store ordered (release), {@code lv} load volatile,
 * {@code la} load acquire, {@code xadd} an atomic add (volatile).
 *
 * <p>Threads: {@link #enter}, {@link #leave} and {@link #flushWaiting} only on the thread that
 * drives the CPU; {@link #runFlush} on any thread (flushers are serialised by a lock).
 */
final class CpuHandshake {
    private static final VarHandle BUSY;
    private static final VarHandle WAITERS;

    static {
        try {
            MethodHandles.Lookup lookup = MethodHandles.lookup();
            BUSY = lookup.findVarHandle(CpuHandshake.class, "busy", boolean.class);
            WAITERS = lookup.findVarHandle(CpuHandshake.class, "waiters", int.class);
        } catch (ReflectiveOperationException e) {
            throw new ExceptionInInitializerError(e);
        }
    }

    @SuppressWarnings("unused") // through BUSY
    private boolean busy;
    @SuppressWarnings("unused") // through WAITERS
    private int waiters;
    private final ReentrantLock flushers = new ReentrantLock();

    private void svBusy(boolean value) {
        BUSY.setVolatile(this, value);
    }

    private void soBusy(boolean value) {
        BUSY.setRelease(this, value);
    }

    private boolean lvBusy() {
        return (boolean) BUSY.getVolatile(this);
    }

    private int lvWaiters() {
        return (int) WAITERS.getVolatile(this);
    }

    private int laWaiters() {
        return (int) WAITERS.getAcquire(this);
    }

    private void xaddWaiters(int delta) {
        WAITERS.getAndAdd(this, delta);
    }

    /** The CPU starts an access; waits while a flush is waiting or running. */
    void enter() {
        while (true) {
            svBusy(true); // then the load of waiters: the flusher's load of busy and ours cannot both miss
            if (lvWaiters() == 0) {
                return;
            }
            soBusy(false);
            for (int spins = 0; lvWaiters() != 0; spins++) {
                backOff(spins);
            }
        }
    }

    /** The CPU's access is over: a waiting flush may run. */
    void leave() {
        soBusy(false);
    }

    /**
     * Between two accesses of a window: whether a flusher waits. An acquire load, no fence: a
     * flush announced just after it is seen at the next check or at the next {@link #enter}.
     */
    boolean flushWaiting() {
        return laWaiters() != 0;
    }

    /** Runs {@code flush} once no access of the CPU is in progress: the receiving end of a shootdown. */
    void runFlush(Runnable flush) {
        xaddWaiters(1);
        flushers.lock();
        try {
            for (int spins = 0; lvBusy(); spins++) {
                backOff(spins);
            }
            flush.run();
        } finally {
            flushers.unlock();
            xaddWaiters(-1);
        }
    }

    /** Waiting on the other side of the handshake: spin briefly, then yield the core. */
    private static void backOff(int spins) {
        if (spins < 100) {
            Thread.onSpinWait();
        } else {
            Thread.yield();
        }
    }
}
