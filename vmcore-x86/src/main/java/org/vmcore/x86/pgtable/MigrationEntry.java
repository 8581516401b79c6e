package org.vmcore.x86.pgtable;

import org.vmcore.api.InvalidArgumentException;

/**
 * Migration entries: what a page-table entry holds while its page is being migrated. A CPU
 * that meets one faults, and the fault handler waits for the migration to end.
 *
 * <p>The offset is the PFN of the page being migrated (the head PFN for a huge page). Above
 * the PFN's {@link #PFN_BITS} bits the offset carries the old Accessed and Dirty bits of the
 * cleared entry, as kernels since 6.1 do; soft-dirty and uffd-wp ride in the swap flag bits.
 * The same bit pattern is written into a PMD or PUD slot for a hugetlb page.
 */
public final class MigrationEntry {
    /** Bits of the PFN in the offset (MAX_PHYSMEM_BITS 52 minus PAGE_SHIFT). */
    public static final int PFN_BITS = 40;
    private static final long YOUNG = 1L << PFN_BITS;
    private static final long DIRTY = 1L << (PFN_BITS + 1);
    private static final long PFN_LIMIT = 1L << PFN_BITS;

    /** The three migration entry types. */
    public enum Kind {
        /** The mapping was read-only. */
        READ(SwapEntry.TYPE_MIGRATION_READ),
        /** Read-only, but the anonymous page was exclusive to this process. */
        READ_EXCLUSIVE(SwapEntry.TYPE_MIGRATION_READ_EXCLUSIVE),
        /** The mapping was writable. */
        WRITE(SwapEntry.TYPE_MIGRATION_WRITE);

        private final int swapType;

        Kind(int swapType) {
            this.swapType = swapType;
        }

        /**
         * The swap type number of this kind.
         *
         * @return the number stored in the entry's type field
         */
        public int swapType() {
            return swapType;
        }
    }

    private MigrationEntry() {
    }

    /**
     * A migration entry for {@code pfn}.
     *
     * @param kind read, read-exclusive or write, from the old entry's permissions
     * @param pfn the frame number of the page being migrated (the head for a huge page), below 2^{@link #PFN_BITS}
     * @return the non-present entry
     * @param young     the old entry's Accessed bit
     * @param dirty     the old entry's Dirty bit
     * @param swapFlags soft-dirty / uffd-wp / exclusive flags ({@link SwapEntry#FLAG_BITS})
     */
    public static long make(Kind kind, long pfn, boolean young, boolean dirty, long swapFlags) {
        if (pfn < 0 || pfn >= PFN_LIMIT) {
            throw new InvalidArgumentException("pfn", pfn, "must fit in " + PFN_BITS + " bits");
        }
        long offset = pfn | (young ? YOUNG : 0) | (dirty ? DIRTY : 0);
        return SwapEntry.make(kind.swapType(), offset, swapFlags);
    }

    /**
     * make_readable_migration_entry on the entry's own offset: the same page, Accessed and Dirty
     * bits and swap flags, as a {@link Kind#READ} entry (fork turns WRITE and READ_EXCLUSIVE
     * entries of copy-on-write mappings into READ ones in parent and child).
     *
     * @param entry a migration entry
     * @return the entry turned into kind READ
     */
    public static long makeReadable(long entry) {
        if (!isMigration(entry)) {
            throw new InvalidArgumentException("entry", entry, "must be a migration entry");
        }
        return SwapEntry.make(Kind.READ.swapType(), SwapEntry.offset(entry), SwapEntry.flags(entry));
    }

    /**
     * is_migration_entry: a swap entry of one of the three migration types.
     *
     * @param entry a page-table entry
     * @return true when the entry is a swap entry of a migration type
     */
    public static boolean isMigration(long entry) {
        if (!Pte.isSwap(entry)) {
            return false;
        }
        int type = SwapEntry.type(entry);
        return type >= SwapEntry.TYPE_MIGRATION_READ && type <= SwapEntry.TYPE_MIGRATION_WRITE;
    }

    /**
     * The kind of a migration entry.
     *
     * @param entry a migration entry
     * @return the kind its type field encodes
     */
    public static Kind kind(long entry) {
        return switch (SwapEntry.type(entry) - SwapEntry.TYPE_MIGRATION_READ) {
            case 0 -> Kind.READ;
            case 1 -> Kind.READ_EXCLUSIVE;
            case 2 -> Kind.WRITE;
            default -> throw new IllegalArgumentException("not a migration entry: " + Pte.describe(entry));
        };
    }

    /**
     * Whether the mapping was writable (the entry is of kind WRITE).
     *
     * @param entry a migration entry
     * @return true for kind WRITE
     */
    public static boolean isWrite(long entry) {
        return SwapEntry.type(entry) == SwapEntry.TYPE_MIGRATION_WRITE;
    }

    /**
     * The PFN of the page under migration.
     *
     * @param entry a migration entry
     * @return the frame number the offset carries
     */
    public static long pfn(long entry) {
        return SwapEntry.offset(entry) & (PFN_LIMIT - 1);
    }

    /**
     * The old Accessed bit.
     *
     * @param entry a migration entry
     * @return the Accessed bit of the entry it replaced
     */
    public static boolean young(long entry) {
        return (SwapEntry.offset(entry) & YOUNG) != 0;
    }

    /**
     * The old Dirty bit.
     *
     * @param entry a migration entry
     * @return the Dirty bit of the entry it replaced
     */
    public static boolean dirty(long entry) {
        return (SwapEntry.offset(entry) & DIRTY) != 0;
    }
}
