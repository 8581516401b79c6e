package org.vmcore.impl.base;

import java.util.Arrays;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Which threads are inside a page migration now, and which folios each holds locked. Several
 * migrations run at once (each under its folio lock), so the mark is per thread. The fault path
 * asks it to tell a wait that could never finish (an access to a page this thread itself is
 * migrating, from a migration observer) from an ordinary wait; the machine asks it to skip its
 * end-of-operation checks mid-migration. A machine-wide count of migrating threads keeps both
 * questions at one volatile read while nobody migrates, as on every fault.
 */
public final class MigratingThread {
    private final AtomicInteger active = new AtomicInteger();
    private final ThreadLocal<Folios> folios = ThreadLocal.withInitial(Folios::new);

    /** Whether the current thread is inside a page migration. */
    public boolean isCurrent() {
        return active.get() != 0 && folios.get().depth > 0;
    }

    /** Whether the current thread is migrating the folio headed by {@code pfn} (holds its lock for it). */
    public boolean holds(long pfn) {
        if (active.get() == 0) {
            return false;
        }
        Folios f = folios.get();
        for (int i = 0; i < f.depth; i++) {
            if (f.pfns[i] == pfn) {
                return true;
            }
        }
        return false;
    }

    /** The current thread starts migrating the folio headed by {@code pfn} (it took the folio lock). */
    public void enter(long pfn) {
        Folios f = folios.get();
        if (f.depth == f.pfns.length) {
            f.pfns = Arrays.copyOf(f.pfns, f.depth * 2);
        }
        f.pfns[f.depth++] = pfn;
        active.incrementAndGet();
    }

    /** The current thread is done with the folio of its innermost {@link #enter}. */
    public void exit() {
        Folios f = folios.get();
        f.depth--;
        active.decrementAndGet();
    }

    /** The folios one thread is migrating: more than one when an observer migrates another page. */
    private static final class Folios {
        long[] pfns = new long[2];
        int depth;
    }
}
