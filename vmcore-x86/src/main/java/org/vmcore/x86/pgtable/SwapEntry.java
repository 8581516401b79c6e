package org.vmcore.x86.pgtable;

import org.vmcore.api.InvalidArgumentException;

/**
 * The x86-64 in-entry format of non-present "swap" entries, which also carries migration
 * and hwpoison entries.
 *
 * <p>Layout: bit 0 (P) clear; bit 1 soft-dirty, bit 2 uffd-wp, bit 3 exclusive; bits 4..8
 * zero (A and D are avoided because of an erratum, PS and PROTNONE would make the entry look
 * present); bits 9..58 the bitwise NOT of the 50-bit offset (L1TF hardening); bits 59..63
 * the 5-bit type.
 *
 * <p>Type numbers follow the 6.x kernel with every option on: 4 device types, 3 migration types,
 * 1 hwpoison and 1 PTE-marker type are carved from the top of the 32 types, leaving
 * {@link #MAX_SWAPFILES} = 23 for swap files.
 */
public final class SwapEntry {
    /** Width of the type field. */
    public static final int TYPE_BITS = 5;
    /** Width of the offset field. */
    public static final int OFFSET_BITS = 50;
    /** First bit of the (inverted) offset field. */
    public static final int OFFSET_FIRST_BIT = 9;
    /** _PAGE_SWP_SOFT_DIRTY (aliases RW). */
    public static final long SOFT_DIRTY = 1L << 1;
    /** _PAGE_SWP_UFFD_WP (aliases USER). */
    public static final long UFFD_WP = 1L << 2;
    /** _PAGE_SWP_EXCLUSIVE (aliases PWT). */
    public static final long EXCLUSIVE = 1L << 3;
    /** The flag bits a swap entry may carry. */
    public static final long FLAG_BITS = SOFT_DIRTY | UFFD_WP | EXCLUSIVE;

    private static final int DEVICE_TYPES = 4;
    private static final int MIGRATION_TYPES = 3;
    private static final int HWPOISON_TYPES = 1;
    private static final int PTE_MARKER_TYPES = 1;

    /** Types left for swap files. */
    public static final int MAX_SWAPFILES =
            (1 << TYPE_BITS) - DEVICE_TYPES - MIGRATION_TYPES - HWPOISON_TYPES - PTE_MARKER_TYPES;
    /** SWP_HWPOISON. */
    public static final int TYPE_HWPOISON = MAX_SWAPFILES;
    /** SWP_MIGRATION_READ. */
    public static final int TYPE_MIGRATION_READ = TYPE_HWPOISON + HWPOISON_TYPES;
    /** SWP_MIGRATION_READ_EXCLUSIVE. */
    public static final int TYPE_MIGRATION_READ_EXCLUSIVE = TYPE_MIGRATION_READ + 1;
    /** SWP_MIGRATION_WRITE. */
    public static final int TYPE_MIGRATION_WRITE = TYPE_MIGRATION_READ + 2;
    /** First of the device-private/exclusive types. */
    public static final int TYPE_DEVICE_FIRST = TYPE_MIGRATION_READ + MIGRATION_TYPES;
    /** SWP_PTE_MARKER. */
    public static final int TYPE_PTE_MARKER = TYPE_DEVICE_FIRST + DEVICE_TYPES;

    private static final long OFFSET_LIMIT = 1L << OFFSET_BITS;

    private SwapEntry() {
    }

    /**
     * The entry of {@code type} and {@code offset}, with swap flag bits {@code flags}.
     *
     * @param type the swap type, 0 to 31
     * @param offset the offset (swap slot or PFN), below 2^{@link #OFFSET_BITS}
     * @param flags swap flag bits, a subset of {@link #FLAG_BITS}
     * @return the non-present entry
     * @throws InvalidArgumentException if type, offset or flags are out of their fields
     */
    public static long make(int type, long offset, long flags) {
        if (type < 0 || type >= (1 << TYPE_BITS)) {
            throw new InvalidArgumentException("type", type, "must fit in 5 bits (0..31)");
        }
        if (offset < 0 || offset >= OFFSET_LIMIT) {
            throw new InvalidArgumentException("offset", offset, "must fit in " + OFFSET_BITS + " bits");
        }
        if ((flags & ~FLAG_BITS) != 0) {
            throw new InvalidArgumentException("flags", flags, "must be a subset of soft-dirty, uffd-wp, exclusive (0xe)");
        }
        // The offset is stored inverted so that a cleared-P entry never names real memory (L1TF).
        return ((~offset << (OFFSET_FIRST_BIT + TYPE_BITS)) >>> TYPE_BITS) | ((long) type << (64 - TYPE_BITS)) | flags;
    }

    /**
     * The type field.
     *
     * @param entry a swap-format entry
     * @return the 5-bit type, bits 59..63
     */
    public static int type(long entry) {
        return (int) (entry >>> (64 - TYPE_BITS));
    }

    /**
     * The offset field, un-inverted.
     *
     * @param entry a swap-format entry
     * @return the 50-bit offset, bits 9..58 inverted back
     */
    public static long offset(long entry) {
        return (~entry << TYPE_BITS) >>> (OFFSET_FIRST_BIT + TYPE_BITS);
    }

    /**
     * The swap flag bits (soft-dirty, uffd-wp, exclusive).
     *
     * @param entry a swap-format entry
     * @return the entry's bits of {@link #FLAG_BITS}
     */
    public static long flags(long entry) {
        return entry & FLAG_BITS;
    }
}
