package org.vmcore.api;

/**
 * Base of every exception vmcore throws on purpose. Unchecked: a simulator normally treats
 * these as bugs in its own driving code, or reports them as the simulated program's fault.
 *
 * <p>Every operation that throws a {@code VmException} leaves the engine's state as it was
 * before the call.
 */
public class VmException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /**
     * An exception with the given message.
     *
     * @param message what went wrong
     */
    public VmException(String message) {
        super(message);
    }

    /**
     * An exception with the given message and cause.
     *
     * @param message what went wrong
     * @param cause why it faulted
     */
    public VmException(String message, Throwable cause) {
        super(message, cause);
    }
}
