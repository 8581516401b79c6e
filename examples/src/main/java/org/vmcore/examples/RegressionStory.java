package org.vmcore.examples;

import java.time.Duration;
import java.util.concurrent.atomic.AtomicReference;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.RacePause;
import org.vmcore.api.Regression;

/**
 * What the examples of one regression switch share: a story told once without the fix and once
 * with it, chosen by {@code --regression=<name>} (without only) or {@code --regression=none}
 * (with only), and a last line comparing the two; and, for the race replays, threads that a
 * {@link RacePause} stops, each step bounded by {@link #WAIT}.
 */
final class RegressionStory {
    /** How long one step of a race replay may take before the replay gives up. */
    static final Duration WAIT = Duration.ofSeconds(20);

    /** How long a thread of a race replay must stay blocked to count as blocked. */
    static final Duration SETTLE = Duration.ofMillis(200);

    /** One telling of the story; returns the harm it counted (stale uses, pages lost, ...). */
    @FunctionalInterface
    interface Telling {
        long run(boolean regression);
    }

    private RegressionStory() {
    }

    /**
     * Tells the story as {@code args} ask and prints {@code summary}, a format with the harm
     * without and with the fix, when both ran. An unknown option ends the program with status 2.
     */
    static void tell(String example, String option, String[] args, Telling story, String summary) {
        boolean without = true;
        boolean with = true;
        for (String arg : args) {
            if (arg.equals("--regression=" + option)) {
                with = false;
            } else if (arg.equals("--regression=none")) {
                without = false;
            } else {
                System.err.println(example + ": unknown option " + arg + " (known: --regression=" + option + ", --regression=none)");
                System.exit(2);
            }
        }
        long harmWithout = without ? story.run(true) : -1;
        long harmWith = with ? story.run(false) : -1;
        if (without && with) {
            System.out.println();
            System.out.printf(summary + "%n", harmWithout, harmWith);
        }
    }

    /** Prints which telling this is and enables {@code regression} on {@code builder} when asked. */
    static Machine.Builder telling(Machine.Builder builder, Regression regression, boolean enabled) {
        System.out.println();
        System.out.println("=== " + (enabled ? "WITHOUT the fix (Regression." + regression + ")" : "WITH the fix (today's kernel)"));
        return enabled ? builder.enable(regression) : builder;
    }

    /**
     * Two processes that map the 1 GiB {@code file} shared at the 1 GiB-aligned {@code base1} and
     * {@code base2}: the first populates it, the second's first fault shares the first's PMD table.
     */
    static AddressSpace[] shareWindow(Machine machine, HugetlbFile file, long base1, long base2) {
        AddressSpace p1 = machine.createAddressSpace();
        AddressSpace p2 = machine.createAddressSpace();
        int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
        p1.mmap(file, 0, base1, 1L << 30, Protection.READ_WRITE, shared | MapFlags.MAP_POPULATE);
        p2.mmap(file, 0, base2, 1L << 30, Protection.READ_WRITE, shared);
        p2.fault(base2, Access.READ); // p2's PUD entry now points at p1's PMD table
        return new AddressSpace[] {p1, p2};
    }

    /**
     * Starts a thread of a race replay; what {@code body} throws goes to {@code failure}. It is a
     * daemon, so that a replay that went wrong cannot keep the program alive.
     */
    static Thread start(String name, AtomicReference<Throwable> failure, Runnable body) {
        return Thread.ofPlatform().name(name).daemon().start(() -> {
            try {
                body.run();
            } catch (Throwable e) {
                failure.compareAndSet(null, e);
            }
        });
    }

    /** Waits until a thread is parked at {@code pause}. */
    static void arrive(RacePause pause) {
        try {
            pause.awaitArrival(WAIT);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    /**
     * Waits until {@code t} blocks (true) or ends (false). Blocked means parked on a lock or in a
     * wait for {@link #SETTLE} on end: a thread that only brushes past a contended monitor is
     * not blocked.
     */
    static boolean blockedOrDone(Thread t) {
        long deadline = System.nanoTime() + WAIT.toNanos();
        long blockedSince = -1;
        try {
            while (System.nanoTime() < deadline) {
                Thread.State state = t.getState();
                if (state == Thread.State.TERMINATED) {
                    return false;
                }
                if (state != Thread.State.WAITING && state != Thread.State.BLOCKED) {
                    blockedSince = -1;
                } else if (blockedSince < 0) {
                    blockedSince = System.nanoTime();
                } else if (System.nanoTime() - blockedSince >= SETTLE.toNanos()) {
                    return true;
                }
                Thread.sleep(1);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
        throw new IllegalStateException(t.getName() + " neither blocked nor finished within " + WAIT);
    }

    /**
     * Joins every thread (null ones are skipped), each within {@link #WAIT}, then rethrows the
     * first failure the replay's threads recorded.
     */
    static void join(AtomicReference<Throwable> failure, Thread... threads) {
        String stuck = null;
        boolean interrupted = false;
        for (Thread t : threads) {
            try {
                if (t != null && !t.join(WAIT)) {
                    stuck = t.getName();
                }
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while joining the replay's threads");
        }
        if (stuck != null) {
            throw new IllegalStateException(stuck + " did not finish within " + WAIT);
        }
        if (failure.get() != null) {
            throw new IllegalStateException("a thread of the replay failed", failure.get());
        }
    }
}
