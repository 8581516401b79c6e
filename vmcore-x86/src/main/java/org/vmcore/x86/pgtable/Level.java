package org.vmcore.x86.pgtable;

import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;

/**
 * The levels of x86-64 paging, top to bottom. PML5 exists only with 5-level paging; the kernel
 * calls PML4 the pgd when 4-level paging folds the p4d away. PUD, PMD and PTE are the
 * kernel's names for the PDPT, PD and PT.
 */
public enum Level {
    /** Page-map level 5 (LA57 only), bits 48..56. */
    PML5,
    /** Page-map level 4, bits 39..47. */
    PML4,
    /** Page upper directory (PDPT), bits 30..38; may hold 1 GiB leaves. */
    PUD,
    /** Page middle directory (PD), bits 21..29; may hold 2 MiB leaves. */
    PMD,
    /** Page table, bits 12..20; holds 4 KiB leaves. */
    PTE;

    /** Entries per table at every level. */
    public static final int ENTRIES = 512;

    private final int shift;

    Level() {
        this.shift = shift(ordinal());
    }

    /**
     * The lowest address bit this level's index uses.
     *
     * @return the bit number, 12 for PTE up to 48 for PML5
     */
    public int shift() {
        return shift;
    }

    /**
     * {@link #shift()} of the level with ordinal {@code ord}, worked out rather than looked up, so
     * that it is a constant wherever {@code ord} is one (the JIT does not fold array elements).
     */
    static int shift(int ord) {
        return 48 - 9 * ord;
    }

    /**
     * Bytes of address space one entry of this level covers.
     *
     * @return 2 to the power of {@link #shift()}: 4 KiB for PTE up to 256 TiB for PML5
     */
    public long entrySpan() {
        return 1L << shift;
    }

    /**
     * The index of {@code va} in a table of this level.
     *
     * @param va the virtual address
     * @return the 9 bits of {@code va} above {@link #shift()}, 0 to 511
     */
    public int index(long va) {
        return (int) ((va >>> shift) & (ENTRIES - 1));
    }

    /**
     * The level below, or null for PTE.
     *
     * @return the next lower level, or null for PTE
     */
    public Level below() {
        return this == PTE ? null : values()[ordinal() + 1];
    }

    /**
     * The page size of a leaf at this level, or null where leaves are not allowed.
     *
     * @return 1 GiB for PUD, 2 MiB for PMD, 4 KiB for PTE, null for PML5 and PML4
     */
    public PageSize leafSize() {
        return switch (this) {
            case PUD -> PageSize.SIZE_1G;
            case PMD -> PageSize.SIZE_2M;
            case PTE -> PageSize.SIZE_4K;
            default -> null;
        };
    }

    /**
     * The level whose entries are leaves of {@code size}.
     *
     * @param size the page size of the leaf
     * @return PUD for 1 GiB, PMD for 2 MiB, PTE for 4 KiB
     */
    public static Level ofLeaf(PageSize size) {
        return switch (size) {
            case SIZE_4K -> PTE;
            case SIZE_2M -> PMD;
            case SIZE_1G -> PUD;
        };
    }

    /**
     * The root level of {@code mode}: PML5 or PML4.
     *
     * @param mode 4- or 5-level paging
     * @return the level of the table that CR3 points to
     */
    public static Level root(PagingMode mode) {
        return mode == PagingMode.FIVE_LEVEL ? PML5 : PML4;
    }

    /**
     * The name the kernel's page-table dump prints for this level under {@code mode}.
     *
     * @param mode 4- or 5-level paging, which decides whether PML4 prints as pgd or p4d
     * @return the kernel's name: pgd, p4d, pud, pmd or pte
     */
    public String dumpName(PagingMode mode) {
        return switch (this) {
            case PML5 -> "pgd";
            case PML4 -> mode == PagingMode.FIVE_LEVEL ? "p4d" : "pgd";
            case PUD -> "pud";
            case PMD -> "pmd";
            case PTE -> "pte";
        };
    }
}
