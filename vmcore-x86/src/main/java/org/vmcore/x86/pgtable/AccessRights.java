package org.vmcore.x86.pgtable;

/**
 * The checks a hardware walk makes on the entries it read (SDM 4.5 to 4.7): reserved bits per
 * level and kind of entry, then the access rights of the whole walk, user/supervisor, read/write
 * with CR0.WP on, execute-disable with EFER.NXE on, and protection keys against PKRU for user
 * data accesses. SMEP and SMAP are off, as the model's CPUs run user code only.
 */
final class AccessRights {
    /** The PFN bits of a 2 MiB leaf below its alignment (bit 12 is PAT_LARGE): reserved. */
    static final long LOW_2M_PFN_BITS = ((1L << 21) - 1) & ~((1L << 13) - 1);
    /** The PFN bits of a 1 GiB leaf below its alignment (bit 12 is PAT_LARGE): reserved. */
    static final long LOW_1G_PFN_BITS = ((1L << 30) - 1) & ~((1L << 13) - 1);
    private static final int LEVEL_COUNT = Level.values().length;
    private static final int PTE_ORD = Level.PTE.ordinal();
    private static final int PUD_ORD = Level.PUD.ordinal();

    private final long physReserved;
    // Reserved bits by level ordinal: for an entry that points to a table, and for a leaf.
    private final long[] tableReserved = new long[LEVEL_COUNT];
    private final long[] leafReserved = new long[LEVEL_COUNT];

    /** physReserved: the PFN bits at and above MAXPHYADDR. */
    AccessRights(long physReserved) {
        this.physReserved = physReserved;
        for (int ord = 0; ord < LEVEL_COUNT; ord++) {
            tableReserved[ord] = reservedBits(ord, false);
            leafReserved[ord] = reservedBits(ord, true);
        }
    }

    /** The reserved bits set in entry e read at level ordinal ord, as a leaf or a table pointer; 0 when none. */
    long reserved(long e, int ord, boolean leaf) {
        return e & (leaf ? leafReserved[ord] : tableReserved[ord]);
    }

    private long reservedBits(int ord, boolean large) {
        if (ord < PUD_ORD) {
            return physReserved | Pte.PSE; // PS is reserved in PML5 and PML4 entries
        }
        if (large && ord != PTE_ORD) {
            return physReserved | (ord == PUD_ORD ? LOW_1G_PFN_BITS : LOW_2M_PFN_BITS);
        }
        return physReserved;
    }

    /**
     * The fault code of an access the walk's effective bits deny, or 0 when they allow it:
     * rwAll and usAll are RW and USER ANDed over the levels, nxAny NX ORed, leaf the leaf entry
     * (for its protection key).
     */
    static int permissionFault(int access, long rwAll, long usAll, long nxAny, long leaf, int pkru) {
        boolean user = (access & PageFaultCode.USER) != 0;
        boolean write = (access & PageFaultCode.WRITE) != 0;
        boolean fetch = (access & PageFaultCode.FETCH) != 0;
        int fault = access | PageFaultCode.PROTECTION;
        if (user && usAll == 0) {
            return fault;
        }
        if (write && rwAll == 0) { // CR0.WP=1: supervisor writes obey RW too
            return fault;
        }
        if (fetch && (nxAny & Pte.NX) != 0) {
            return fault;
        }
        if (user && !fetch && pkru != 0) {
            int key = Pte.pkey(leaf);
            boolean accessDisabled = (pkru >>> (2 * key) & 1) != 0;
            boolean writeDisabled = (pkru >>> (2 * key + 1) & 1) != 0;
            if (accessDisabled || (write && writeDisabled)) {
                return fault | PageFaultCode.PKEY;
            }
        }
        return 0;
    }
}
