package org.vmcore.api;

/** x86-64 paging modes: 4-level (48-bit virtual addresses) and 5-level LA57 (57-bit). */
public enum PagingMode {
    /** 4-level paging: PML4, PDPT (PUD), PD (PMD), PT; 48-bit canonical addresses. */
    FOUR_LEVEL(4, 48),
    /** 5-level paging (CR4.LA57): a PML5 table on top; 57-bit canonical addresses. */
    FIVE_LEVEL(5, 57);

    private final int levels;
    private final int virtualAddressBits;

    PagingMode(int levels, int virtualAddressBits) {
        this.levels = levels;
        this.virtualAddressBits = virtualAddressBits;
    }

    /**
     * Number of table levels walked: 4 or 5.
     *
     * @return number of table levels walked
     */
    public int levels() {
        return levels;
    }

    /**
     * Width of a canonical virtual address: 48 or 57 bits.
     *
     * @return width of a canonical virtual address
     */
    public int virtualAddressBits() {
        return virtualAddressBits;
    }

    /**
     * Whether {@code va} is canonical: bits 63 down to the top implemented bit all equal.
     *
     * @param va the virtual address
     * @return whether {@code va} is canonical
     */
    public boolean isCanonical(long va) {
        int unused = 64 - virtualAddressBits;
        return ((va << unused) >> unused) == va;
    }

    /**
     * TASK_SIZE_MAX: the end (exclusive) of the addresses a mapping may use, one page below the
     * canonical boundary: 2^47 - 4096, or 2^56 - 4096 with LA57. x86 keeps the last user page
     * unmapped so that no instruction can run into non-canonical space from user space.
     *
     * @return TASK_SIZE_MAX: {@link #userAddressLimit()} minus one 4 KiB page
     */
    public long taskSizeMax() {
        return userAddressLimit() - 4096;
    }

    /**
     * First address above the user half (the kernel's TASK_SIZE_MAX plus one page).
     *
     * @return first address above the user half (the kernel's TASK_SIZE_MAX plus one page)
     */
    public long userAddressLimit() {
        return 1L << (virtualAddressBits - 1);
    }
}
