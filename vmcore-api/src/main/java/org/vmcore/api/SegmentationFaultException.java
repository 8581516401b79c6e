package org.vmcore.api;

/**
 * A simulated access that the kernel would answer with SIGSEGV (or SIGBUS).
 * It names the faulting virtual address, the access and the cause.
 */
public class SegmentationFaultException extends VmException {
    private static final long serialVersionUID = 1L;

    /** Why the access failed, in the terms of the kernel's si_code. */
    public enum Cause {
        /** No VMA covers the address (SEGV_MAPERR). */
        NO_VMA,
        /** A VMA covers it but its protection forbids the access (SEGV_ACCERR). */
        PROTECTION,
        /** The address is not canonical: a general-protection fault, not a page fault. */
        NON_CANONICAL,
        /** A page-table entry has a reserved bit set (#PF with RSVD). */
        RESERVED_BIT,
        /** The protection key in PKRU forbids the access (SEGV_PKUERR). */
        PROTECTION_KEY,
        /** The page is hardware-poisoned (SIGBUS, BUS_MCEERR_AR). */
        HWPOISON,
        /** The address maps a file page past the end of the file (SIGBUS, BUS_ADRERR). */
        BEYOND_EOF,
        /**
         * A private hugetlb mapping lost its page to the reservation owner: the owner's
         * copy-on-write found the pool empty and unmapped the page it shared with this mapping
         * (unmap_ref_private), so every later fault in the mapping gets SIGBUS (hugetlb_no_page
         * with HPAGE_RESV_UNMAPPED; the kernel logs "killed due to inadequate hugepage pool").
         */
        HUGETLB_RESV_UNMAPPED
    }

    /** The faulting address. */
    private final long address;
    /** The access that faulted. */
    private final Access access;
    /** Why it faulted. */
    private final Cause cause;
    /** The index of the faulting access in its batch, or -1. */
    private final int batchIndex;

    /**
     * A fault at {@code address} for {@code access}, caused by {@code cause}.
     *
     * @param address the virtual address
     * @param access the kind of access
     * @param cause why it faulted
     */
    public SegmentationFaultException(long address, Access access, Cause cause) {
        this(address, access, cause, -1);
    }

    /**
     * A fault of access {@code batchIndex} of a batch ({@link Cpu#loadAll}, {@link Cpu#storeAll},
     * {@link Cpu#replay}).
     *
     * @param address the virtual address
     * @param access the kind of access
     * @param cause why it faulted
     * @param batchIndex the index of the faulting access in its batch, or -1 outside a batch
     */
    public SegmentationFaultException(long address, Access access, Cause cause, int batchIndex) {
        super("segmentation fault: " + access.name().toLowerCase() + " at 0x" + Long.toHexString(address)
                + " (" + cause + ")" + (batchIndex >= 0 ? " at batch index " + batchIndex : ""));
        this.address = address;
        this.access = access;
        this.cause = cause;
        this.batchIndex = batchIndex;
    }

    /**
     * The index in its batch of the access that faulted, or -1 when the fault was not in a
     * batch: the accesses before it took effect, it and those after did not.
     *
     * @return the batch index, or -1
     */
    public int batchIndex() {
        return batchIndex;
    }

    /**
     * The faulting virtual address.
     *
     * @return the faulting virtual address
     */
    public long address() {
        return address;
    }

    /**
     * The access that faulted.
     *
     * @return the access that faulted
     */
    public Access access() {
        return access;
    }

    /**
     * Why it faulted.
     *
     * @return why it faulted
     */
    public Cause cause() {
        return cause;
    }
}
