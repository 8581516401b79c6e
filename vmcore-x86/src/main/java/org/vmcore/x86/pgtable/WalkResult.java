package org.vmcore.x86.pgtable;

import org.vmcore.api.PageSize;

/**
 * The outcome of one walk, filled in place so that a walk allocates nothing. A caller (a CPU)
 * keeps one and reuses it.
 */
public final class WalkResult {
    /** Whether the translation succeeded. */
    public boolean ok;
    /** On failure: the {@link PageFaultCode} bits. */
    public int faultCode;
    /** On success: the physical address of the accessed byte. */
    public long physicalAddress;
    /** On success: the head PFN of the mapped page (2 MiB / 1 GiB aligned for huge leaves). */
    public long pagePfn;
    private static final Level[] LEVELS = Level.values();
    private static final PageSize[] SIZE_OF_LEAF = {null, null, PageSize.SIZE_1G, PageSize.SIZE_2M, PageSize.SIZE_4K};
    /**
     * On success: the effective permission bits of the whole walk, as a TLB caches them: RW and
     * USER where every level allows them, NX where any level sets it.
     */
    public long effectiveBits;
    /** The last entry read: the leaf on success (with A/D as set by this walk), or the faulting one. */
    public long entry;
    // The level of entry as an ordinal, -1 for none: an int, because storing a reference into a
    // long-lived result costs a GC write barrier on every walk.
    int levelOrd = -1;
    /** Physical address of {@link #entry}'s slot. */
    public long entrySlot;
    /** Table PFNs used at each level, indexed by {@link Level#ordinal()}; -1 where not reached. */
    public final long[] tablePfn = new long[Level.values().length];
    /** Entries read at each level, indexed by {@link Level#ordinal()}; 0 where not reached. */
    public final long[] entries = new long[Level.values().length];

    /**
     * The level of {@link #entry}, or null when the walk stopped before reading any (a
     * non-canonical address).
     *
     * @return the level of the last entry read
     */
    public Level level() {
        return levelOrd < 0 ? null : LEVELS[levelOrd];
    }

    /**
     * On success: the size of the mapped page; null after a failed walk.
     *
     * @return the size of the mapped page
     */
    public PageSize pageSize() {
        return ok ? SIZE_OF_LEAF[levelOrd] : null;
    }

    /** Resets the scalar fields; the walk fills or clears every level of the arrays. */
    void begin() {
        ok = false;
        faultCode = 0;
        physicalAddress = -1;
        pagePfn = -1;
        entry = 0;
        levelOrd = -1;
        entrySlot = -1;
        effectiveBits = 0;
    }

    /** Marks levels {@code from} (inclusive) to {@code to} (exclusive) as not reached. */
    void clearLevels(int from, int to) {
        for (int i = from; i < to; i++) {
            tablePfn[i] = -1;
            entries[i] = 0;
        }
    }

    @Override
    public String toString() {
        return ok
                ? "ok pa=0x" + Long.toHexString(physicalAddress) + " " + pageSize().label() + " " + Pte.describe(entry)
                : "fault " + PageFaultCode.describe(faultCode) + " at " + level() + " " + Pte.describe(entry);
    }
}
