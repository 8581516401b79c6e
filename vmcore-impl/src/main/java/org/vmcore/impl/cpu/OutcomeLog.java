package org.vmcore.impl.cpu;

import java.util.Objects;
import org.vmcore.api.Access;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;

/**
 * The outcomes of up to {@code capacity} accesses, recorded by the CPU's access path with
 * nothing allocated per access, and an {@link AccessOutcome} view of one of them at a time. Only
 * the thread that drives the CPU touches it.
 *
 * <p>What every access has (address, physical address, cycles, and a packed word of index,
 * access, translation, page size and shootdowns) sits in one {@code long[]}, four longs a slot,
 * so a TLB hit costs a few stores into one array. What only a walk or a fault has sits in arrays
 * of its own, reset on the first such event of a slot ({@code DETAILED}); a plain hit leaves
 * them as they were and reads as none.
 */
final class OutcomeLog implements AccessOutcome {
    private static final PageSize[] SIZES = PageSize.values();
    private static final PageTableLevel[] LEVELS = PageTableLevel.values();
    private static final FaultResult[] RESULTS = FaultResult.values();
    private static final Access[] ACCESSES = Access.values();
    private static final Translation[] TRANSLATIONS = Translation.values();
    private static final int REFS = Cpu.OUTCOME_MAX_REFERENCES;
    private static final byte SET_A = 1;
    private static final byte SET_D = 2;

    // The packed word: index in bits 0-31, then access, translation and size ordinals, the
    // detailed flag, and the shootdowns waited for from bit 40.
    private static final int VA = 0;
    private static final int PA = 1;
    private static final int CYCLES = 2;
    private static final int META = 3;
    private static final int STRIDE = 4;
    private static final int ACCESS_SHIFT = 32;
    private static final int TRANSLATION_SHIFT = 34;
    private static final int SIZE_SHIFT = 36;
    private static final long DETAILED = 1L << 38;
    private static final int SHOOTDOWNS_SHIFT = 40;
    private static final long TRANSLATION_AND_SIZE = 0xFL << TRANSLATION_SHIFT;

    private final int capacity;
    private final long[] rec;
    private final byte[] walkStart;
    private final int[] walks;
    private final int[] faults;
    private final byte[] faultResult;
    private final int[] faultCode;
    private final int[] refs;
    private final int[] dropped;
    private final long[] refAddress;
    private final byte[] refLevel;
    private final byte[] refSet;

    private int used;   // slots recorded since the last clear
    private int shown;  // the slot the view shows
    private long cyclesAtBegin;

    OutcomeLog(int capacity) {
        this.capacity = capacity;
        rec = new long[capacity * STRIDE];
        walkStart = new byte[capacity];
        walks = new int[capacity];
        faults = new int[capacity];
        faultResult = new byte[capacity];
        faultCode = new int[capacity];
        refs = new int[capacity];
        dropped = new int[capacity];
        refAddress = new long[capacity * REFS];
        refLevel = new byte[capacity * REFS];
        refSet = new byte[capacity * REFS];
    }

    // ---- recording, by the access path ----

    /** Forgets every slot. */
    void clear() {
        used = 0;
    }

    boolean full() {
        return used == capacity;
    }

    int size() {
        return used;
    }

    /**
     * Starts recording access {@code i} of a batch (-1 for a single access) in the next slot.
     * {@code op} is a {@link org.vmcore.api.TraceOp}, whose values are the ordinals of the
     * {@link Access} it makes.
     */
    void begin(int i, long address, byte op, long cyclesNow) {
        int b = used * STRIDE;
        rec[b + VA] = address;
        rec[b + PA] = 0; // an access that throws before it is translated leaves no earlier access's values
        rec[b + CYCLES] = 0;
        rec[b + META] = (i & 0xFFFF_FFFFL) | ((long) op << ACCESS_SHIFT);
        cyclesAtBegin = cyclesNow;
    }

    /**
     * The access (or, for one that crosses pages, its part at {@code address}) was translated by
     * a TLB hit to {@code physical}. The last part translated is what the slot describes.
     */
    void hit(long address, boolean l1, int shift, long physical) {
        translated(address, l1 ? Translation.L1_HIT : Translation.STLB_HIT, sizeOrdinal(shift), physical);
    }

    /** The walk for {@code address} ended at a leaf and filled the TLB; see {@link #hit}. */
    void walked(long address, PageSize pageSize, long physical) {
        translated(address, Translation.WALK, pageSize.ordinal(), physical);
    }

    private void translated(long address, Translation how, int size, long physical) {
        int b = used * STRIDE;
        rec[b + VA] = address;
        rec[b + PA] = physical;
        rec[b + META] = (rec[b + META] & ~TRANSLATION_AND_SIZE) | ((long) how.ordinal() << TRANSLATION_SHIFT)
                | ((long) size << SIZE_SHIFT);
    }

    /** The access waited for {@code n} more shootdowns. */
    void waited(long n) {
        rec[used * STRIDE + META] += n << SHOOTDOWNS_SHIFT;
    }

    /** The access walked or faulted: its walk and fault fields start from none. */
    private int detailedSlot() {
        int s = used;
        int m = s * STRIDE + META;
        if ((rec[m] & DETAILED) == 0) {
            rec[m] |= DETAILED;
            walkStart[s] = -1;
            walks[s] = 0;
            faults[s] = 0;
            faultResult[s] = -1;
            faultCode[s] = 0;
            refs[s] = 0;
            dropped[s] = 0;
        }
        return s;
    }

    /** A walk started at {@code start}. */
    void walkStarted(PageTableLevel start) {
        int s = detailedSlot();
        walks[s]++;
        walkStart[s] = (byte) start.ordinal();
    }

    /** The walk read the entry at {@code address}; {@code set} says whether it set A ({@code 1}) and D ({@code 2}). */
    void reference(long address, PageTableLevel level, int set) {
        int s = detailedSlot();
        int n = refs[s];
        if (n == REFS) {
            dropped[s]++;
            return;
        }
        int at = s * REFS + n;
        refAddress[at] = address;
        refLevel[at] = (byte) level.ordinal();
        refSet[at] = (byte) set;
        refs[s] = n + 1;
    }

    /** The access faulted with {@code code} and the kernel resolved it so. */
    void fault(int code, FaultResult result) {
        int s = detailedSlot();
        faults[s]++;
        faultCode[s] = code;
        faultResult[s] = (byte) result.ordinal();
    }

    /** The access completed: the slot is kept. */
    void end(long cyclesNow) {
        rec[used * STRIDE + CYCLES] = cyclesNow - cyclesAtBegin;
        used++;
    }

    /** Points the view at slot {@code slot}. */
    AccessOutcome show(int slot) {
        shown = slot;
        return this;
    }

    private static int sizeOrdinal(int shift) {
        return shift == 12 ? 0 : shift == 21 ? 1 : 2;
    }

    // ---- the view ----

    private long meta() {
        return rec[shown * STRIDE + META];
    }

    private boolean detailed() {
        return (meta() & DETAILED) != 0;
    }

    @Override
    public int index() {
        return (int) meta();
    }

    @Override
    public long va() {
        return rec[shown * STRIDE + VA];
    }

    @Override
    public Access access() {
        return ACCESSES[(int) (meta() >>> ACCESS_SHIFT) & 3];
    }

    @Override
    public Translation translation() {
        return TRANSLATIONS[(int) (meta() >>> TRANSLATION_SHIFT) & 3];
    }

    @Override
    public PageSize pageSize() {
        return SIZES[(int) (meta() >>> SIZE_SHIFT) & 3];
    }

    @Override
    public long physicalAddress() {
        return rec[shown * STRIDE + PA];
    }

    @Override
    public int walks() {
        return detailed() ? walks[shown] : 0;
    }

    @Override
    public PageTableLevel walkStart() {
        int l = detailed() ? walkStart[shown] : -1;
        return l < 0 ? null : LEVELS[l];
    }

    @Override
    public int walkReferences() {
        return detailed() ? refs[shown] : 0;
    }

    @Override
    public int walkReferencesDropped() {
        return detailed() ? dropped[shown] : 0;
    }

    @Override
    public long walkReferenceAddress(int i) {
        return refAddress[ref(i)];
    }

    @Override
    public PageTableLevel walkReferenceLevel(int i) {
        return LEVELS[refLevel[ref(i)]];
    }

    @Override
    public boolean walkReferenceSetAccessed(int i) {
        return (refSet[ref(i)] & SET_A) != 0;
    }

    @Override
    public boolean walkReferenceSetDirty(int i) {
        return (refSet[ref(i)] & SET_D) != 0;
    }

    private int ref(int i) {
        Objects.checkIndex(i, walkReferences());
        return shown * REFS + i;
    }

    @Override
    public int faults() {
        return detailed() ? faults[shown] : 0;
    }

    @Override
    public FaultResult faultResult() {
        int r = detailed() ? faultResult[shown] : -1;
        return r < 0 ? null : RESULTS[r];
    }

    @Override
    public int faultErrorCode() {
        return detailed() ? faultCode[shown] : 0;
    }

    @Override
    public int shootdownsWaited() {
        return (int) (meta() >>> SHOOTDOWNS_SHIFT);
    }

    @Override
    public long cycles() {
        return rec[shown * STRIDE + CYCLES];
    }

    @Override
    public String toString() {
        return access() + " 0x" + Long.toHexString(va()) + ": " + translation() + " " + pageSize().label() + " pa=0x"
                + Long.toHexString(physicalAddress()) + " walks=" + walks() + " refs=" + walkReferences() + " faults="
                + faults() + (faultResult() != null ? " (" + faultResult() + ")" : "") + " shootdowns=" + shootdownsWaited()
                + " cycles=" + cycles();
    }
}
