package org.vmcore.api;

/**
 * One reference on a page, taken by {@link PhysicalMemoryView#tryGetPage}; {@link #close()} drops
 * it (put_page), once.
 */
public interface PageReference extends AutoCloseable {
    /**
     * The head frame of the page the reference is held on.
     *
     * @return its page frame number
     */
    long pfn();

    /** Drops the reference; a second call does nothing. */
    @Override
    void close();
}
