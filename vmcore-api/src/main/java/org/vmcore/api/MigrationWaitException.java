package org.vmcore.api;

/**
 * An access met a page under migration where it cannot wait for the migration to end: from a
 * {@link MigrationObserver} on the migrating thread (the migration of that very page), or from
 * inside a user callback (a notifier, an observer, an rmap visitor), which runs under the locks of
 * the operation that called it, locks the migration may need to finish. A real CPU would sleep
 * until the migration ends and then retry; retry the access after the call that called back
 * returns. An access outside callbacks waits instead, as migration_entry_wait does, unless its
 * thread is interrupted: then it ends with this exception, the interrupt status kept.
 */
public class MigrationWaitException extends VmException {
    private static final long serialVersionUID = 1L;
    /** The address of the access. */
    private final long address;

    /**
     * The access at {@code address} would wait.
     *
     * @param address the virtual address
     */
    public MigrationWaitException(long address) {
        super("the access at 0x" + Long.toHexString(address) + " meets a migration entry of the migration running on this"
                + " thread; it would sleep until the migration ends: retry it afterwards");
        this.address = address;
    }

    /**
     * The access at {@code address} would wait, for the reason {@code message} gives.
     *
     * @param address the virtual address
     * @param message why it cannot wait
     */
    public MigrationWaitException(long address, String message) {
        super(message);
        this.address = address;
    }

    /**
     * The virtual address of the access.
     *
     * @return the virtual address of the access
     */
    public long address() {
        return address;
    }
}
