package org.vmcore.api;

/** The simulated machine has no free memory for a request (the kernel's -ENOMEM). */
public class OutOfMemoryException extends VmException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception naming what could not be allocated.
     *
     * @param message what went wrong
     */
    public OutOfMemoryException(String message) {
        super(message);
    }
}
