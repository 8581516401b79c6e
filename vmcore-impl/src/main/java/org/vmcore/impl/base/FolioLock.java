package org.vmcore.impl.base;

import java.util.concurrent.locks.LockSupport;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.mem.FrameFlags;

/**
 * The folio lock (PG_locked, folio_lock/folio_trylock/folio_unlock): a bit in the page's
 * flags. Migration holds it from isolation to the end of remove_migration_ptes; a fault that maps
 * a page-cache page and truncation take it briefly, so that no new mapping of a page appears
 * while its contents move, and no page leaves the cache half migrated. Faults only try it (a
 * fault holds page-table locks when it finds the page) and wait for it after dropping them.
 *
 * <p>The lock is not a lockdep class: like the kernel's, it is a bit, waited for by the paths
 * above only with no rmap lock held.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class FolioLock {
    private FolioLock() {
    }

    /** folio_trylock. */
    public static boolean tryLock(MemMap descriptors, long pfn) {
        return descriptors.trySetFlag(pfn, FrameFlags.LOCKED);
    }

    /** folio_unlock. */
    public static void unlock(MemMap descriptors, long pfn) {
        descriptors.clearFlags(pfn, FrameFlags.LOCKED);
    }

    /** Whether the folio is locked now; a snapshot. */
    public static boolean isLocked(MemMap descriptors, long pfn) {
        return (descriptors.flags(pfn) & FrameFlags.LOCKED) != 0;
    }

    /**
     * folio_wait_locked (migration_entry_wait's wait): returns once the folio is unlocked, or at
     * once when the thread is interrupted (its interrupt status stays set; the caller retries).
     */
    public static void waitUnlocked(MemMap descriptors, long pfn) {
        for (int spins = 0; isLocked(descriptors, pfn) && !Thread.currentThread().isInterrupted(); spins++) {
            pause(spins);
        }
    }

    /**
     * folio_wait_locked for a path that dropped its locks to wait (truncation): returns once the
     * folio is unlocked, whatever the thread's interrupt status; at once for pfn -1.
     */
    public static void awaitUnlocked(MemMap descriptors, long pfn) {
        for (int spins = 0; pfn >= 0 && isLocked(descriptors, pfn); spins++) {
            pause(spins);
        }
    }

    /**
     * {@link #waitUnlocked} for a thread that holds no lock at all (a CPU's migration_entry_wait):
     * each look at the flag holds the machine lock shared, so that a close cannot free the
     * descriptors between two looks; once the machine is closed it throws ClosedException.
     *
     * @return true once the folio is unlocked, false when the thread was interrupted before
     */
    public static boolean waitUnlocked(MemMap descriptors, long pfn, MachineLock lock) {
        for (int spins = 0; ; spins++) {
            try (MachineLock.Held held = lock.shared()) {
                lock.ensureOpen();
                if (!isLocked(descriptors, pfn)) {
                    return true;
                }
            }
            if (Thread.currentThread().isInterrupted()) {
                return false;
            }
            pause(spins);
        }
    }

    /** Spins briefly (a migration of a small page takes microseconds), then yields, then parks. */
    private static void pause(int spins) {
        if (spins < 64) {
            Thread.onSpinWait();
        } else if (spins < 128) {
            Thread.yield();
        } else {
            LockSupport.parkNanos(20_000);
        }
    }
}
