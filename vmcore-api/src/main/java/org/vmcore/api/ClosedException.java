package org.vmcore.api;

/** An object was used after it was closed (a machine, an address space, a file). */
public class ClosedException extends VmException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception naming the closed object.
     *
     * @param what the closed object, e.g. "machine"
     */
    public ClosedException(String what) {
        super(what + " is closed");
    }
}
