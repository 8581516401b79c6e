package org.vmcore.impl.lock;

import java.util.concurrent.locks.ReentrantLock;

/**
 * A mutex or spinlock stand-in (the hugetlb fault mutex, a page-table lock, the folio lock): a
 * nonfair {@link ReentrantLock}, so, unlike the kernel's, a thread may take it again while it
 * holds it. Every method tells {@link LockDep} when it is enabled, as {@link RwSem}'s do.
 */
public final class KMutex {
    private final LockClass cls;
    private final ReentrantLock lock = new ReentrantLock();

    /** An unlocked mutex of class {@code cls}. */
    public KMutex(LockClass cls) {
        this.cls = cls;
    }

    /** The class lockdep keys this mutex by (subclass as constructed). */
    public LockClass lockClass() {
        return cls;
    }

    /** mutex_lock / spin_lock: takes the lock, waiting while another thread holds it. */
    public void lock() {
        lockAs(cls);
    }

    /** mutex_lock_nested / spin_lock_nested: {@link #lock()}, lockdep seeing {@code subclass}. */
    public void lockNested(int subclass) {
        lockAs(cls.nested(subclass));
    }

    private void lockAs(LockClass as) {
        if (LockDep.ENABLED) {
            LockDep.checkAcquire(as, this);
        }
        lock.lock();
        if (LockDep.ENABLED) {
            LockDep.acquired(as, this, false);
        }
    }

    /** mutex_unlock / spin_unlock: releases one hold of the current thread. */
    public void unlock() {
        lock.unlock();
        if (LockDep.ENABLED) {
            LockDep.released(this);
        }
    }

    /** mutex_trylock / spin_trylock: takes the lock if that needs no wait; lockdep adds no edges. */
    public boolean tryLock() {
        boolean locked = lock.tryLock();
        if (locked && LockDep.ENABLED) {
            LockDep.acquired(cls, this, true);
        }
        return locked;
    }

    /** Whether the current thread holds the lock (lockdep_assert_held, for this thread). */
    public boolean isHeldByCurrentThread() {
        return lock.isHeldByCurrentThread();
    }

    /** Whether anyone holds the lock (mutex_is_locked / spin_is_locked); a snapshot. */
    public boolean isLocked() {
        return lock.isLocked();
    }

    /** The class and identity, for messages: "KMutex(ptl)@1b6d3586". */
    @Override
    public String toString() {
        return "KMutex(" + cls + ")@" + Integer.toHexString(System.identityHashCode(this));
    }
}
