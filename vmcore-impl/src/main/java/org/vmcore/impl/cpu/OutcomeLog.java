package org.vmcore.impl.cpu;

import java.util.Objects;
import org.vmcore.api.Access;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;

/**
 * The outcomes of up to {@code capacity} accesses, recorded by the CPU's access path into
 * parallel arrays (nothing allocated per access), and an {@link AccessOutcome} view of one of
 * them at a time. Only the thread that drives the CPU touches it.
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

    private final int capacity;
    private final int[] index;
    private final long[] va;
    private final long[] pa;
    private final long[] cycles;
    private final byte[] access;
    private final byte[] translation;
    private final byte[] size;
    private final byte[] walkStart;
    private final int[] walks;
    private final int[] faults;
    private final byte[] faultResult;
    private final int[] faultCode;
    private final int[] shootdowns;
    private final int[] refs;
    private final int[] dropped;
    private final boolean[] detailed; // false: a plain hit, whose walk and fault fields were not reset and read as none
    private final long[] refAddress;
    private final byte[] refLevel;
    private final byte[] refSet;

    private int used;   // slots recorded since the last clear
    private int shown;  // the slot the view shows
    private long cyclesAtBegin;

    OutcomeLog(int capacity) {
        this.capacity = capacity;
        index = new int[capacity];
        va = new long[capacity];
        pa = new long[capacity];
        cycles = new long[capacity];
        access = new byte[capacity];
        translation = new byte[capacity];
        size = new byte[capacity];
        walkStart = new byte[capacity];
        walks = new int[capacity];
        faults = new int[capacity];
        faultResult = new byte[capacity];
        faultCode = new int[capacity];
        shootdowns = new int[capacity];
        refs = new int[capacity];
        dropped = new int[capacity];
        detailed = new boolean[capacity];
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
        int s = used;
        index[s] = i;
        va[s] = address;
        access[s] = op;
        shootdowns[s] = 0;
        detailed[s] = false;
        cyclesAtBegin = cyclesNow;
    }

    /** The access walked or faulted: its walk and fault fields start from none. */
    private int detailedSlot() {
        int s = used;
        if (!detailed[s]) {
            detailed[s] = true;
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

    /** The access waited for {@code n} more shootdowns. */
    void waited(long n) {
        shootdowns[used] += (int) n;
    }

    /** The access was translated by a TLB hit. */
    void hit(boolean l1, int shift, long physical) {
        int s = used;
        translation[s] = (byte) (l1 ? Translation.L1_HIT.ordinal() : Translation.STLB_HIT.ordinal());
        size[s] = (byte) sizeOrdinal(shift);
        pa[s] = physical;
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

    /** The walk ended at a leaf and filled the TLB. */
    void walked(PageSize pageSize, long physical) {
        int s = used;
        translation[s] = (byte) Translation.WALK.ordinal();
        size[s] = (byte) pageSize.ordinal();
        pa[s] = physical;
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
        int s = used;
        cycles[s] = cyclesNow - cyclesAtBegin;
        used = s + 1;
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

    @Override
    public int index() {
        return index[shown];
    }

    @Override
    public long va() {
        return va[shown];
    }

    @Override
    public Access access() {
        return ACCESSES[access[shown]];
    }

    @Override
    public Translation translation() {
        return TRANSLATIONS[translation[shown]];
    }

    @Override
    public PageSize pageSize() {
        return SIZES[size[shown]];
    }

    @Override
    public long physicalAddress() {
        return pa[shown];
    }

    @Override
    public int walks() {
        return detailed[shown] ? walks[shown] : 0;
    }

    @Override
    public PageTableLevel walkStart() {
        int l = detailed[shown] ? walkStart[shown] : -1;
        return l < 0 ? null : LEVELS[l];
    }

    @Override
    public int walkReferences() {
        return detailed[shown] ? refs[shown] : 0;
    }

    @Override
    public int walkReferencesDropped() {
        return detailed[shown] ? dropped[shown] : 0;
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
        return detailed[shown] ? faults[shown] : 0;
    }

    @Override
    public FaultResult faultResult() {
        int r = detailed[shown] ? faultResult[shown] : -1;
        return r < 0 ? null : RESULTS[r];
    }

    @Override
    public int faultErrorCode() {
        return detailed[shown] ? faultCode[shown] : 0;
    }

    @Override
    public int shootdownsWaited() {
        return shootdowns[shown];
    }

    @Override
    public long cycles() {
        return cycles[shown];
    }

    @Override
    public String toString() {
        if (used == 0 && shown == 0 && walks[0] == 0 && va[0] == 0) {
            return "no access recorded";
        }
        return access() + " 0x" + Long.toHexString(va()) + ": " + translation() + " " + pageSize().label() + " pa=0x"
                + Long.toHexString(physicalAddress()) + " walks=" + walks() + " refs=" + walkReferences() + " faults="
                + faults() + (faultResult() != null ? " (" + faultResult() + ")" : "") + " shootdowns=" + shootdownsWaited()
                + " cycles=" + cycles();
    }
}
