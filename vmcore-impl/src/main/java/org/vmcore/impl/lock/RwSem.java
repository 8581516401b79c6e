package org.vmcore.impl.lock;

import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A read-write semaphore (the kernel's rw_semaphore): mmap_lock, i_mmap_rwsem, the anon_vma lock,
 * the hugetlb VMA lock. Backed by a nonfair {@link ReentrantReadWriteLock}, so, unlike the
 * kernel's, it is reentrant: a thread may take it again for read, for write while it holds it
 * for write, and for read while it holds it for write; it may not take it for write while it
 * holds it only for read (that would wait for itself forever; with lockdep on, it is reported
 * instead). Read and write holds belong to the thread that took them: the thread that took a hold
 * releases it.
 *
 * <p>Every method tells {@link LockDep} when it is enabled: a blocking acquisition is checked
 * before it waits and recorded after, a trylock only recorded, a release recorded after the
 * lock is released.
 */
public final class RwSem {
    private final LockClass cls;
    private final ReentrantReadWriteLock rw = new ReentrantReadWriteLock();
    private final ReentrantReadWriteLock.ReadLock read = rw.readLock();
    private final ReentrantReadWriteLock.WriteLock write = rw.writeLock();

    /** An unlocked semaphore of class {@code cls}. */
    public RwSem(LockClass cls) {
        this.cls = cls;
    }

    /** The class lockdep keys this semaphore by (subclass as constructed). */
    public LockClass lockClass() {
        return cls;
    }

    /** down_read: takes the semaphore for read, waiting while a writer holds it. */
    public void downRead() {
        if (LockDep.ENABLED) {
            LockDep.checkAcquire(cls, this);
        }
        read.lock();
        if (LockDep.ENABLED) {
            LockDep.acquired(cls, this, false);
        }
    }

    /** down_read_nested: {@link #downRead()}, with lockdep seeing the class at {@code subclass}. */
    public void downReadNested(int subclass) {
        LockClass nested = cls.nested(subclass);
        if (LockDep.ENABLED) {
            LockDep.checkAcquire(nested, this);
        }
        read.lock();
        if (LockDep.ENABLED) {
            LockDep.acquired(nested, this, false);
        }
    }

    /** up_read: releases one read hold of the current thread. */
    public void upRead() {
        read.unlock();
        if (LockDep.ENABLED) {
            LockDep.released(this);
        }
    }

    /** down_write: takes the semaphore for write, waiting while anyone else holds it. */
    public void downWrite() {
        downWriteAs(cls);
    }

    /**
     * down_write_nested: {@link #downWrite()}, with lockdep seeing the class at {@code subclass}
     * (1 for SINGLE_DEPTH_NESTING: a second semaphore of the class taken inside the first).
     */
    public void downWriteNested(int subclass) {
        downWriteAs(cls.nested(subclass));
    }

    private void downWriteAs(LockClass as) {
        if (LockDep.ENABLED) {
            if (rw.getReadHoldCount() > 0 && !rw.isWriteLockedByCurrentThread()) {
                LockDep.report("possible recursive locking detected: down_write of " + as
                        + " by a thread that holds it for read, which would wait for itself; thread "
                        + Thread.currentThread().getName() + " holds " + LockDep.held());
            }
            LockDep.checkAcquire(as, this);
        }
        write.lock();
        if (LockDep.ENABLED) {
            LockDep.acquired(as, this, false);
        }
    }

    /** up_write: releases one write hold of the current thread. */
    public void upWrite() {
        write.unlock();
        if (LockDep.ENABLED) {
            LockDep.released(this);
        }
    }

    /** down_read_trylock: takes the semaphore for read if that needs no wait; lockdep adds no edges. */
    public boolean tryDownRead() {
        boolean locked = read.tryLock();
        if (locked && LockDep.ENABLED) {
            LockDep.acquired(cls, this, true);
        }
        return locked;
    }

    /** down_write_trylock: takes the semaphore for write if that needs no wait; lockdep adds no edges. */
    public boolean tryDownWrite() {
        boolean locked = write.tryLock();
        if (locked && LockDep.ENABLED) {
            LockDep.acquired(cls, this, true);
        }
        return locked;
    }

    /** Whether the current thread holds the semaphore for write. */
    public boolean isWriteLockedByCurrentThread() {
        return rw.isWriteLockedByCurrentThread();
    }

    /** Whether the current thread holds the semaphore for read (its read-hold count is above 0). */
    public boolean isReadLockedByCurrentThread() {
        return rw.getReadHoldCount() > 0;
    }

    /** Whether anyone holds the semaphore, for read or write (rwsem_is_locked); a snapshot. */
    public boolean isLocked() {
        return rw.isWriteLocked() || rw.getReadLockCount() > 0;
    }

    /** The class and identity, for messages: "RwSem(mmap_lock)@1b6d3586". */
    @Override
    public String toString() {
        return "RwSem(" + cls + ")@" + Integer.toHexString(System.identityHashCode(this));
    }
}
