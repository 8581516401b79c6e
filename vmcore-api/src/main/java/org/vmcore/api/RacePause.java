package org.vmcore.api;

import java.time.Duration;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

/**
 * A {@link RaceHook} that parks the first thread to reach its point until {@link #release()}:
 * the building block of a deterministic race replay.
 *
 * <pre>{@code
 * RacePause pause = RacePause.arm(machine, RacePoint.HUGETLB_FAULT_AFTER_PTE_ALLOC);
 * Thread faulting = Thread.ofPlatform().start(() -> mm1.fault(va, Access.WRITE));
 * pause.awaitArrival(Duration.ofSeconds(10));  // mm1's fault is between its lookup and its lock
 * file.truncate(0);                               // the other kernel path runs now
 * pause.release();
 * faulting.join();
 * }</pre>
 *
 * Later arrivals (other threads, or the same point reached again) pass straight through. The
 * hook stays installed until {@link #disarm()}.
 */
public final class RacePause implements RaceHook {
    private final Machine machine;
    private final RacePoint point;
    private final CountDownLatch arrived = new CountDownLatch(1);
    private final CountDownLatch released = new CountDownLatch(1);
    private final AtomicBoolean taken = new AtomicBoolean();
    private volatile Thread parked;

    private RacePause(Machine machine, RacePoint point) {
        this.machine = machine;
        this.point = point;
    }

    /**
     * Installs a pause at {@code point} of {@code machine}, replacing any hook there.
     *
     * @param machine the machine, open
     * @param point the point to pause at
     * @return the armed pause
     * @throws InvalidArgumentException if an argument is null
     */
    public static RacePause arm(Machine machine, RacePoint point) {
        if (machine == null) {
            throw new InvalidArgumentException("machine", null, "must not be null");
        }
        RacePause pause = new RacePause(machine, point);
        machine.setRaceHook(point, pause);
        return pause;
    }

    @Override
    public void reached(RacePoint at, AddressSpace addressSpace, long address) throws InterruptedException {
        if (!taken.compareAndSet(false, true)) {
            return;
        }
        parked = Thread.currentThread();
        arrived.countDown();
        released.await();
    }

    /**
     * Waits until a thread is parked at the point.
     *
     * @param timeout how long to wait
     * @throws IllegalStateException if no thread arrived in time
     * @throws InvalidArgumentException if the timeout is null or negative
     * @throws InterruptedException if the waiting thread is interrupted
     */
    public void awaitArrival(Duration timeout) throws InterruptedException {
        if (timeout == null || timeout.isNegative()) {
            throw new InvalidArgumentException("timeout", timeout, "must be a duration of zero or more");
        }
        if (!arrived.await(timeout.toNanos(), TimeUnit.NANOSECONDS)) {
            throw new IllegalStateException("no thread reached " + point + " within " + timeout);
        }
    }

    /**
     * The thread parked at the point.
     *
     * @return the parked thread, or null before one arrives
     */
    public Thread parkedThread() {
        return parked;
    }

    /** The machine is closing: lets the parked thread go, as {@link #release()}. */
    @Override
    public void machineClosing() {
        release();
    }

    /** Lets the parked thread (and any later one) go on. */
    public void release() {
        taken.set(true);
        released.countDown();
    }

    /** Releases the pause and removes it from the machine (a no-op once the machine is closed). */
    public void disarm() {
        release();
        try {
            machine.setRaceHook(point, null);
        } catch (ClosedException closed) {
            // nothing left to remove
        }
    }
}
