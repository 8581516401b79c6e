package org.vmcore.impl.lock;

import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.ReentrantLock;

/**
 * A read-write semaphore whose readers do not share a cache line, in the manner of Linux's
 * percpu_rw_semaphore: a reader counts itself in one of many padded counters (picked by its
 * thread) and checks that no writer is there; a writer announces itself, then waits for every
 * counter to drain. Reading costs no contended write, so readers on different cores scale;
 * writing is slow, which suits a lock that is taken for read by every operation and for write
 * by rare machine-wide ones. Reentrant for read and for write, and for read inside the
 * thread's own write hold; not upgradable from read to write.
 */
public final class PercpuRwSem {
    private static final int STRIPES = 64;
    private static final int PAD = 16; // longs per stripe: 128 bytes, two cache lines

    private final AtomicLongArray readers = new AtomicLongArray(STRIPES * PAD);
    private final ReentrantLock writerMutex = new ReentrantLock();
    private final Object drained = new Object();
    // The writing thread: written under writerMutex, read by readers after counting themselves.
    private volatile Thread writer;
    private int writerDepth; // touched by the writer only
    // Per thread: {read depth, the stripe the outermost read counted in or -1}.
    private final ThreadLocal<int[]> reads = ThreadLocal.withInitial(() -> new int[] {0, -1});

    /** Takes the semaphore for read; waits while a writer holds it. */
    public void downRead() {
        int[] r = reads.get();
        if (r[0] > 0 || writer == Thread.currentThread()) {
            r[0]++;
            return;
        }
        int at = stripe() * PAD;
        while (true) {
            readers.getAndIncrement(at);
            if (writer == null) { // after our count is visible: a writer that comes later waits for it
                r[0] = 1;
                r[1] = at;
                return;
            }
            release(at);
            writerMutex.lock(); // blocks until the writer is done
            writerMutex.unlock();
        }
    }

    /** Releases one read hold of the current thread. */
    public void upRead() {
        int[] r = reads.get();
        if (r[0] <= 0) {
            throw new IllegalMonitorStateException("upRead without a read hold");
        }
        if (--r[0] == 0 && r[1] >= 0) {
            int at = r[1];
            r[1] = -1;
            release(at);
        }
    }

    private void release(int at) {
        readers.getAndDecrement(at);
        if (writer != null) {
            synchronized (drained) {
                drained.notifyAll();
            }
        }
    }

    /** Takes the semaphore for write: waits for the readers to leave. Reentrant. */
    public void downWrite() {
        Thread self = Thread.currentThread();
        if (writer == self) {
            writerDepth++;
            return;
        }
        if (reads.get()[0] > 0) {
            throw new IllegalMonitorStateException("downWrite while holding the semaphore for read: it would wait for itself");
        }
        writerMutex.lock();
        writer = self;
        boolean interrupted = false;
        synchronized (drained) {
            while (readersIn() != 0) {
                try {
                    drained.wait();
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        }
        if (interrupted) {
            self.interrupt();
        }
        writerDepth = 1;
    }

    /**
     * Takes the semaphore for write only if that needs no waiting: no other writer and no reader.
     *
     * @return whether it is now held for write
     */
    public boolean tryDownWrite() {
        Thread self = Thread.currentThread();
        if (writer == self) {
            writerDepth++;
            return true;
        }
        if (reads.get()[0] > 0 || !writerMutex.tryLock()) {
            return false;
        }
        writer = self;
        if (readersIn() != 0) { // readers in: give up; those that saw us wait on the mutex, released now
            writer = null;
            writerMutex.unlock();
            return false;
        }
        writerDepth = 1;
        return true;
    }

    /** Releases one write hold. */
    public void upWrite() {
        if (writer != Thread.currentThread()) {
            throw new IllegalMonitorStateException("upWrite by a thread that does not hold the semaphore for write");
        }
        if (--writerDepth == 0) {
            int[] r = reads.get();
            if (r[0] > 0 && r[1] < 0) { // reads taken inside the write hold outlive it: a downgrade
                r[1] = stripe() * PAD;
                readers.getAndIncrement(r[1]);
            }
            writer = null;
            writerMutex.unlock();
        }
    }

    /** Whether the current thread holds it for write. */
    public boolean isWriteLockedByCurrentThread() {
        return writer == Thread.currentThread();
    }

    /** How many read holds the current thread has. */
    public int readHoldCount() {
        return reads.get()[0];
    }

    private long readersIn() {
        long sum = 0;
        for (int i = 0; i < STRIPES; i++) {
            sum += readers.get(i * PAD);
        }
        return sum;
    }

    private static int stripe() {
        return (int) ((Thread.currentThread().threadId() * 0x9E3779B97F4A7C15L) >>> 58);
    }
}
