package org.vmcore.api;

/**
 * The result of move_pages(2), as do_pages_move returns it.
 *
 * <p>Lookup and isolation errors (-EFAULT, -ENOENT, -EACCES, -EBUSY) go only into the status
 * array. The first batch whose migration fails stops the call: {@code notMigrated} is then the
 * number of pages of that batch not migrated plus the pages not yet attempted, and those pages get
 * {@link #NOT_ATTEMPTED} (the kernel leaves the caller's array untouched there). The pages of the
 * failed batch get their own outcome: the node for those that moved, the error for the others.
 *
 * @param notMigrated the return value: 0 when every queued batch migrated, else the pages of the
 *                    failed batch not migrated plus the pages not attempted
 * @param status      per address: the node the page is on, a negative {@link Errno} value, or
 *                    {@link #NOT_ATTEMPTED}
 */
public record MovePagesResult(int notMigrated, int[] status) {
    /** The status of an address the call never reached because an earlier batch failed; neither a node nor an errno. */
    public static final int NOT_ATTEMPTED = Integer.MIN_VALUE;

    /**
     * Copies the status array.
     *
     * @throws InvalidArgumentException if {@code status} is null
     */
    public MovePagesResult {
        if (status == null) {
            throw new InvalidArgumentException("status", null, "must not be null");
        }
        status = status.clone();
    }

    /**
     * A copy of the status array.
     *
     * @return a copy of the status array
     */
    @Override
    public int[] status() {
        return status.clone();
    }

    /**
     * The status of entry {@code i}.
     *
     * @param i the index of the page in the call's address array
     * @return the status of entry {@code i}
     */
    public int status(int i) {
        return status[i];
    }
}
