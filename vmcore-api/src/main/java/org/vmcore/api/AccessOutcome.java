package org.vmcore.api;

/**
 * How one access was translated, what it took on the way and what it cost: the per-access
 * record a timing simulator reads. A CPU fills it for {@link Cpu#loadRecorded} and
 * {@link Cpu#storeRecorded} (read it from {@link Cpu#outcome()}) and for each access of a batch
 * it hands to an {@link AccessListener}. It is reused: read it before the CPU's next recorded
 * access.
 *
 * <p>An access that faults walks, takes the fault, and walks again: {@link #walks()} and the
 * walk references count every walk, {@link #faults()} every fault, and
 * {@link #translation()}, {@link #pageSize()} and {@link #physicalAddress()} describe the
 * translation the access finally completed with.
 */
public interface AccessOutcome {
    /** Where the translation that completed the access came from. */
    enum Translation {
        /** The first-level data TLB (4 KiB translations), the fastest way. */
        L1_HIT,
        /** The second-level TLB arrays (every page size). */
        STLB_HIT,
        /** A page walk, which filled the TLB. */
        WALK
    }

    /**
     * The access's index in its batch, or -1 for a single access.
     *
     * @return the index in the batch, or -1
     */
    int index();

    /**
     * The virtual address accessed; for an access that crosses pages, the address of the last
     * part translated, which {@link #physicalAddress()} translates.
     *
     * @return the virtual address
     */
    long va();

    /**
     * What kind of access it was.
     *
     * @return the access kind
     */
    Access access();

    /**
     * Where the final translation came from.
     *
     * @return the translation's source
     */
    Translation translation();

    /**
     * The size of the page the access landed in.
     *
     * @return the page size of the final translation
     */
    PageSize pageSize();

    /**
     * The physical address accessed: of the first byte, or for an access that crosses pages, of
     * the first byte of the last part translated. After an access that threw, the outcome holds
     * what was recorded before the throw (0 where nothing was).
     *
     * @return the physical address
     */
    long physicalAddress();

    /**
     * The page walks the access made: 0 on a TLB hit, 1 on a miss, more when it faulted and
     * walked again. A non-canonical address raises #GP before any walk: 0.
     *
     * @return the number of walks
     */
    int walks();

    /**
     * The level of the table the last walk started from: the root ({@link PageTableLevel#PGD})
     * or, when a paging-structure cache entry covered the address, the level below that entry
     * ({@link PageTableLevel#PMD} after a cached PDPTE, {@link PageTableLevel#PTE} after a
     * cached PDE); null when the access walked none.
     *
     * @return the starting level of the last walk, or null
     */
    PageTableLevel walkStart();

    /**
     * The page-table entries the walks read, in order: each a memory reference a cache model can
     * be fed. At most {@value Cpu#OUTCOME_MAX_REFERENCES} are kept per access; see
     * {@link #walkReferencesDropped()}.
     *
     * @return the number of references kept
     */
    int walkReferences();

    /**
     * References beyond {@value Cpu#OUTCOME_MAX_REFERENCES} that were made but not kept (an
     * access that faulted and walked many times); normally 0.
     *
     * @return the number of references not kept
     */
    int walkReferencesDropped();

    /**
     * The physical address of the entry the {@code i}-th reference read.
     *
     * @param i the reference, 0 to {@link #walkReferences()} - 1
     * @return the physical address of the entry
     * @throws IndexOutOfBoundsException if {@code i} is out of range
     */
    long walkReferenceAddress(int i);

    /**
     * The level of the entry the {@code i}-th reference read.
     *
     * @param i the reference, 0 to {@link #walkReferences()} - 1
     * @return the level of the entry
     * @throws IndexOutOfBoundsException if {@code i} is out of range
     */
    PageTableLevel walkReferenceLevel(int i);

    /**
     * Whether the walk set the entry's Accessed bit (a locked read-modify-write in hardware).
     *
     * @param i the reference, 0 to {@link #walkReferences()} - 1
     * @return whether the walk set A in that entry
     * @throws IndexOutOfBoundsException if {@code i} is out of range
     */
    boolean walkReferenceSetAccessed(int i);

    /**
     * Whether the walk set the entry's Dirty bit (only a leaf, for a store).
     *
     * @param i the reference, 0 to {@link #walkReferences()} - 1
     * @return whether the walk set D in that entry
     * @throws IndexOutOfBoundsException if {@code i} is out of range
     */
    boolean walkReferenceSetDirty(int i);

    /**
     * The page faults the access took and the kernel resolved.
     *
     * @return the number of faults
     */
    int faults();

    /**
     * How the kernel resolved the last fault, or null when the access took none.
     *
     * @return the last fault's resolution, or null
     */
    FaultResult faultResult();

    /**
     * The x86 page-fault error code of the last fault (P, W/R, U/S, RSVD, I/D, PK bits), or 0.
     *
     * @return the last fault's error code, or 0
     */
    int faultErrorCode();

    /**
     * The TLB shootdowns this CPU received while the access was under way: it stepped aside
     * for each.
     *
     * @return the number of shootdowns waited for
     */
    int shootdownsWaited();

    /**
     * The simulated cycles the CPU's {@link CostModel} charged for the access, 0 without one.
     * Cycles of kernel work inside the access's faults (flushes, notifier calls, page copies)
     * are included.
     *
     * @return the cycles charged
     */
    long cycles();
}
