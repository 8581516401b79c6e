package org.vmcore.api;

/**
 * An access, made from a {@link MigrationObserver} on the migrating thread, met a migration
 * entry of the migration in progress. A real CPU would sleep until the migration ends and then
 * retry; retry the access after the migration call returns.
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
     * The virtual address of the access.
     *
     * @return the virtual address of the access
     */
    public long address() {
        return address;
    }
}
