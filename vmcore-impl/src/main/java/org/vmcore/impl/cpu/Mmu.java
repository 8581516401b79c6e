package org.vmcore.impl.cpu;

import java.lang.foreign.MemorySegment;
import org.vmcore.api.Access;
import org.vmcore.api.ClosedException;
import org.vmcore.api.FaultResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.StaleAccess;
import org.vmcore.api.Vma;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.L1Dtlb;
import org.vmcore.x86.mem.FrameContents;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.x86.tlb.Tlb;

/**
 * One CPU's memory-management unit: CR3 (the current address space, its PCID and paging mode),
 * the translation of an access (L1 DTLB, STLB, walk through {@link TlbFill}), the page fault
 * handed to the kernel, and the physical read or write behind it. Every method runs on the
 * thread that drives the CPU, inside the handshake except {@link #handleFault} (which may block
 * on the machine lock).
 *
 * <p>Instrumented accesses: while {@link #recordInto} names a log, or a cost model is set, the
 * path also records and charges each event; otherwise it does neither and costs one plain read.
 */
final class Mmu {
    /**
     * A fault that comes back this many times, for at least {@link #MAX_RETRY_NANOS}, is taken for
     * an engine that cannot resolve it. Both: a thread of the kernel side descheduled in the
     * middle of a change (4 threads on 2 cores) can keep a page busy for milliseconds, over
     * which a CPU retries thousands of times.
     */
    private static final int MAX_RETRIES = 1000;
    private static final long MAX_RETRY_NANOS = 2_000_000_000L;

    private final Initiator cpu;
    private final StaleDetector detector;
    private final Tlb tlb;
    private final L1Dtlb l1;
    private final TlbFill fill;
    private final Walker checker;
    private final WalkResult checkOut = new WalkResult();
    private final FrameContents contents;
    private final DirectMap pages;
    private final boolean detect;
    private final CycleMeter meter;

    // CR3: changed only inside the handshake, read by the CPU's accesses and by flushers.
    private volatile SimAddressSpace current;
    // What closed under this CPU and left it without an address space (null if nothing did): its accesses say so.
    private volatile String closedUnder;
    private int pcid;
    private long cr3;
    private PagingMode mode;
    private int lastFaultCode;

    // Counted by the CPU's own thread.
    private long l1Hits;
    private long stlbHits;

    // The CPU's thread while the kernel handles its fault, else null. Plain: only that thread compares
    // it with itself (faultingOn), and a thread always sees its own writes.
    private Thread faulting;
    private OutcomeLog log;     // where the access in progress is recorded, or null
    private boolean instrumented; // log != null || a cost model is set

    Mmu(Initiator cpu, Tlb tlb, L1Dtlb l1, TlbFill fill, Walker checker, FrameContents contents, DirectMap pages,
        StaleDetector detector, boolean detect, CycleMeter meter) {
        this.cpu = cpu;
        this.tlb = tlb;
        this.l1 = l1;
        this.pages = pages;
        this.fill = fill;
        this.checker = checker;
        this.contents = contents;
        this.detector = detector;
        this.detect = detect;
        this.meter = meter;
    }

    // ---- CR3 ----

    /** Loads CR3 with {@code mm} (null: no user address space). Inside the handshake. */
    void load(SimAddressSpace mm) {
        current = mm;
        closedUnder = null;
        if (mm != null) {
            pcid = mm.pcid();
            cr3 = mm.pageTable().cr3();
            mode = mm.pageTable().mode();
        }
    }

    /** The address space left under the CPU: later accesses throw ClosedException naming {@code what}. */
    void closedUnder(String what) {
        closedUnder = what; // before current: an access that sees null finds the reason
        current = null;
    }

    SimAddressSpace current() {
        return current;
    }

    boolean running() {
        return current != null;
    }

    // ---- instrumentation ----

    /** Records the following accesses into {@code into} (null: stop recording). */
    void recordInto(OutcomeLog into) {
        log = into;
        instrumented = into != null || meter.model() != null;
    }

    /** The cost model changed. */
    void costModelChanged() {
        instrumented = log != null || meter.model() != null;
    }

    boolean instrumented() {
        return instrumented;
    }

    // ---- translation ----

    /**
     * The fast path of an access that stays inside one page: the host page when the L1 DTLB holds
     * the translation with its page and allows the access, counted as a hit; otherwise null and
     * the access takes {@link #translate}. Runs inside the handshake with a current address space.
     * The stale-translation detector checks every hit, so with it on, every access takes the full path.
     * Not recorded or charged: an instrumented access calls {@link #l1HitPageCounted}.
     */
    MemorySegment l1HitPage(long va, boolean write) {
        if (detect) {
            return null;
        }
        MemorySegment page = l1Hit(l1, pcid, va, write);
        if (page != null) {
            l1Hits++;
        }
        return page;
    }

    /**
     * The L1 DTLB lookup every fast path shares: the host page of va's frame when the L1 holds
     * the translation with its page and allows the access, else null. Static and small, so the
     * batch loops can call it with the L1 and PCID they keep in locals and the JIT inlines it.
     */
    static MemorySegment l1Hit(L1Dtlb l1, int pcid, long va, boolean write) {
        int slot = l1.slot(pcid, va);
        MemorySegment page = slot >= 0 ? l1.page(slot) : null;
        return page != null && permits(l1.value(slot), write) ? page : null;
    }

    /** The physical address an L1 hit for va translates to (after {@link #l1Hit} found one). */
    static long l1HitAddress(L1Dtlb l1, int pcid, long va) {
        return (l1.value(l1.slot(pcid, va)) & Pte.PFN_MASK) | (va & 0xFFF);
    }

    /**
     * {@link #l1HitPage} that also records and charges the hit when the access is instrumented:
     * for the paths that may be ({@link #l1HitPage} stays free of the check).
     */
    MemorySegment l1HitPageCounted(long va, boolean write) {
        MemorySegment page = l1HitPage(va, write);
        if (page != null && instrumented) {
            l1HitEvent(va, l1HitAddress(l1, pcid, va));
        }
        return page;
    }

    private void l1HitEvent(long va, long pa) {
        if (log != null) {
            log.hit(va, true, 12, pa);
        }
        meter.l1Hit(PageSize.SIZE_4K);
    }

    /**
     * Translates va for a user access, filling the TLB on a miss. Runs inside the handshake.
     *
     * @return the physical address, or -1 with {@link #lastFaultCode} set
     */
    long translate(long va, Access access) {
        SimAddressSpace mm = current;
        if (mm == null) {
            throw noAddressSpace();
        }
        long v = tlb.lookup(pcid, va);
        if (v != 0) {
            if (permits(v, access)) {
                int shift = tlb.lastHitShift();
                boolean l1 = tlb.lastHitL1();
                if (l1) {
                    l1Hits++;
                } else {
                    stlbHits++;
                }
                long head = v & Pte.PFN_MASK;
                long pa = head | (va & ((1L << shift) - 1));
                if (instrumented) {
                    hitEvent(va, l1, shift, pa);
                }
                if (detect) {
                    checkStale(mm, va, head >>> 12, access);
                }
                return pa;
            }
            // A store through a clean writable entry makes the walker set D; anything else faults,
            // and a fault drops the entries for the address (SDM 4.10.4.1).
            tlb.invalidatePage(pcid, va);
        }
        long pa = fill.walk(pcid, cr3, mode, va, access);
        if (detect && pa >= 0 && fill.lastPsc() >= 0) {
            checkStaleWalk(mm, va, access);
        }
        if (instrumented) {
            fill.report(va, mode, log, meter);
        }
        if (pa < 0) {
            lastFaultCode = fill.faultCode();
        }
        return pa;
    }

    private void hitEvent(long va, boolean l1, int shift, long pa) {
        if (log != null) {
            log.hit(va, l1, shift, pa);
        }
        if (meter.model() != null) {
            PageSize size = shift == 12 ? PageSize.SIZE_4K : shift == 21 ? PageSize.SIZE_2M : PageSize.SIZE_1G;
            if (l1) {
                meter.l1Hit(size);
            } else {
                meter.stlbHit(size);
            }
        }
    }

    /** Whether a cached translation allows a user data access: a store needs RW and D (else the walker sets D). */
    static boolean permits(long v, boolean write) {
        return (v & Pte.USER) != 0 && (!write || (v & (Pte.RW | Pte.DIRTY)) == (Pte.RW | Pte.DIRTY));
    }

    /** Whether a cached translation allows a user access of any kind: a fetch needs NX clear. */
    private static boolean permits(long v, Access access) {
        return switch (access) {
            case READ -> (v & Pte.USER) != 0;
            case WRITE -> permits(v, true);
            case EXECUTE -> (v & (Pte.USER | Pte.NX)) == Pte.USER;
        };
    }

    /**
     * The detector's check of a TLB hit: the tables must still map the cached frame at va and allow
     * the access ({@link StaleRules#refuses}); otherwise a stale use, unless an invalidation of va is
     * open or the address space is owed a flush.
     */
    private void checkStale(SimAddressSpace mm, long va, long cachedPfn, Access access) {
        long now = checker.translate(cr3, mode, va, checkOut) ? checkOut.pagePfn() : -1;
        StaleAccess.Kind kind = now != cachedPfn ? StaleAccess.Kind.FRAME
                : StaleRules.refuses(checkOut.effectiveBits(), access) ? StaleAccess.Kind.PERMISSION : null;
        if (kind != null && !excused(mm, va, kind)) {
            detector.record("cpu" + cpu.id(), mm, va, access == Access.WRITE, cachedPfn, now, kind);
        }
    }

    /**
     * The detector's check of a walk that started from a paging-structure-cache entry: the tables
     * must still hold that entry ({@link StaleRules#pscStale}); otherwise the translation the walk
     * found, whichever frame it leads to, is a stale use on this first access. A walk that faulted
     * used nothing and is not counted.
     */
    private void checkStaleWalk(SimAddressSpace mm, long va, Access access) {
        long now = checker.translate(cr3, mode, va, checkOut) ? checkOut.pagePfn() : -1;
        int psc = fill.lastPsc();
        if (StaleRules.pscStale(fill.lastPscValue(), StaleRules.pscHeld(checkOut, psc))
                && !excused(mm, va, StaleAccess.Kind.PAGING_STRUCTURE)) {
            detector.record("cpu" + cpu.id(), mm, va, access == Access.WRITE, fill.lastPagePfn(), now,
                    StaleAccess.Kind.PAGING_STRUCTURE);
        }
    }

    /**
     * Whether a stale use of va is excused: an invalidation of va is open, or it is a permission
     * the tables took away while the address space is owed the flush for it (fork write-protects
     * and flushes once at the end, tlb_flush_pending). A flush owed excuses nothing else: fork
     * changes no frame and no upper entry.
     */
    static boolean excused(SimAddressSpace mm, long va, StaleAccess.Kind kind) {
        return mm.notifiers().isInvalidating(va) || (kind == StaleAccess.Kind.PERMISSION && mm.tlbFlushPending());
    }

    // ---- physical access behind a translation ----

    /**
     * Reads at the physical address {@link #translate} just returned: through the host page the
     * TLB entry remembers, or through the frame contents, remembering the page once it exists (a
     * frame never written reads as zero and has none yet).
     */
    long readPhys(long pa, int width) {
        MemorySegment page = l1.lastPage();
        if (page == null) {
            page = pages.pageOrNull(pa >>> 12);
            if (page == null) {
                return 0; // never written: reads as zero, and may get a page later, so none is remembered
            }
            l1.rememberPage(page);
        }
        return DirectMap.readPage(page, pa & 0xFFF, width);
    }

    /** Writes at the physical address {@link #translate} just returned; see {@link #readPhys}. */
    void writePhys(long pa, int width, long value) {
        MemorySegment page = l1.lastPage();
        if (page == null) {
            page = pages.page(pa >>> 12);
            l1.rememberPage(page);
        }
        DirectMap.writePage(page, pa & 0xFFF, width, value);
    }

    FrameContents contents() {
        return contents;
    }

    // ---- the fault ----

    /** Why the CPU has no address space: what closed under it, or that none was ever switched to. */
    RuntimeException noAddressSpace() {
        String closed = closedUnder;
        return closed != null ? new ClosedException(closed)
                : new IllegalStateException("cpu" + cpu.id() + " has no current address space: call switchTo first");
    }

    /** What the last fault handled returned, for the message of a fault that keeps coming back. */
    private FaultResult lastResult;
    /** When the access being retried first faulted again. */
    private long firstRetry;

    /**
     * The page fault of the translation that just failed, handed to the kernel outside the
     * handshake: throws if the kernel cannot resolve it, waits out a migration entry.
     */
    void handleFault(long va, Access access, int tries) {
        Initiator.DRIVEN.set(cpu);
        int code = lastFaultCode;
        SimAddressSpace mm = current;
        if ((code & PageFaultCode.GENERAL_PROTECTION) != 0) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.NON_CANONICAL);
        }
        if ((code & PageFaultCode.RESERVED) != 0) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.RESERVED_BIT);
        }
        if ((code & PageFaultCode.PKEY) != 0) {
            throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.PROTECTION_KEY);
        }
        if (tries == 1) {
            firstRetry = System.nanoTime();
        }
        if (tries >= MAX_RETRIES && System.nanoTime() - firstRetry >= MAX_RETRY_NANOS) {
            throw new IllegalStateException("cpu" + cpu.id() + ": " + access + " at 0x" + Long.toHexString(va)
                    + " still faults after " + tries + " retries in " + (System.nanoTime() - firstRetry) / 1_000_000
                    + " ms (fault code " + PageFaultCode.describe(code)
                    + (mm == null ? "" : ", PMD 0x" + Long.toHexString(mm.pageTable().entry(va, Level.PMD))
                    + ", PTE 0x" + Long.toHexString(mm.pageTable().entry(va, Level.PTE)))
                    + ", last fault " + lastResult + ")");
        }
        if (mm == null) { // the address space exited under this CPU since the access began
            throw noAddressSpace();
        }
        FaultResult result;
        faulting = Thread.currentThread();
        try {
            result = mm.fault(va, access);
        } finally {
            faulting = null;
        }
        lastResult = result;
        if (instrumented) {
            faultEvent(mm, va, code, result);
        }
        if (result == FaultResult.MIGRATION_WAIT) {
            mm.waitForMigration(va);
        }
    }

    private void faultEvent(SimAddressSpace mm, long va, int code, FaultResult result) {
        if (log != null) {
            log.fault(code, result);
        }
        if (meter.model() != null) {
            meter.fault(result, mm.isClosed() ? PageSize.SIZE_4K : faultSize(mm, va));
        }
    }

    /** The size of the page a fault at va mapped: the VMA's, or 2 MiB where a huge PMD entry maps va now. */
    private static PageSize faultSize(SimAddressSpace mm, long va) {
        PageSize size = mm.findVma(va).map(Vma::pageSize).orElse(PageSize.SIZE_4K);
        long pmd = size == PageSize.SIZE_4K ? mm.pageTable().entry(va & -PageSize.SIZE_2M.bytes(), Level.PMD) : 0;
        return Pte.isPresent(pmd) && (pmd & Pte.PSE) != 0 ? PageSize.SIZE_2M : size;
    }

    // ---- for the batch loops, which keep these in locals for the length of a window ----

    /** The L1 DTLB; the batch loops look it up themselves, as {@link #l1HitPage} does. */
    L1Dtlb l1() {
        return l1;
    }

    /** The current PCID: changes only inside the handshake on the CPU's own thread, so it holds for a window. */
    int pcid() {
        return pcid;
    }

    /** Whether the stale-translation detector checks every hit (then no access takes the L1 fast path). */
    boolean detecting() {
        return detect;
    }

    /** L1 hits a batch counted in a local. */
    void addL1Hits(long n) {
        l1Hits += n;
    }

    /** Whether {@code thread} is this CPU's thread inside the kernel's handling of one of its faults. */
    boolean faultingOn(Thread thread) {
        return faulting == thread;
    }

    // ---- counters ----

    long l1Hits() {
        return l1Hits;
    }

    long stlbHits() {
        return stlbHits;
    }
}
