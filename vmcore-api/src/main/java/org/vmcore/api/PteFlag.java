package org.vmcore.api;

import java.util.Collections;
import java.util.EnumSet;
import java.util.Set;

/**
 * The attribute bits of an x86-64 page-table entry, with the kernel's names ({@code _PAGE_*}).
 * An entry's bits mean these flags when it is present, or when it belongs to a PROT_NONE mapping
 * (P clear, {@link #PROTNONE} set). Any other non-present entry (a swap, migration or hwpoison
 * entry) encodes something else in them and decodes to no flags.
 */
public enum PteFlag {
    /** P, bit 0: present. */
    PRESENT(0),
    /** R/W, bit 1: writable. */
    RW(1),
    /** U/S, bit 2: user-accessible. */
    USER(2),
    /** PWT, bit 3: write-through. */
    PWT(3),
    /** PCD, bit 4: cache disable. */
    PCD(4),
    /** A, bit 5: accessed, set by the hardware walk. */
    ACCESSED(5),
    /** D, bit 6: dirty, set by a store through a leaf. */
    DIRTY(6),
    /** PS, bit 7 of a PUD or PMD entry: the entry is a 1 GiB or 2 MiB leaf. */
    PSE(7),
    /** PAT: bit 7 of a PTE, bit 12 of a 2 MiB or 1 GiB leaf. */
    PAT(7),
    /** G, bit 8 of a present entry: global. */
    GLOBAL(8),
    /** Bit 8 of an entry with P clear: a PROT_NONE mapping (_PAGE_PROTNONE). */
    PROTNONE(8),
    /** Software bit 9: _PAGE_SPECIAL. */
    SPECIAL(9),
    /** Software bit 10: _PAGE_UFFD_WP. */
    UFFD_WP(10),
    /** Software bit 11: _PAGE_SOFT_DIRTY. */
    SOFT_DIRTY(11),
    /** XD, bit 63: no-execute. */
    NX(63);

    private static final PteFlag[] FLAGS = values();
    private static final int PAT_LARGE_BIT = 12;

    private final int bit;

    PteFlag(int bit) {
        this.bit = bit;
    }

    /**
     * Whether this flag is set in {@code entry} read at {@code level}; allocates nothing, for
     * {@link PageTableView.Visitor}s.
     *
     * @param entry a raw entry
     * @param level the level it was read at (PSE exists only at PUD and PMD, PAT moves to bit 12 in a
     *              huge leaf)
     * @return whether the flag is set, by the rules of the class comment
     * @throws InvalidArgumentException if level is null
     */
    public boolean isSetIn(long entry, PageTableLevel level) {
        if (level == null) {
            throw new InvalidArgumentException("level", null, "must not be null");
        }
        boolean present = (entry & 1) != 0;
        boolean protNone = !present && (entry & (1L << 8)) != 0;
        if (!present && !protNone) {
            return false;
        }
        boolean hugeLevel = level == PageTableLevel.PUD || level == PageTableLevel.PMD;
        boolean huge = hugeLevel && (entry & (1L << 7)) != 0;
        return switch (this) {
            case PRESENT -> present;
            case PROTNONE -> protNone;
            case GLOBAL -> present && (entry & (1L << 8)) != 0;
            case PSE -> huge;
            case PAT -> level == PageTableLevel.PTE ? (entry & (1L << 7)) != 0 : huge && (entry & (1L << PAT_LARGE_BIT)) != 0;
            default -> (entry & (1L << bit)) != 0;
        };
    }

    /**
     * The flags set in {@code entry} read at {@code level}.
     *
     * @param entry a raw entry
     * @param level the level it was read at
     * @return an unmodifiable set, empty for an empty entry or a swap, migration or hwpoison entry
     * @throws InvalidArgumentException if level is null
     */
    public static Set<PteFlag> decode(long entry, PageTableLevel level) {
        EnumSet<PteFlag> out = EnumSet.noneOf(PteFlag.class);
        for (PteFlag f : FLAGS) {
            if (f.isSetIn(entry, level)) {
                out.add(f);
            }
        }
        return Collections.unmodifiableSet(out);
    }
}
