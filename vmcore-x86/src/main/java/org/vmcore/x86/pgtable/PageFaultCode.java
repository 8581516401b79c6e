package org.vmcore.x86.pgtable;

/**
 * Bits of the x86 page-fault error code, which a failed walk reports, plus one vmcore bit
 * ({@link #GENERAL_PROTECTION}) for a non-canonical address, where the CPU raises #GP
 * instead of #PF. The same bits describe the access that is walked: WRITE, USER and FETCH.
 */
public final class PageFaultCode {
    /** P: the fault was a protection violation on a present page (clear: not present). */
    public static final int PROTECTION = 1;
    /** W/R: the access was a write. */
    public static final int WRITE = 1 << 1;
    /** U/S: the access was made in user mode. */
    public static final int USER = 1 << 2;
    /** RSVD: a paging-structure entry had a reserved bit set. */
    public static final int RESERVED = 1 << 3;
    /** I/D: the access was an instruction fetch. */
    public static final int FETCH = 1 << 4;
    /** PK: the protection key forbade the access. */
    public static final int PKEY = 1 << 5;
    /** Not a #PF bit: the address was not canonical and the CPU raised #GP. */
    public static final int GENERAL_PROTECTION = 1 << 15;

    /** The access bits a walk accepts. */
    public static final int ACCESS_BITS = WRITE | USER | FETCH;

    private PageFaultCode() {
    }

    /**
     * A readable form, for example {@code #PF(P|W|U)}.
     *
     * @param code an error code of {@link PageFaultCode} bits
     * @return {@code #GP(non-canonical)} or {@code #PF(...)} with the set bits
     */
    public static String describe(int code) {
        if ((code & GENERAL_PROTECTION) != 0) {
            return "#GP(non-canonical)";
        }
        StringBuilder out = new StringBuilder("#PF(");
        out.append((code & PROTECTION) != 0 ? "P" : "NP");
        if ((code & WRITE) != 0) {
            out.append("|W");
        }
        if ((code & USER) != 0) {
            out.append("|U");
        }
        if ((code & RESERVED) != 0) {
            out.append("|RSVD");
        }
        if ((code & FETCH) != 0) {
            out.append("|I");
        }
        if ((code & PKEY) != 0) {
            out.append("|PK");
        }
        return out.append(')').toString();
    }
}
