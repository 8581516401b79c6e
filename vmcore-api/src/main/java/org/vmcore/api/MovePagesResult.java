package org.vmcore.api;

/**
 * The result of move_pages(2).
 *
 * @param notMigrated the return value: pages that were not migrated (0 when all were)
 * @param status      per address: the node the page is on, or a negative {@link Errno} value
 */
public record MovePagesResult(int notMigrated, int[] status) {
    /** Copies the status array. */
    public MovePagesResult {
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
     * @param i the entry
     * @return the status of entry {@code i}
     */
    public int status(int i) {
        return status[i];
    }
}
