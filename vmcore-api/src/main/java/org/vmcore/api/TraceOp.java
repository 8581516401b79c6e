package org.vmcore.api;

/**
 * The operations of a mixed trace for {@link Cpu#replay}: one byte per access, so a trace of
 * millions of accesses stays small.
 */
public final class TraceOp {
    /** A data load ({@link Access#READ}): the loaded value goes to {@code values[i]}. */
    public static final byte LOAD = 0;
    /** A data store ({@link Access#WRITE}) of the low bytes of {@code values[i]}. */
    public static final byte STORE = 1;
    /**
     * An instruction fetch ({@link Access#EXECUTE}): translated through the same TLB with NX
     * checked, faulting in a page of a mapping without PROT_EXEC as SIGSEGV; the fetched bytes go
     * to {@code values[i]}.
     */
    public static final byte FETCH = 2;

    private TraceOp() {
    }

    /**
     * The access an operation makes.
     *
     * @param op {@link #LOAD}, {@link #STORE} or {@link #FETCH}
     * @return the access
     * @throws InvalidArgumentException if {@code op} is none of them
     */
    public static Access access(byte op) {
        return switch (op) {
            case LOAD -> Access.READ;
            case STORE -> Access.WRITE;
            case FETCH -> Access.EXECUTE;
            default -> throw new InvalidArgumentException("op", op, "must be TraceOp.LOAD (0), STORE (1) or FETCH (2)");
        };
    }
}
