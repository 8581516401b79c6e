package org.vmcore.api;

/** The kind of a memory access, as a page fault reports it. */
public enum Access {
    /** A data read. */
    READ,
    /** A data write. */
    WRITE,
    /** An instruction fetch. */
    EXECUTE
}
