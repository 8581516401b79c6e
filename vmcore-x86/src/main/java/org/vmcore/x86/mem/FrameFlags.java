package org.vmcore.x86.mem;

/**
 * Bits of a frame descriptor's flags word, named after the kernel's page flags (PG_*).
 * {@link #ALLOCATED} has no kernel twin: the kernel marks free blocks (PageBuddy); vmcore marks
 * allocated ones, because a frame that was never touched has no descriptor memory to mark.
 */
public final class FrameFlags {
    /** PG_locked: the folio lock is held (migration holds it from unmap to remap). */
    public static final int LOCKED = 1;
    /** PG_referenced. */
    public static final int REFERENCED = 1 << 1;
    /** PG_uptodate. */
    public static final int UPTODATE = 1 << 2;
    /** PG_dirty: contents differ from the backing store; set from a cleared dirty PTE. */
    public static final int DIRTY = 1 << 3;
    /** PG_lru. */
    public static final int LRU = 1 << 4;
    /** PG_head: first frame of a block of order above zero (a compound page or folio). */
    public static final int HEAD = 1 << 5;
    /** PageAnon: the mapping field names an anon_vma rather than a file. */
    public static final int ANON = 1 << 6;
    /** PageHuge: a hugetlb folio. */
    public static final int HUGETLB = 1 << 7;
    /** PageTable: the frame holds a page table. */
    public static final int PGTABLE = 1 << 8;
    /** PG_hwpoison: the frame is poisoned and must not be used again. */
    public static final int HWPOISON = 1 << 9;
    /** PG_reserved: removed from use (offlined or poisoned). */
    public static final int RESERVED = 1 << 10;
    /** PG_isolated: taken off the LRU for migration. */
    public static final int ISOLATED = 1 << 11;
    /** PG_mlocked. */
    public static final int MLOCKED = 1 << 12;
    /**
     * A lazy-free anonymous page (MADV_FREE: PG_swapbacked cleared): reclaim drops it instead of
     * swapping it out while it stays clean.
     */
    public static final int LAZYFREE = 1 << 13;
    /**
     * PG_large_rmappable: the head of a transparent huge page (an order-9 anonymous folio). Its
     * tail frames carry no flags of their own: their references are the head's
     * ({@link org.vmcore.x86.internal.MemMap#folio}), their mapcounts count PTEs mapping them.
     */
    public static final int LARGE_RMAPPABLE = 1 << 14;
    /**
     * PG_partially_mapped: a transparent huge page some of whose pages are no longer mapped, on
     * the deferred split queue.
     */
    public static final int PARTIALLY_MAPPED = 1 << 15;
    /** The block starting at this frame is allocated (see the class comment). */
    public static final int ALLOCATED = 1 << 31;

    private FrameFlags() {
    }

    /**
     * The flags as a readable list, for example {@code head|hugetlb|allocated}.
     *
     * @param flags a flags word of {@link FrameFlags} bits
     * @return the names of the set bits joined by {@code |}, or {@code 0} when none is set
     */
    public static String describe(int flags) {
        StringBuilder out = new StringBuilder();
        String[] names = {"locked", "referenced", "uptodate", "dirty", "lru", "head", "anon", "hugetlb",
            "pgtable", "hwpoison", "reserved", "isolated", "mlocked", "lazyfree", "large_rmappable", "partially_mapped"};
        for (int bit = 0; bit < names.length; bit++) {
            if ((flags & (1 << bit)) != 0) {
                out.append(out.isEmpty() ? "" : "|").append(names[bit]);
            }
        }
        if ((flags & ALLOCATED) != 0) {
            out.append(out.isEmpty() ? "" : "|").append("allocated");
        }
        return out.isEmpty() ? "0" : out.toString();
    }
}
