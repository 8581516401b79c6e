package org.vmcore.x86.pgtable;

import org.vmcore.api.PageSize;

/**
 * The x86-64 page-table entry format: bit constants and helpers for leaf and table entries.
 * The names are the kernel's ({@code _PAGE_*}); the values are architectural.
 *
 * <p>A non-zero entry with P clear (PROT_NONE, swap, migration, hwpoison) keeps its PFN bits
 * inverted, the kernel's L1TF hardening; {@link #pfn} undoes that.
 */
public final class Pte {
    /** P: present. */
    public static final long PRESENT = 1L;
    /** R/W: writable. */
    public static final long RW = 1L << 1;
    /** U/S: user-accessible. */
    public static final long USER = 1L << 2;
    /** PWT: write-through. */
    public static final long PWT = 1L << 3;
    /** PCD: cache disable. */
    public static final long PCD = 1L << 4;
    /** A: accessed, set by the walker. */
    public static final long ACCESSED = 1L << 5;
    /** D: dirty, set by the walker on a write through a leaf. */
    public static final long DIRTY = 1L << 6;
    /** PS: in a PUD or PMD entry, the entry is a 1 GiB or 2 MiB leaf. */
    public static final long PSE = 1L << 7;
    /** PAT bit of a 4 KiB PTE (same position as PSE). */
    public static final long PAT = 1L << 7;
    /** G: global. */
    public static final long GLOBAL = 1L << 8;
    /** With P clear, bit 8 marks a PROT_NONE mapping (_PAGE_PROTNONE). */
    public static final long PROTNONE = 1L << 8;
    /** Software bit 1: _PAGE_SPECIAL. */
    public static final long SPECIAL = 1L << 9;
    /** Software bit 2: _PAGE_UFFD_WP. */
    public static final long UFFD_WP = 1L << 10;
    /** Software bit 3: _PAGE_SOFT_DIRTY. */
    public static final long SOFT_DIRTY = 1L << 11;
    /** PAT bit of a 2 MiB or 1 GiB leaf (bit 12, PFN bit 0 in a 4 KiB PTE). */
    public static final long PAT_LARGE = 1L << 12;
    /** Software bit 4 (DEVMAP). */
    public static final long SOFTW4 = 1L << 57;
    /** Software bit 5 (SAVED_DIRTY). */
    public static final long SOFTW5 = 1L << 58;
    /** Position of the 4-bit protection key. */
    public static final int PKEY_SHIFT = 59;
    /** The protection-key bits 59..62. */
    public static final long PKEY_MASK = 0xFL << PKEY_SHIFT;
    /** XD/NX: no-execute. */
    public static final long NX = 1L << 63;

    /** PFN bits 12..51 of a table entry or 4 KiB leaf (PTE_PFN_MASK). */
    public static final long PFN_MASK = ((1L << 52) - 1) & ~0xFFFL;
    /** PFN bits 21..51 of a 2 MiB leaf. */
    public static final long PMD_PFN_MASK = ((1L << 52) - 1) & ~((1L << 21) - 1);
    /** PFN bits 30..51 of a 1 GiB leaf. */
    public static final long PUD_PFN_MASK = ((1L << 52) - 1) & ~((1L << 30) - 1);

    /** _PAGE_TABLE: the flags of an entry that points to a lower table. */
    public static final long TABLE = PRESENT | RW | USER | ACCESSED | DIRTY;

    /** Bits a protection change replaces (everything else is kept, as pte_modify does). */
    public static final long PROT_BITS = PRESENT | RW | USER | GLOBAL | NX | PKEY_MASK;

    /** Attribute bits a caller may put in a 4 KiB leaf besides the PFN. */
    public static final long LEAF_4K_FLAGS = PRESENT | RW | USER | PWT | PCD | ACCESSED | DIRTY | PAT | GLOBAL
            | SPECIAL | UFFD_WP | SOFT_DIRTY | SOFTW4 | SOFTW5 | PKEY_MASK | NX;
    /** Attribute bits a caller may put in a 2 MiB or 1 GiB leaf besides the PFN (PS is added). */
    public static final long LEAF_HUGE_FLAGS = (LEAF_4K_FLAGS & ~PAT) | PAT_LARGE;

    private Pte() {
    }

    /**
     * pte_none: nothing is there. A and D are ignored, as some CPUs set them on empty entries.
     *
     * @param entry a page-table entry at any level
     * @return true when every bit but A and D is clear
     */
    public static boolean isNone(long entry) {
        return (entry & ~(ACCESSED | DIRTY)) == 0;
    }

    /**
     * pte_present: P set, or a PROT_NONE mapping (P clear, PROTNONE set).
     *
     * @param entry a page-table entry at any level
     * @return true when the entry maps a page or table, PROT_NONE included
     */
    public static boolean isPresent(long entry) {
        return (entry & (PRESENT | PROTNONE)) != 0;
    }

    /**
     * Whether the entry is a swap-format entry: not none and not present.
     *
     * @param entry a page-table entry at any level
     * @return true for swap, migration and hwpoison entries
     */
    public static boolean isSwap(long entry) {
        return !isNone(entry) && !isPresent(entry);
    }

    /**
     * Whether an entry at {@code level} maps a page (rather than pointing to a table).
     *
     * @param entry a present entry
     * @param level the level it was read at
     * @return true for every PTE-level entry, and above it when PS is set
     */
    public static boolean isLeaf(long entry, Level level) {
        return level == Level.PTE || ((level == Level.PMD || level == Level.PUD) && (entry & PSE) != 0);
    }

    /**
     * Whether the stored PFN bits are inverted (L1TF): non-zero with P clear.
     *
     * @param entry a page-table entry
     * @return true when the PFN bits must be inverted to be read
     */
    public static boolean isInverted(long entry) {
        return entry != 0 && (entry & PRESENT) == 0;
    }

    /**
     * The PFN of a table entry or 4 KiB leaf, undoing the L1TF inversion.
     *
     * @param entry a table entry or 4 KiB leaf
     * @return the frame number in bits 12..51
     */
    public static long pfn(long entry) {
        return pfn(entry, PFN_MASK);
    }

    /**
     * The PFN of a leaf of {@code size} (the head PFN for a huge leaf).
     *
     * @param entry a leaf entry
     * @param size the leaf's page size, which decides the PFN mask
     * @return the frame number of the first 4 KiB frame the leaf maps
     */
    public static long pfn(long entry, PageSize size) {
        return pfn(entry, pfnMask(size));
    }

    /**
     * The PFN bits of a leaf of {@code size}.
     *
     * @param size the leaf's page size
     * @return {@link #PFN_MASK}, {@link #PMD_PFN_MASK} or {@link #PUD_PFN_MASK}
     */
    public static long pfnMask(PageSize size) {
        return switch (size) {
            case SIZE_4K -> PFN_MASK;
            case SIZE_2M -> PMD_PFN_MASK;
            case SIZE_1G -> PUD_PFN_MASK;
        };
    }

    private static long pfn(long entry, long mask) {
        long bits = isInverted(entry) ? ~entry : entry;
        return (bits & mask) >>> 12;
    }

    /**
     * A leaf entry mapping {@code pfn} at {@code size}. {@code flags} must include PRESENT or
     * PROTNONE; PS is added for huge sizes; the PFN is inverted when P is clear.
     *
     * @param pfn the frame number of the page, aligned to {@code size}
     * @param size the page size of the leaf
     * @param flags attribute bits, within {@link #LEAF_4K_FLAGS} or {@link #LEAF_HUGE_FLAGS}
     * @return the entry
     */
    public static long leaf(long pfn, PageSize size, long flags) {
        long entry = ((pfn << 12) & pfnMask(size)) | flags | (size == PageSize.SIZE_4K ? 0 : PSE);
        return (flags & PRESENT) == 0 ? entry ^ pfnMask(size) : entry;
    }

    /**
     * A table entry pointing at the table in frame {@code tablePfn}.
     *
     * @param tablePfn the page frame number of the lower table
     * @return the PFN with {@link #TABLE} flags
     */
    public static long table(long tablePfn) {
        return ((tablePfn << 12) & PFN_MASK) | TABLE;
    }

    /**
     * The protection key of a leaf.
     *
     * @param entry a leaf entry
     * @return the protection key, 0 to 15
     */
    public static int pkey(long entry) {
        return (int) ((entry & PKEY_MASK) >>> PKEY_SHIFT);
    }

    /**
     * The bits of {@code flags} that a leaf of {@code size} must not carry.
     *
     * @param flags attribute bits proposed for a leaf
     * @param size the leaf's page size
     * @return the bits outside {@link #LEAF_4K_FLAGS} or {@link #LEAF_HUGE_FLAGS}, 0 when all are allowed
     */
    public static long illegalLeafFlags(long flags, PageSize size) {
        return flags & ~(size == PageSize.SIZE_4K ? LEAF_4K_FLAGS : LEAF_HUGE_FLAGS);
    }

    /**
     * A short description of an entry whose level is not known, for example
     * {@code 0x8000000012345067 P RW USR A D NX pfn=0x12345}. Bit 7 is named {@code PS/PAT},
     * since it is PAT in a 4 KiB PTE and PS in a PMD or PUD; prefer {@link #describe(long, Level)}.
     *
     * @param entry a page-table entry
     * @return the hex value, the names of the set bits and the PFN
     */
    public static String describe(long entry) {
        return describe(entry, null);
    }

    /**
     * A short description of an entry read at {@code level}: bit 7 is PAT in a PTE and PS above
     * it; in a 2 MiB or 1 GiB leaf bit 12 is PAT (PAT_LARGE) and the PFN is read with the leaf's
     * mask.
     *
     * @param entry the entry
     * @param level the level it was read at, or null if not known
     * @return for example {@code 0x80000000122000e7 P RW USR A D PS PAT NX pfn=0x12200}
     */
    public static String describe(long entry, Level level) {
        if (entry == 0) {
            return "0x0 none";
        }
        StringBuilder out = new StringBuilder("0x").append(Long.toHexString(entry));
        if (isSwap(entry)) {
            return out.append(" swap type=").append(SwapEntry.type(entry))
                    .append(" offset=0x").append(Long.toHexString(SwapEntry.offset(entry))).toString();
        }
        String bit7 = level == null ? "PS/PAT" : level == Level.PTE ? "PAT" : "PS";
        String[] names = {"P", "RW", "USR", "PWT", "PCD", "A", "D", bit7, "G"};
        for (int bit = 0; bit < names.length; bit++) {
            if ((entry & (1L << bit)) != 0) {
                out.append(' ').append(bit == 8 && (entry & PRESENT) == 0 ? "PROTNONE" : names[bit]);
            }
        }
        boolean hugeLeaf = level != null && level != Level.PTE && isLeaf(entry, level);
        if (hugeLeaf && (entry & PAT_LARGE) != 0) {
            out.append(" PAT");
        }
        if ((entry & NX) != 0) {
            out.append(" NX");
        }
        if (pkey(entry) != 0) {
            out.append(" pkey=").append(pkey(entry));
        }
        long pfn = hugeLeaf ? pfn(entry, level.leafSize()) : pfn(entry);
        return out.append(" pfn=0x").append(Long.toHexString(pfn)).toString();
    }
}
