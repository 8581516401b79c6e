package org.vmcore.impl.lock;

import java.lang.StackWalker.Option;
import java.lang.StackWalker.StackFrame;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.CopyOnWriteArrayList;

/**
 * A lock-order validator in the manner of Linux's lockdep (kernel/locking/lockdep.c): it learns,
 * across all threads, which lock class was ever taken while another was held, and reports the
 * first acquisition that closes a cycle in that order, whether or not the threads involved ever
 * met. A deadlock that needs an unlucky interleaving is found on the first run that takes both
 * orders, one after the other.
 *
 * <p>The state:
 * <ul>
 *   <li>per thread, the locks it holds: (class, instance, depth) entries in acquisition order, in
 *       a {@link ThreadLocal}; reentry of a held instance only increments its depth, and locks
 *       may be released in any order;
 *   <li>one dependency graph over {@link LockClass}es for the whole JVM, {@code A -> B} when B
 *       was taken, blocking, while A was held; each edge keeps the frame that first added it
 *       (computed once, when the edge is new), which is what a report cites.
 * </ul>
 *
 * <p>{@link #checkAcquire} runs before a blocking acquisition of B: a held class A for which the
 * edge {@code A -> B} is already known has been checked before; for the others it searches the
 * graph for a path {@code B -> ... -> A}, and one found is an inversion. A trylock is not
 * checked and adds no edges into its class (it cannot wait, so cannot deadlock), but the lock it
 * took is held and orders what is taken after it. Read and write holds of a rw_semaphore are not
 * told apart: an order between two rwsems counts whichever way each was taken, as lockdep does
 * for non-recursive readers.
 *
 * <p>Enabled by {@code -Dvmcore.lockdep=true}, read once; the wrappers ({@link RwSem},
 * {@link KMutex}) test {@link #ENABLED}, a constant, before calling in, so with lockdep off the JIT
 * drops the calls. Every method here is also a no-op when it is off.
 */
public final class LockDep {
    /** On when the system property {@code vmcore.lockdep} is "true" (read once, at class init). */
    public static final boolean ENABLED = Boolean.parseBoolean(System.getProperty("vmcore.lockdep"));

    /** The dependency graph: class, then each class taken while it was held, with where first. */
    private static final ConcurrentMap<LockClass, ConcurrentMap<LockClass, String>> AFTER =
            new ConcurrentHashMap<>();
    private static final List<String> REPORTS = new CopyOnWriteArrayList<>();
    private static final ThreadLocal<List<Held>> HELD = ThreadLocal.withInitial(ArrayList::new);

    /** The classes whose frames a recorded location skips: the lock machinery itself. */
    private static final Set<Class<?>> MACHINERY = Set.of(LockDep.class, RwSem.class, KMutex.class);
    private static final StackWalker WALKER = StackWalker.getInstance(Option.RETAIN_CLASS_REFERENCE);

    /** One lock the thread holds: its class as taken, the instance, and how often it holds it. */
    private static final class Held {
        final LockClass cls;
        final Object instance;
        int depth = 1;

        Held(LockClass cls, Object instance) {
            this.cls = cls;
            this.instance = instance;
        }
    }

    private LockDep() {
    }

    /**
     * Called before blocking on a lock. Checks the order against every lock the thread holds;
     * throws {@link LockOrderViolation} on an inversion, or on taking a second instance of a
     * class the thread already holds with the same subclass (kernel: "possible recursive locking
     * detected"), unless it is the very same instance already held (reentry is allowed: it just
     * increments a depth in {@link #acquired}). Does nothing when disabled.
     *
     * @param cls the class the lock is taken as (with its nesting subclass)
     * @param instance the lock object itself
     * @throws LockOrderViolation on an inversion or recursive locking, after adding the report
     *         to {@link #reports()}
     */
    public static void checkAcquire(LockClass cls, Object instance) {
        if (!ENABLED) {
            return;
        }
        List<Held> held = HELD.get();
        if (held.isEmpty() || find(held, instance) != null) {
            return;
        }
        List<LockClass> unchecked = null;
        for (Held h : held) {
            if (h.cls.equals(cls)) {
                report("possible recursive locking detected: taking " + cls + " (" + describe(instance)
                        + ") while already holding " + h.cls + " (" + describe(h.instance)
                        + "); if the nesting is intended, take the inner one with a nested subclass"
                        + context(held, cls));
            }
            if (!hasEdge(h.cls, cls)) {
                if (unchecked == null) {
                    unchecked = new ArrayList<>(held.size());
                }
                if (!unchecked.contains(h.cls)) {
                    unchecked.add(h.cls);
                }
            }
        }
        if (unchecked == null) {
            return;
        }
        List<LockClass> path = findPath(cls, unchecked);
        if (path != null) {
            LockClass holding = path.getLast();
            report("lock-order inversion: taking " + cls + " while holding " + holding + ", but "
                    + joinPath(path) + " was seen before (" + origins(path) + ")"
                    + context(held, cls));
        }
    }

    /**
     * Records that the current thread now holds {@code instance} (of {@code cls}). A blocking
     * acquisition ({@code trylock == false}) adds the edge {@code A -> cls} for every class A
     * held; a trylock adds none, but the lock is still recorded as held. Taking an instance the
     * thread already holds only increments its depth. Does nothing when disabled.
     *
     * @param cls the class the lock was taken as (with its nesting subclass)
     * @param instance the lock object itself
     * @param trylock whether the lock was taken by a trylock, which could not have waited
     */
    public static void acquired(LockClass cls, Object instance, boolean trylock) {
        if (!ENABLED) {
            return;
        }
        List<Held> held = HELD.get();
        Held same = find(held, instance);
        if (same != null) {
            same.depth++;
            return;
        }
        if (!trylock) {
            for (Held h : held) {
                addEdge(h.cls, cls);
            }
        }
        held.add(new Held(cls, instance));
    }

    /**
     * Records the release of one hold of {@code instance} by the current thread; held locks may
     * be released in any order. Does nothing when disabled.
     *
     * @param instance the lock object itself
     * @throws LockOrderViolation if the thread does not hold {@code instance} (kernel: "bad
     *         unlock balance detected")
     */
    public static void released(Object instance) {
        if (!ENABLED) {
            return;
        }
        List<Held> held = HELD.get();
        for (int i = held.size() - 1; i >= 0; i--) {
            Held h = held.get(i);
            if (h.instance == instance) {
                if (--h.depth == 0) {
                    held.remove(i);
                }
                return;
            }
        }
        report("bad unlock balance detected: releasing " + describe(instance)
                + ", which the thread does not hold" + context(held, null));
    }

    /**
     * The classes of the locks the current thread holds, outermost (earliest taken) first, each
     * once however often it is reentered; empty when disabled.
     */
    public static List<LockClass> held() {
        if (!ENABLED) {
            return List.of();
        }
        return classes(HELD.get());
    }

    /** Every violation reported so far in this JVM (message texts), oldest first. */
    public static List<String> reports() {
        return List.copyOf(REPORTS);
    }

    /**
     * Forgets the learned dependency graph and the reports, and the calling thread's record of
     * held locks (tests only: the locks themselves stay as they are; other threads' records are
     * untouched).
     */
    public static void resetForTests() {
        AFTER.clear();
        REPORTS.clear();
        HELD.remove();
    }

    /** Adds {@code message} to the reports and throws it (for the wrappers' own checks too). */
    static void report(String message) {
        REPORTS.add(message);
        throw new LockOrderViolation(message);
    }

    private static Held find(List<Held> held, Object instance) {
        for (int i = held.size() - 1; i >= 0; i--) {
            Held h = held.get(i);
            if (h.instance == instance) {
                return h;
            }
        }
        return null;
    }

    private static boolean hasEdge(LockClass from, LockClass to) {
        Map<LockClass, String> after = AFTER.get(from);
        return after != null && after.containsKey(to);
    }

    private static void addEdge(LockClass from, LockClass to) {
        if (from.equals(to)) {
            return; // recursive locking, already reported: a self-loop would only repeat it
        }
        ConcurrentMap<LockClass, String> after = AFTER.get(from);
        if (after == null) {
            after = AFTER.computeIfAbsent(from, k -> new ConcurrentHashMap<>());
        }
        if (!after.containsKey(to)) {
            after.putIfAbsent(to, callerFrame()); // first writer wins a race: either frame is true
        }
    }

    /**
     * The shortest path {@code from -> ... -> t} in the graph to any class t of
     * {@code targets}, as its classes from {@code from} to t; null if none is reachable.
     */
    private static List<LockClass> findPath(LockClass from, List<LockClass> targets) {
        Map<LockClass, LockClass> parent = new HashMap<>();
        ArrayDeque<LockClass> queue = new ArrayDeque<>();
        parent.put(from, from);
        queue.add(from);
        while (!queue.isEmpty()) {
            LockClass c = queue.poll();
            Map<LockClass, String> after = AFTER.get(c);
            if (after == null) {
                continue;
            }
            for (LockClass next : after.keySet()) {
                if (parent.putIfAbsent(next, c) != null) {
                    continue;
                }
                if (targets.contains(next)) {
                    List<LockClass> path = new ArrayList<>();
                    for (LockClass p = next; !p.equals(from); p = parent.get(p)) {
                        path.add(p);
                    }
                    path.add(from);
                    return path.reversed();
                }
                queue.add(next);
            }
        }
        return null;
    }

    private static String joinPath(List<LockClass> path) {
        StringBuilder sb = new StringBuilder();
        for (LockClass c : path) {
            if (!sb.isEmpty()) {
                sb.append(" -> ");
            }
            sb.append(c);
        }
        return sb.toString();
    }

    /** {@code first at F} for a one-edge path, else {@code A -> B first at F1; B -> C first at F2}. */
    private static String origins(List<LockClass> path) {
        if (path.size() == 2) {
            return "first at " + origin(path.get(0), path.get(1));
        }
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i + 1 < path.size(); i++) {
            if (i > 0) {
                sb.append("; ");
            }
            sb.append(path.get(i)).append(" -> ").append(path.get(i + 1))
                    .append(" first at ").append(origin(path.get(i), path.get(i + 1)));
        }
        return sb.toString();
    }

    private static String origin(LockClass from, LockClass to) {
        Map<LockClass, String> after = AFTER.get(from);
        String frame = after == null ? null : after.get(to);
        return frame == null ? "?" : frame;
    }

    /** "; thread T holds [..], taking C at F": the end of every report. */
    private static String context(List<Held> held, LockClass taking) {
        return "; thread " + Thread.currentThread().getName() + " holds " + classes(held)
                + (taking == null ? "" : ", taking " + taking) + " at " + callerFrame();
    }

    private static List<LockClass> classes(List<Held> held) {
        List<LockClass> out = new ArrayList<>(held.size());
        for (Held h : held) {
            out.add(h.cls);
        }
        return out;
    }

    private static String describe(Object instance) {
        return instance.getClass().getSimpleName() + "@" + Integer.toHexString(System.identityHashCode(instance));
    }

    /** The first frame of the caller outside the lock machinery, "Class.method(File.java:42)". */
    private static String callerFrame() {
        return WALKER.walk(frames -> frames
                .filter(f -> !MACHINERY.contains(f.getDeclaringClass().getNestHost()))
                .findFirst()
                .map(LockDep::format)
                .orElse("?"));
    }

    private static String format(StackFrame f) {
        return f.getClassName() + "." + f.getMethodName() + "(" + f.getFileName() + ":" + f.getLineNumber() + ")";
    }
}
