package org.vmcore.api;

/**
 * A {@link CostModel} of fixed latencies, one per kind of event. {@link #DEFAULT} holds figures
 * for a recent x86 server core at about 3 GHz; derive another with the record's constructor.
 *
 * <p>Sources of {@link #DEFAULT} (order-of-magnitude figures; measure your target where it
 * matters):
 * <ul>
 *   <li>L1 DTLB hit 0: looked up in parallel with the L1D access (virtually indexed, physically
 *       tagged), so it adds nothing to the load-to-use latency.</li>
 *   <li>STLB hit 9 cycles: Intel's optimization manual and measurements of Haswell to Skylake
 *       put the extra latency of an L1-miss STLB-hit at 7 to 12 cycles.</li>
 *   <li>Walk reference 12 cycles: a page-table entry found in L2 (Skylake L2 load latency 12
 *       cycles, Intel optimization manual); a model with its own caches should use
 *       {@link CostModel#walkReference}'s physical address instead.</li>
 *   <li>Faults: about 1 µs for a minor fault with a new 4 KiB page, of which zeroing 4 KiB is a
 *       small part; a spurious fault is exception entry and exit only (hundreds of cycles); a
 *       new 2 MiB or 1 GiB page adds zeroing at about 10 bytes per cycle.</li>
 *   <li>INVLPG about 200 cycles per page, a full flush about 500 plus the refills it causes
 *       (not charged here); a shootdown several microseconds on the initiator and about one on
 *       each target (Amit, "Optimizing the TLB shootdown algorithm with page access tracking",
 *       USENIX ATC 2017, measured whole shootdowns at a few microseconds).</li>
 *   <li>A notifier callback 300 cycles: a call into a device model; no published figure.</li>
 *   <li>Page copy 100 cycles per KiB (about 10 bytes per cycle, memory to memory).</li>
 * </ul>
 *
 * @param l1Hit              cycles of an L1 DTLB hit
 * @param stlbHit            cycles of an STLB hit
 * @param walkReference      cycles of one page-walk memory reference
 * @param spuriousFault      cycles of a fault that found the entry already allowing the access
 * @param minorFault         cycles of any other resolved fault (before zeroing and copies)
 * @param zeroPerKiB         cycles to zero one KiB of a new page
 * @param invlpg             cycles of a one-page local flush
 * @param fullFlush          cycles of a whole-PCID or whole-TLB local flush
 * @param shootdownBase      cycles on the initiator of sending a shootdown
 * @param shootdownPerTarget further initiator cycles per CPU interrupted
 * @param shootdownReceived  cycles on a target of a received shootdown
 * @param notifierCallback   cycles of an MMU-notifier callback
 * @param copyPerKiB         cycles to copy one KiB of page contents
 * @param majorFault         cycles of a fault that read its page from the swap device
 *                           ({@link FaultResult#SWAP_IN}): {@link #DEFAULT} takes 10 µs, an NVMe
 *                           read of 4 KiB at about 3 GHz
 */
public record CostTable(long l1Hit, long stlbHit, long walkReference, long spuriousFault, long minorFault, long zeroPerKiB,
                        long invlpg, long fullFlush, long shootdownBase, long shootdownPerTarget, long shootdownReceived,
                        long notifierCallback, long copyPerKiB, long majorFault) implements CostModel {
    /** Figures for a recent x86 server core; see the class comment for their sources. */
    public static final CostTable DEFAULT = new CostTable(0, 9, 12, 500, 2500, 100, 200, 500, 4000, 1000, 2000, 300, 100, 30_000);

    /**
     * A table whose major fault costs what {@link #DEFAULT}'s does.
     *
     * @param l1Hit              cycles of an L1 DTLB hit
     * @param stlbHit            cycles of an STLB hit
     * @param walkReference      cycles of one page-walk memory reference
     * @param spuriousFault      cycles of a spurious fault
     * @param minorFault         cycles of any other resolved fault
     * @param zeroPerKiB         cycles to zero one KiB of a new page
     * @param invlpg             cycles of a one-page local flush
     * @param fullFlush          cycles of a whole-PCID or whole-TLB local flush
     * @param shootdownBase      cycles on the initiator of sending a shootdown
     * @param shootdownPerTarget further initiator cycles per CPU interrupted
     * @param shootdownReceived  cycles on a target of a received shootdown
     * @param notifierCallback   cycles of an MMU-notifier callback
     * @param copyPerKiB         cycles to copy one KiB of page contents
     */
    public CostTable(long l1Hit, long stlbHit, long walkReference, long spuriousFault, long minorFault, long zeroPerKiB,
                     long invlpg, long fullFlush, long shootdownBase, long shootdownPerTarget, long shootdownReceived,
                     long notifierCallback, long copyPerKiB) {
        this(l1Hit, stlbHit, walkReference, spuriousFault, minorFault, zeroPerKiB, invlpg, fullFlush, shootdownBase,
                shootdownPerTarget, shootdownReceived, notifierCallback, copyPerKiB, 30_000);
    }

    /**
     * Validates the table.
     *
     * @throws InvalidArgumentException if any figure is negative
     */
    public CostTable {
        long[] all = {l1Hit, stlbHit, walkReference, spuriousFault, minorFault, zeroPerKiB, invlpg, fullFlush, shootdownBase,
            shootdownPerTarget, shootdownReceived, notifierCallback, copyPerKiB, majorFault};
        String[] names = {"l1Hit", "stlbHit", "walkReference", "spuriousFault", "minorFault", "zeroPerKiB", "invlpg", "fullFlush",
            "shootdownBase", "shootdownPerTarget", "shootdownReceived", "notifierCallback", "copyPerKiB", "majorFault"};
        for (int i = 0; i < all.length; i++) {
            if (all[i] < 0) {
                throw new InvalidArgumentException(names[i], Long.toString(all[i]), "cycle counts must be >= 0");
            }
        }
    }

    @Override
    public long l1Hit(PageSize size) {
        return l1Hit;
    }

    @Override
    public long stlbHit(PageSize size) {
        return stlbHit;
    }

    @Override
    public long walkReference(PageTableLevel level, long physicalAddress) {
        return walkReference;
    }

    @Override
    public long fault(FaultResult result, PageSize size) {
        return switch (result) {
            case ALREADY_MAPPED -> spuriousFault;
            case NEW_PAGE -> minorFault + zeroPerKiB * (size.bytes() >>> 10);
            case SWAP_IN -> majorFault;
            default -> minorFault;
        };
    }

    @Override
    public long tlbFlush(boolean all, long pages) {
        return all ? fullFlush : invlpg * pages;
    }

    @Override
    public long shootdownSent(int targets) {
        return shootdownBase + shootdownPerTarget * targets;
    }

    @Override
    public long shootdownReceived() {
        return shootdownReceived;
    }

    @Override
    public long notifierCallback() {
        return notifierCallback;
    }

    @Override
    public long pageCopy(long bytes) {
        return copyPerKiB * (bytes >>> 10);
    }
}
