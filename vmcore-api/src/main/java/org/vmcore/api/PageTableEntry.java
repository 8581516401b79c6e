package org.vmcore.api;

import java.util.Set;

/**
 * One page-table entry as {@link PageTableView} read it.
 *
 * @param va      the first virtual address the entry covers (the address looked up, aligned down
 *                to the entry's span: 4 KiB for a PTE, 2 MiB for a PMD entry, ...)
 * @param level   the level of the table that holds it
 * @param index   its index in that table, 0..511
 * @param tablePa the physical address of the table that holds it: {@link AddressSpace#cr3()} for
 *                the PGD, else the address the entry above points to. Two address spaces sharing a
 *                hugetlb PMD table see the same PMD {@code tablePa}
 * @param raw     the 64-bit entry as stored
 * @param pa      the physical address it points to: the next table, or the first byte of the page
 *                a leaf maps, also for a PROT_NONE entry (pte_present, whose PFN the kernel keeps
 *                inverted); -1 for an empty, swap, migration or hwpoison entry
 */
public record PageTableEntry(long va, PageTableLevel level, int index, long tablePa, long raw, long pa) {
    /**
     * The physical address of the entry itself.
     *
     * @return {@code tablePa + 8 * index}
     */
    public long entryPa() {
        return tablePa + 8L * index;
    }

    /**
     * Its flags, decoded for its level.
     *
     * @return {@link PteFlag#decode(long, PageTableLevel)} of {@code raw} at {@code level}
     */
    public Set<PteFlag> flags() {
        return PteFlag.decode(raw, level);
    }

    /**
     * Whether P is set.
     *
     * @return whether the entry is present
     */
    public boolean present() {
        return (raw & 1) != 0;
    }

    /**
     * Whether it is a present entry that maps a page rather than pointing to a table: every present
     * PTE, and a PMD or PUD entry with PS set.
     *
     * @return whether it is a present leaf
     */
    public boolean leaf() {
        return present() && (level == PageTableLevel.PTE
                || (level == PageTableLevel.PMD || level == PageTableLevel.PUD) && (raw & (1L << 7)) != 0);
    }

    /**
     * pte_none: nothing is there (the accessed and dirty bits are ignored, as the kernel ignores them).
     *
     * @return whether the entry is empty
     */
    public boolean none() {
        return (raw & ~0x60L) == 0;
    }
}
