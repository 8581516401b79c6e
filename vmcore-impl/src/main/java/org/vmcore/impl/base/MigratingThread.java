package org.vmcore.impl.base;

/**
 * Which thread is inside a page migration right now (the one running its phase observers). The
 * fault path asks it to tell a wait it could never finish (an access from the migrating thread
 * itself) from an ordinary wait; the machine asks it to skip its end-of-operation checks
 * mid-migration. Migration sets it, so neither asker needs the migration code.
 */
public final class MigratingThread {
    private volatile Thread migrating;

    /** Whether the current thread is inside a page migration. */
    public boolean isCurrent() {
        return migrating == Thread.currentThread();
    }

    /** Marks the current thread as migrating; returns the thread marked before, for {@link #restore}. */
    public Thread enter() {
        Thread previous = migrating;
        migrating = Thread.currentThread();
        return previous;
    }

    /** Restores what {@link #enter} replaced. */
    public void restore(Thread previous) {
        migrating = previous;
    }
}
