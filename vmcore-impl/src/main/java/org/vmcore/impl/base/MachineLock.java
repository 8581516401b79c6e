package org.vmcore.impl.base;

import org.vmcore.api.ClosedException;
import org.vmcore.impl.lock.FaultMutexTable;
import org.vmcore.impl.lock.LockClass;
import org.vmcore.impl.lock.LockDep;
import org.vmcore.impl.lock.PercpuRwSem;
import org.vmcore.impl.lock.PtLocks;

/**
 * The machine-wide lock above the kernel's locks, and whether the machine behind it is still
 * open. Operations confined to address spaces and files (faults, mmap, munmap, mprotect, fork,
 * exit, truncate) hold it <em>shared</em> and serialise with each other through the kernel's
 * locks ({@link org.vmcore.impl.lock}); operations that walk the reverse map across every
 * address space (migration, rmap walks, memory offline), inspections that need a quiescent
 * machine (the invariant checker, the page-table picture) and close hold it <em>exclusive</em>.
 * Linux has no such lock: its rmap walks and migration take the folio lock and the rmap locks
 * only. vmcore 0.2 still stops the world for them (docs/CONCURRENCY.md).
 *
 * <p>It also carries the machine's hashed lock tables (the split page-table locks and the hugetlb
 * fault mutexes), the lockless-walker barrier and the race hooks, which every layer below the
 * machine reaches through it.
 *
 * <p>Held through {@link #shared()} and {@link #exclusive()}, in try-with-resources; a thread
 * that holds it shared cannot take it exclusive (a read-write lock cannot be upgraded): such a
 * call, which only a user callback can make, is refused.
 */
public final class MachineLock {
    /** Lock class of the machine lock in the lock-order validator: it is outside every kernel lock. */
    public static final LockClass MACHINE = LockClass.of("vmcore_machine");

    // percpu_rw_semaphore-like: every operation reads it, so readers must not share a cache line.
    private final PercpuRwSem rw = new PercpuRwSem();
    private final Held sharedHold = () -> {
        rw.upRead();
        if (LockDep.ENABLED) {
            LockDep.released(this);
        }
    };
    private final Held exclusiveHold = () -> {
        rw.upWrite();
        if (LockDep.ENABLED) {
            LockDep.released(this);
        }
    };
    private final PtLocks ptLocks = new PtLocks();
    private final FaultMutexTable hugetlbFaultMutexes = new FaultMutexTable();
    private final RaceHooks raceHooks = new RaceHooks();
    private final LocklessWalkers locklessWalkers = new LocklessWalkers();
    private final MigratingThread migrating = new MigratingThread();
    // Written under the exclusive lock; read without it by the quick checks of public methods.
    private volatile boolean closed;

    /** A hold of the lock; closing it releases that hold. No allocation: one object per mode. */
    @FunctionalInterface
    public interface Held extends AutoCloseable {
        @Override
        void close();
    }

    /** Takes the lock shared (reentrant; also inside an exclusive hold of the same thread). */
    public Held shared() {
        if (LockDep.ENABLED) {
            LockDep.checkAcquire(MACHINE, this);
        }
        rw.downRead();
        if (LockDep.ENABLED) {
            LockDep.acquired(MACHINE, this, false);
        }
        return sharedHold;
    }

    /**
     * Takes the lock exclusive (reentrant). Refused with IllegalStateException when the thread
     * holds it shared only: that happens when a user callback of a per-mm operation calls a
     * machine-wide one, which would wait for itself.
     */
    public Held exclusive() {
        if (!rw.isWriteLockedByCurrentThread() && rw.readHoldCount() > 0) {
            throw new IllegalStateException("a machine-wide operation (rmap walk, invariant check, memory offline, close)"
                    + " was called from inside a callback of an operation that runs beside others (an address-space"
                    + " operation or a migration); it would wait for that operation");
        }
        if (LockDep.ENABLED) {
            LockDep.checkAcquire(MACHINE, this);
        }
        rw.downWrite();
        if (LockDep.ENABLED) {
            LockDep.acquired(MACHINE, this, false);
        }
        return exclusiveHold;
    }

    /**
     * Takes the lock exclusive if no other thread holds it now, without waiting; null otherwise
     * (a {@code try} with a null resource simply runs without it).
     */
    public Held tryExclusive() {
        if (!rw.tryDownWrite()) {
            return null;
        }
        if (LockDep.ENABLED) {
            LockDep.acquired(MACHINE, this, true);
        }
        return exclusiveHold;
    }

    /** Whether the current thread holds the lock, shared or exclusive. */
    public boolean isHeldByCurrentThread() {
        return rw.isWriteLockedByCurrentThread() || rw.readHoldCount() > 0;
    }

    /** Whether the current thread holds the lock exclusive. */
    public boolean isExclusiveByCurrentThread() {
        return rw.isWriteLockedByCurrentThread();
    }

    /** Whether the current thread holds the lock shared and not exclusive. */
    public boolean isSharedOnlyByCurrentThread() {
        return !rw.isWriteLockedByCurrentThread() && rw.readHoldCount() > 0;
    }

    /** The split page-table locks of every address space of the machine. */
    public PtLocks ptLocks() {
        return ptLocks;
    }

    /** hugetlb_fault_mutex_table. */
    public FaultMutexTable hugetlbFaultMutexes() {
        return hugetlbFaultMutexes;
    }

    /** The hooks at the machine's race points. */
    public RaceHooks raceHooks() {
        return raceHooks;
    }

    /** The lockless page-table walks in progress (GUP-fast) and their barrier. */
    public LocklessWalkers locklessWalkers() {
        return locklessWalkers;
    }

    /** The threads migrating pages now, and the folios each has locked. */
    public MigratingThread migrating() {
        return migrating;
    }

    /** Throws ClosedException once the machine is closed. */
    public void ensureOpen() {
        if (closed) {
            throw new ClosedException("machine");
        }
    }

    public boolean isClosed() {
        return closed;
    }

    /** Marks the machine closed; the caller holds the lock exclusive. */
    public void markClosed() {
        assert rw.isWriteLockedByCurrentThread();
        closed = true;
    }
}
