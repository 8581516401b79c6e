package org.vmcore.api;

/**
 * Memory protection of a mapping, as mmap's PROT_* bits give it.
 *
 * <p>x86-64 cannot map a page writable but not readable, so, like Linux, a write-only or
 * execute-only protection is stored as given but the page tables grant read access too.
 *
 * @param read    PROT_READ
 * @param write   PROT_WRITE
 * @param execute PROT_EXEC
 */
public record Protection(boolean read, boolean write, boolean execute) {
    /** PROT_READ, as in the C headers. */
    public static final int PROT_READ = 0x1;
    /** PROT_WRITE, as in the C headers. */
    public static final int PROT_WRITE = 0x2;
    /** PROT_EXEC, as in the C headers. */
    public static final int PROT_EXEC = 0x4;

    /** PROT_NONE: any access faults. */
    public static final Protection NONE = new Protection(false, false, false);
    /** PROT_READ. */
    public static final Protection READ = new Protection(true, false, false);
    /** PROT_READ | PROT_WRITE. */
    public static final Protection READ_WRITE = new Protection(true, true, false);
    /** PROT_READ | PROT_EXEC. */
    public static final Protection READ_EXEC = new Protection(true, false, true);
    /** PROT_READ | PROT_WRITE | PROT_EXEC. */
    public static final Protection READ_WRITE_EXEC = new Protection(true, true, true);

    /**
     * The protection of the PROT_* bit set {@code prot}.
     *
     * @param prot PROT_READ, PROT_WRITE and PROT_EXEC ORed together, as in mmap(2)
     * @return the protection of the PROT_* bit set {@code prot}
     * @throws InvalidArgumentException if bits other than PROT_READ, PROT_WRITE, PROT_EXEC are set
     */
    public static Protection ofBits(int prot) {
        if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) != 0) {
            throw new InvalidArgumentException("prot", "0x" + Integer.toHexString(prot),
                    "only PROT_READ (1), PROT_WRITE (2) and PROT_EXEC (4) may be set");
        }
        return new Protection((prot & PROT_READ) != 0, (prot & PROT_WRITE) != 0, (prot & PROT_EXEC) != 0);
    }

    /**
     * The PROT_* bit set of this protection.
     *
     * @return the PROT_* bit set of this protection
     */
    public int bits() {
        return (read ? PROT_READ : 0) | (write ? PROT_WRITE : 0) | (execute ? PROT_EXEC : 0);
    }

    /**
     * Whether any access is allowed at all (not PROT_NONE).
     *
     * @return whether any access is allowed at all (not PROT_NONE)
     */
    public boolean accessible() {
        return read || write || execute;
    }

    /**
     * Whether {@code access} is allowed by this protection.
     *
     * @param access the kind of access
     * @return whether {@code access} is allowed by this protection
     */
    public boolean allows(Access access) {
        return switch (access) {
            case READ -> read || write || execute;
            case WRITE -> write;
            case EXECUTE -> execute;
        };
    }

    @Override
    public String toString() {
        return (read ? "r" : "-") + (write ? "w" : "-") + (execute ? "x" : "-");
    }
}
