package org.vmcore.x86.pgtable;

import org.vmcore.api.PageSize;

/**
 * The outcome of one walk, filled in place so that a walk allocates nothing. A caller (a CPU)
 * keeps one and reuses it.
 *
 * <p>A walk stores only what it read (the first table, the entry of each level it went
 * through, the levels, the address); the tables below the first, the physical address, page
 * frame, entry slot and effective permission bits are worked out from those when asked for.
 * That keeps a successful walk's bookkeeping to a handful of plain stores.
 */
public final class WalkResult {
    private static final Level[] LEVELS = Level.values();
    /** The {@code upperBits} of a walk from the root: no level above it takes a permission away. */
    static final long FROM_ROOT = Pte.RW | Pte.USER;
    private static final PageSize[] SIZE_OF_LEAF = {null, null, PageSize.SIZE_1G, PageSize.SIZE_2M, PageSize.SIZE_4K};

    // Whether the walk succeeded and which levels it read, packed so that ending a walk is one
    // store: bit OK, the first level's ordinal (PML5 0 .. PTE 4) in bits 8..15 and the last
    // one's in bits 0..7, where 0xff (-1 as a byte) means the walk read nothing (a non-canonical
    // address). Ordinals, not Level references: storing a reference into a long-lived result
    // costs a GC write barrier on every walk.
    private static final int OK = 1 << 16;
    int state = LEVELS.length << 8 | 0xff;
    int faultCode;
    long va;
    // The physical address of the first table read (its PFN bits), ORed with what the levels
    // above it contribute to the effective bits: RW and USER as an AND, NX as an OR (RW | USER
    // for a walk from the root). effectiveBits() folds the entries read into those when asked,
    // so a walk does not compute them. One field because both are set together on every walk.
    long start;
    // The entry read at each level by level ordinal: fields rather than arrays, so that
    // recording a level is one plain store with no range check. Meaningful only for the levels
    // read. The table at each level below the first is the one the entry above points to, so it
    // is worked out, not stored.
    long entry0, entry1, entry2, entry3, entry4;
    // The A and D bits this walk set, two bits per level ordinal (A at 2 * ord, D above it).
    int setBits;

    /** A result that no walk has filled yet: not {@link #ok()}, no level read. */
    public WalkResult() {
    }

    /**
     * Whether the translation succeeded.
     *
     * @return true if the walk found a leaf that allows the access
     */
    public boolean ok() {
        return (state & OK) != 0;
    }

    /**
     * The {@link PageFaultCode} bits of a failed walk; 0 after a successful one.
     *
     * @return the fault code, or 0
     */
    public int faultCode() {
        return ok() ? 0 : faultCode;
    }

    /**
     * The last entry read: the leaf on success (with A and D as set by this walk), or the entry
     * where the walk stopped (0 when it read none).
     *
     * @return the last entry read
     */
    public long entry() {
        return levelOrd() < 0 ? 0 : recordedEntry(levelOrd());
    }

    /**
     * On success: the physical address of the accessed byte; -1 after a failed walk.
     *
     * @return the physical address, or -1
     */
    public long physicalAddress() {
        return ok() ? (pagePfn() << 12) | (va & offsetMask()) : -1;
    }

    /**
     * On success: the head PFN of the mapped page (2 MiB / 1 GiB aligned for huge leaves); -1
     * after a failed walk.
     *
     * @return the page's head PFN, or -1
     */
    public long pagePfn() {
        return ok() ? (recordedEntry(levelOrd()) & Pte.PFN_MASK & ~offsetMask()) >>> 12 : -1;
    }

    /**
     * On success: the effective permission bits of the whole walk, as a TLB caches them: RW and
     * USER where every level allows them, NX where any level sets it; 0 after a failed walk.
     *
     * @return the effective RW, USER and NX bits, or 0
     */
    public long effectiveBits() {
        if (!ok()) {
            return 0;
        }
        long all = start & ~Pte.PFN_MASK;
        long any = all;
        for (int ord = firstOrd(); ord <= levelOrd(); ord++) {
            long e = recordedEntry(ord);
            all &= e;
            any |= e;
        }
        return (all & (Pte.RW | Pte.USER)) | (any & Pte.NX);
    }

    /**
     * The physical address of {@link #entry()}'s slot, or -1 when the walk read no entry.
     *
     * @return the physical address of the last entry read, or -1
     */
    public long entrySlot() {
        return levelOrd() < 0 ? -1 : recordedTable(firstOrd(), levelOrd()) + ((long) LEVELS[levelOrd()].index(va) << 3);
    }

    /**
     * The level of {@link #entry()}, or null when the walk stopped before reading any (a
     * non-canonical address).
     *
     * @return the level of the last entry read
     */
    public Level level() {
        return levelOrd() < 0 ? null : LEVELS[levelOrd()];
    }

    /**
     * On success: the size of the mapped page; null after a failed walk.
     *
     * @return the size of the mapped page
     */
    public PageSize pageSize() {
        return ok() ? SIZE_OF_LEAF[levelOrd()] : null;
    }

    /**
     * The PFN of the table this walk used at {@code level}, or -1 where it did not read that
     * level (above the level it started from, or below where it stopped).
     *
     * @param level a paging level
     * @return the PFN of the table used at that level, or -1
     */
    public long tablePfn(Level level) {
        int ord = level.ordinal();
        return ord < firstOrd() || ord > levelOrd() ? -1 : recordedTable(firstOrd(), ord) >>> 12;
    }

    /**
     * The entry this walk read at {@code level}, with the A and D bits this walk set, or 0
     * where it did not read that level.
     *
     * @param level a paging level
     * @return the entry read at that level, or 0
     */
    public long entryAt(Level level) {
        int ord = level.ordinal();
        return ord < firstOrd() || ord > levelOrd() ? 0 : recordedEntry(ord);
    }

    /** The entry recorded at level ordinal {@code ord} by the walk in progress or the last one. */
    long recordedEntry(int ord) {
        return switch (ord) {
            case 0 -> entry0;
            case 1 -> entry1;
            case 2 -> entry2;
            case 3 -> entry3;
            case 4 -> entry4;
            default -> throw new IllegalArgumentException("level ordinal " + ord + " is not in 0..4");
        };
    }

    /**
     * The physical address of the table used at level ordinal {@code ord} by the walk in
     * progress or the last one, which started at level ordinal {@code first}.
     */
    long recordedTable(int first, int ord) {
        return ord == first ? start & Pte.PFN_MASK : recordedEntry(ord - 1) & Pte.PFN_MASK;
    }

    /**
     * Starts a walk at the table at physical address {@code table}, below levels whose RW, USER
     * (ANDed) and NX (ORed) bits are {@code upperBits} ({@link #FROM_ROOT} when there are none).
     */
    void begin(long table, long upperBits) {
        start = (table & Pte.PFN_MASK) | (upperBits & (Pte.RW | Pte.USER | Pte.NX));
        setBits = 0;
    }

    /** Records that the walk set A ({@code accessed}) and D ({@code dirty}) in the entry at level ordinal {@code ord}. */
    void markSet(int ord, boolean accessed, boolean dirty) {
        setBits |= (accessed ? 1 : 0) << (2 * ord) | (dirty ? 2 : 0) << (2 * ord);
    }

    /**
     * Whether this walk set the Accessed bit of the entry it read at {@code level} (a locked
     * update of the entry, as the hardware makes).
     *
     * @param level a paging level
     * @return true if the walk set A there
     */
    public boolean setAccessed(Level level) {
        return (setBits & (1 << (2 * level.ordinal()))) != 0;
    }

    /**
     * Whether this walk set the Dirty bit of the entry it read at {@code level} (only a leaf,
     * for a store).
     *
     * @param level a paging level
     * @return true if the walk set D there
     */
    public boolean setDirty(Level level) {
        return (setBits & (2 << (2 * level.ordinal()))) != 0;
    }

    /** Records the entry read at level ordinal {@code ord}. */
    void record(int ord, long e) {
        switch (ord) {
            case 0 -> entry0 = e;
            case 1 -> entry1 = e;
            case 2 -> entry2 = e;
            case 3 -> entry3 = e;
            case 4 -> entry4 = e;
            default -> throw new IllegalArgumentException("level ordinal " + ord + " is not in 0..4");
        }
    }

    /**
     * Ends a successful walk for {@code va} that read levels {@code first} to {@code ord} (begun
     * and recorded already); the leaf is the entry recorded at {@code ord}. Kept this small
     * (under the JIT's 35-byte always-inline limit) on purpose: it ends the walker's fast path.
     */
    void succeeded(int first, int ord, long va) {
        state = OK | first << 8 | ord;
        this.va = va;
    }

    /**
     * Ends a failed walk that read levels {@code first} to {@code ord} (recorded already; none
     * when {@code ord} is -1) and stopped at the entry recorded at {@code ord} with {@code code}.
     */
    void failed(int first, int ord, int code, long va) {
        state = first << 8 | (ord & 0xff);
        faultCode = code;
        this.va = va;
    }

    /** The ordinal of the last level read; -1 when the walk read none. */
    private int levelOrd() {
        return (byte) state;
    }

    /** The ordinal of the first level read. */
    private int firstOrd() {
        return (state >>> 8) & 0xff;
    }

    private long offsetMask() {
        return (1L << Level.shift(levelOrd())) - 1;
    }

    @Override
    public String toString() {
        return ok()
                ? "ok pa=0x" + Long.toHexString(physicalAddress()) + " " + pageSize().label() + " " + Pte.describe(entry(), level())
                : "fault " + PageFaultCode.describe(faultCode) + " at " + level() + " " + Pte.describe(entry(), level());
    }
}
