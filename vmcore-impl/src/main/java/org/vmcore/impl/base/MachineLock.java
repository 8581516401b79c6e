package org.vmcore.impl.base;

import org.vmcore.api.ClosedException;

/**
 * The one lock every mm operation holds in this version (it stands in for the kernel's mmap
 * locks, i_mmap_rwsem, anon_vma locks and page-table locks at once), and whether the machine
 * behind it is still open. Lower layers receive it instead of the machine: they may lock it and
 * ask whether the machine is closed, nothing more.
 *
 * <p>The lock is this object's monitor: {@code synchronized (lock) { ... }}.
 */
public final class MachineLock {
    // Written under the lock; read without it by the quick checks of public methods.
    private volatile boolean closed;

    /** Throws ClosedException once the machine is closed. */
    public void ensureOpen() {
        if (closed) {
            throw new ClosedException("machine");
        }
    }

    public boolean isClosed() {
        return closed;
    }

    /** Marks the machine closed; the caller holds the lock. */
    public void markClosed() {
        assert Thread.holdsLock(this);
        closed = true;
    }
}
