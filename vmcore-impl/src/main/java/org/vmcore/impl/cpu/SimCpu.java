package org.vmcore.impl.cpu;

import java.lang.foreign.MemorySegment;
import java.util.List;
import java.util.function.IntFunction;
import java.util.function.Supplier;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TlbEntry;
import org.vmcore.api.TlbStats;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.tlb.FlushTarget;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.L1Dtlb;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.FrameContents;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.x86.tlb.Tlb;

/**
 * A CPU: current address space (CR3 and PCID), TLB with paging-structure caches, walker, and the
 * access path TLB, walk, fault, retry.
 *
 * <p>Flushes from other threads meet the CPU's accesses through a Dekker handshake, the model of
 * an IPI: the CPU marks itself busy for the length of one access and backs off while a flush is
 * waiting; a flusher announces itself and waits until no access is in progress. So when a flush
 * returns, no access through a flushed entry is running or can start. The CPU's own thread
 * never blocks on the machine lock while busy: the fault path steps out first.
 *
 * <p>It may touch the machine lock, physical memory (contents and a walker), the stale-access
 * detector and its current address space's public operations; the machine hands it these.
 */
public final class SimCpu implements Cpu, FlushTarget {
    private static final int MAX_RETRIES = 1000;

    private final MachineLock lock;
    private final StaleDetector detector;
    private final int id;
    private final Tlb tlb;
    private final L1Dtlb l1;
    private final TlbFill fill;
    private final Walker checker;
    private final WalkResult checkOut = new WalkResult();
    private final FrameContents contents;
    private final DirectMap pages;
    private final boolean detect;

    private final CpuHandshake handshake = new CpuHandshake();

    // CR3: changed only inside the handshake, read by the CPU's accesses and by flushers.
    private volatile SimAddressSpace current;
    // What closed under this CPU and left it without an address space (null if nothing did): its accesses say so.
    private volatile String closedUnder;
    private int pcid;
    private long cr3;
    private PagingMode mode;
    private int lastFaultCode;

    // Counted by the CPU's own thread.
    private long hits;
    private long misses;
    private final CpuFlushCounters flushes = new CpuFlushCounters();
    private final TlbInspection inspection;

    /**
     * @param addressSpaceOfPcid the live address space tagged with a PCID, or null (for {@link #tlbEntries})
     */
    public SimCpu(MachineLock lock, int id, MachineConfig config, PhysicalMemory memory, StaleDetector detector,
                  IntFunction<AddressSpace> addressSpaceOfPcid) {
        this.lock = lock;
        this.id = id;
        this.detector = detector;
        this.tlb = new Tlb(config.tlb());
        this.l1 = SharedSecrets.l1Dtlb(tlb);
        this.inspection = new TlbInspection(id, tlb, handshake, addressSpaceOfPcid);
        this.fill = new TlbFill(tlb, Nodes.newWalker(memory));
        this.checker = Nodes.newWalker(memory);
        this.contents = memory.contents();
        this.pages = SharedSecrets.directMap(memory);
        this.detect = config.detectStaleTranslations();
    }

    @Override
    public int id() {
        return id;
    }

    // ---- CR3 ----

    @Override
    public void switchTo(AddressSpace addressSpace) {
        SimAddressSpace mm = null;
        if (addressSpace != null) {
            if (!(addressSpace instanceof SimAddressSpace s) || !s.belongsTo(lock)) {
                throw new InvalidArgumentException("addressSpace", addressSpace, "must belong to this machine");
            }
            mm = s;
        }
        synchronized (lock) {
            lock.ensureOpen();
            if (mm != null) {
                mm.ensureOpen();
                mm.cpumaskSet(id); // before any entry can be cached, so every later flush reaches us
            }
            DRIVEN.set(this);
            enter();
            try {
                current = mm;
                closedUnder = null;
                if (mm != null) {
                    pcid = mm.pcid();
                    cr3 = mm.pageTable().cr3();
                    mode = mm.pageTable().mode();
                }
            } finally {
                leave();
            }
        }
    }

    @Override
    public AddressSpace current() {
        lock.ensureOpen();
        return current;
    }

    // ---- the initiating CPU ----

    @Override
    public void run(Runnable action) {
        lock.ensureOpen();
        if (action == null) {
            throw new InvalidArgumentException("action", null, "must not be null");
        }
        call(() -> {
            action.run();
            return null;
        });
    }

    @Override
    public <T> T call(Supplier<T> action) {
        lock.ensureOpen();
        if (action == null) {
            throw new InvalidArgumentException("action", null, "must not be null");
        }
        FlushTarget previous = DRIVEN.get();
        DRIVEN.set(this);
        try {
            return action.get();
        } finally {
            if (previous == null) {
                DRIVEN.remove();
            } else {
                DRIVEN.set(previous);
            }
        }
    }

    // ---- accesses ----

    @Override
    public long load(long va, int width) {
        AccessArgs.checkWidth(width);
        if ((va & 0xFFF) + width > 4096) {
            long v = 0;
            for (int i = 0; i < width; i++) {
                v |= load(va + i, 1) << (8 * i);
            }
            return v;
        }
        for (int tries = 0; ; tries++) {
            enter();
            try {
                MemorySegment page = current != null ? l1HitPage(va, false) : null;
                if (page != null) {
                    return DirectMap.readPage(page, va & 0xFFF, width);
                }
                long pa = translate(va, false);
                if (pa >= 0) {
                    return readPhys(pa, width);
                }
            } finally {
                leave();
            }
            handleFault(va, Access.READ, tries);
        }
    }

    @Override
    public void store(long va, int width, long value) {
        AccessArgs.checkWidth(width);
        if ((va & 0xFFF) + width > 4096) {
            byte[] bytes = new byte[width]; // a page-crossing store is rare: the in-page path stays allocation-free
            for (int i = 0; i < width; i++) {
                bytes[i] = (byte) (value >>> (8 * i));
            }
            writePrecise(va, bytes, 0, width);
            return;
        }
        for (int tries = 0; ; tries++) {
            enter();
            try {
                MemorySegment page = current != null ? l1HitPage(va, true) : null;
                if (page != null) {
                    DirectMap.writePage(page, va & 0xFFF, width, value);
                    return;
                }
                long pa = translate(va, true);
                if (pa >= 0) {
                    writePhys(pa, width, value);
                    return;
                }
            } finally {
                leave();
            }
            handleFault(va, Access.WRITE, tries);
        }
    }

    @Override
    public void read(long va, byte[] dst, int offset, int length) {
        AccessArgs.checkBuffer(dst, offset, length);
        copy(va, dst, offset, length, false);
    }

    @Override
    public void write(long va, byte[] src, int offset, int length) {
        AccessArgs.checkBuffer(src, offset, length);
        if ((va & 0xFFF) + length > 4096) {
            writePrecise(va, src, offset, length);
        } else {
            copy(va, src, offset, length, true);
        }
    }

    @Override
    public void loadAll(long[] vas, int width, long[] values) {
        AccessArgs.checkBatch(vas, width, values);
        batch(vas, width, values, false);
    }

    @Override
    public void storeAll(long[] vas, int width, long[] values) {
        AccessArgs.checkBatch(vas, width, values);
        batch(vas, width, values, true);
    }

    /**
     * Runs a batch of same-width accesses inside one handshake window. Between two accesses the
     * CPU looks for a waiting flusher (a plain read, no fence) and steps out to let it through;
     * it also steps out for a fault, which may block on the machine lock.
     */
    private void batch(long[] vas, int width, long[] values, boolean write) {
        int i = 0;
        int tries = 0;
        enter();
        try {
            boolean running = current != null; // CR3 changes only inside the handshake: read once per window
            while (i < vas.length) {
                if (letFlushesIn()) {
                    running = current != null;
                }
                long va = vas[i];
                if (running && (va & 0xFFF) + width <= 4096) {
                    MemorySegment page = l1HitPage(va, write);
                    if (page != null) {
                        if (write) {
                            DirectMap.writePage(page, va & 0xFFF, width, values[i]);
                        } else {
                            values[i] = DirectMap.readPage(page, va & 0xFFF, width);
                        }
                        i++;
                        tries = 0;
                        continue;
                    }
                }
                if ((va & 0xFFF) + width > 4096) { // split across pages: the unbatched path
                    leave();
                    if (write) {
                        store(va, width, values[i]);
                    } else {
                        values[i] = load(va, width);
                    }
                    enter();
                    i++;
                    continue;
                }
                long pa = translate(va, write);
                if (pa < 0) {
                    faultOutsideWindow(va, write, tries++);
                    continue;
                }
                if (write) {
                    writePhys(pa, width, values[i]);
                } else {
                    values[i] = readPhys(pa, width);
                }
                i++;
                tries = 0;
            }
        } finally {
            leave();
        }
    }

    /**
     * Between two accesses of a window: steps out and back in when a flusher waits (a plain
     * read, no fence, when none does). Returns whether it stepped out.
     */
    private boolean letFlushesIn() {
        if (!handshake.flushWaiting()) {
            return false;
        }
        leave();
        enter();
        return true;
    }

    /** Handles a fault met inside a window outside it: the fault path may block on the machine lock. */
    private void faultOutsideWindow(long va, boolean write, int tries) {
        leave();
        handleFault(va, write ? Access.WRITE : Access.READ, tries);
        enter();
    }

    /** Copies bytes a page at a time inside one handshake window, as {@link #batch} runs accesses. */
    private void copy(long va, byte[] buffer, int offset, int length, boolean write) {
        int done = 0;
        int tries = 0;
        enter();
        try {
            while (done < length) {
                letFlushesIn();
                long at = va + done;
                int chunk = (int) Math.min(length - done, 4096 - (at & 0xFFF));
                long pa = translate(at, write);
                if (pa < 0) {
                    faultOutsideWindow(at, write, tries++);
                    continue;
                }
                if (write) {
                    contents.writeBytes(pa, buffer, offset + done, chunk);
                } else {
                    contents.readBytes(pa, buffer, offset + done, chunk);
                }
                done += chunk;
                tries = 0;
            }
        } finally {
            leave();
        }
    }

    /**
     * A write that crosses pages, made precise as an x86 store is: every page of the range is
     * translated for write (faulting it in where the kernel can) before the first byte lands, so
     * a fault that cannot be resolved writes nothing. The translations are used only if one pass
     * over all pages ran without leaving the handshake window: while the CPU was out (for a fault
     * or a flusher) another CPU may have unmapped a page translated before.
     */
    private void writePrecise(long va, byte[] src, int offset, int length) {
        long first = va & ~0xFFFL;
        int pages = (int) (((va & 0xFFF) + length + 0xFFF) >>> 12);
        long[] pas = new long[pages];
        long faultVa = -1;
        int tries = 0;
        enter();
        try {
            boolean interrupted = true;
            while (interrupted) {
                interrupted = letFlushesIn();
                for (int p = 0; p < pages; ) {
                    long at = p == 0 ? va : first + ((long) p << 12);
                    long pa = translate(at, true);
                    if (pa >= 0) {
                        pas[p++] = pa;
                        continue;
                    }
                    tries = at == faultVa ? tries + 1 : 0;
                    faultVa = at;
                    faultOutsideWindow(at, true, tries);
                    interrupted = true;
                }
            }
            int done = 0;
            for (int p = 0; p < pages; p++) {
                int chunk = (int) Math.min(length - done, 4096 - (pas[p] & 0xFFF));
                contents.writeBytes(pas[p], src, offset + done, chunk);
                done += chunk;
            }
        } finally {
            leave();
        }
    }

    /**
     * Reads at the physical address {@link #translate} just returned: through the host page the
     * TLB entry remembers, or through the frame contents, remembering the page once it exists (a
     * frame never written reads as zero and has none yet).
     */
    private long readPhys(long pa, int width) {
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
    private void writePhys(long pa, int width, long value) {
        MemorySegment page = l1.lastPage();
        if (page == null) {
            page = pages.page(pa >>> 12);
            l1.rememberPage(page);
        }
        DirectMap.writePage(page, pa & 0xFFF, width, value);
    }

    /** Why the CPU has no address space: what closed under it, or that none was ever switched to. */
    private RuntimeException noAddressSpace() {
        String closed = closedUnder;
        return closed != null ? new ClosedException(closed)
                : new IllegalStateException("cpu" + id + " has no current address space: call switchTo first");
    }

    /**
     * Translates va for a user access, filling the TLB on a miss. Runs inside the handshake.
     *
     * @return the physical address, or -1 with {@link #lastFaultCode} set
     */
    private long translate(long va, boolean write) {
        SimAddressSpace mm = current;
        if (mm == null) {
            throw noAddressSpace();
        }
        long v = tlb.lookup(pcid, va);
        if (v != 0) {
            if (permits(v, write)) {
                hits++;
                long head = v & Pte.PFN_MASK;
                long pa = head | (va & ((1L << tlb.lastHitShift()) - 1));
                if (detect) {
                    checkStale(mm, va, head >>> 12, write);
                }
                return pa;
            }
            // A store through a clean writable entry makes the walker set D; anything else faults,
            // and a fault drops the entries for the address (SDM 4.10.4.1).
            tlb.invalidatePage(pcid, va);
        }
        misses++;
        long pa = fill.walk(pcid, cr3, mode, va, write);
        if (pa < 0) {
            lastFaultCode = fill.faultCode();
        }
        return pa;
    }

    /**
     * The fast path of an access that stays inside one page: the host page when the L1 DTLB holds
     * the translation with its page and allows the access, counted as a hit; otherwise null and
     * the access takes {@link #translate}. Runs inside the handshake with a current address space.
     * The stale-translation detector checks every hit, so with it on, every access takes the full path.
     */
    private MemorySegment l1HitPage(long va, boolean write) {
        if (detect) {
            return null;
        }
        int slot = l1.slot(pcid, va);
        MemorySegment page = slot >= 0 ? l1.page(slot) : null;
        if (page == null || !permits(l1.value(slot), write)) {
            return null;
        }
        hits++;
        return page;
    }

    /** Whether a cached translation allows a user access: a store needs RW and D (else the walker sets D). */
    private static boolean permits(long v, boolean write) {
        return (v & Pte.USER) != 0 && (!write || (v & (Pte.RW | Pte.DIRTY)) == (Pte.RW | Pte.DIRTY));
    }

    private void checkStale(SimAddressSpace mm, long va, long cachedPfn, boolean write) {
        long now = checker.translate(cr3, mode, va, checkOut) ? checkOut.pagePfn() : -1;
        if (now != cachedPfn && !mm.notifiers().isInvalidating(va)) {
            detector.record("cpu" + id, mm, va, write, cachedPfn, now);
        }
    }

    private void handleFault(long va, Access access, int tries) {
        DRIVEN.set(this);
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
        if (tries >= MAX_RETRIES) {
            throw new IllegalStateException("cpu" + id + ": " + access + " at 0x" + Long.toHexString(va) + " still faults after "
                    + tries + " retries (fault code " + PageFaultCode.describe(code) + ")");
        }
        if (mm == null) { // the address space exited under this CPU since the access began
            throw noAddressSpace();
        }
        FaultResult result = mm.fault(va, access);
        if (result == FaultResult.MIGRATION_WAIT) {
            mm.waitForMigration(va);
        }
    }

    // ---- the handshake (CpuHandshake) ----

    private void enter() {
        handshake.enter();
    }

    private void leave() {
        handshake.leave();
    }

    /**
     * Runs {@code flush} on this CPU's TLB when no access is in progress: the receiving end of
     * a shootdown.
     */
    @Override
    public void runFlush(Runnable flush) {
        handshake.runFlush(flush);
    }

    // ---- flushes (called through runFlush) ----

    @Override
    public void flushPages(int pcid, long start, long end, int strideShift, boolean single) {
        tlb.invalidateRange(pcid, start, end, strideShift);
        flushes.pages(single);
    }

    @Override
    public void flushPcid(int pcid, MmStruct exiting) {
        tlb.invalidatePcid(pcid);
        flushes.mm();
        if (exiting != null && current == exiting) {
            closedUnder = "address space " + exiting; // before current: an access that sees null finds the reason
            current = null; // the exiting mm's CPUs switch to no user address space
        }
    }

    /**
     * The machine closes: the CPU leaves its address space with its TLB emptied, through the
     * handshake, so no access is running when the memory is freed and every later one throws
     * ClosedException.
     */
    public void machineClosed() {
        runFlush(() -> {
            tlb.invalidateAll();
            closedUnder = "machine";
            current = null;
        });
    }

    @Override
    public void flushEverything() {
        tlb.invalidateAll();
        flushes.full();
    }

    @Override
    public void countShootdownSent() {
        flushes.shootdownSent();
    }

    @Override
    public void countShootdownReceived() {
        flushes.shootdownReceived();
    }

    @Override
    public void countLocalFlush(boolean all) {
        flushes.local(all);
    }

    /**
     * The flushes this CPU initiated and ran on itself: of the whole address space or TLB
     * ({@code all}, nr_tlb_local_flush_all) or of pages (nr_tlb_local_flush_one).
     */
    public long localFlushes(boolean all) {
        return flushes.localCount(all);
    }

    // ---- inspection ----

    @Override
    public TlbStats stats() {
        lock.ensureOpen();
        return new TlbStats(hits, misses, fill.misses(0), fill.misses(1), fill.misses(2), fill.walks(), fill.pscHits(), flushes.pageFlushes(),
                flushes.rangeFlushes(), flushes.mmFlushes(), flushes.fullFlushes(), flushes.shootdownsSent(),
                flushes.shootdownsReceived());
    }

    @Override
    public List<TlbEntry> tlbEntries() {
        lock.ensureOpen();
        return inspection.entries();
    }

    @Override
    public boolean tlbHolds(AddressSpace addressSpace, long va) {
        lock.ensureOpen();
        if (!(addressSpace instanceof SimAddressSpace mm) || !mm.belongsTo(lock)) {
            throw new InvalidArgumentException("addressSpace", addressSpace, "must belong to this machine");
        }
        mm.ensureOpen(); // an exited address space has given its PCID back: another may use it now
        return inspection.holds(mm.pcid(), va);
    }

    /** Paging-structure cache entries of {@code level} (Tlb.PML4E, PDPTE, PDE) under {@code pcid}. */
    public List<Tlb.Entry> pagingStructureEntries(int level, int pcid) {
        return inspection.pagingStructureEntries(level, pcid);
    }

    /** The page size of the cached translation for va of mm, or null. */
    public PageSize cachedSize(SimAddressSpace mm, long va) {
        return inspection.cachedSize(mm.pcid(), va);
    }

    @Override
    public String toString() {
        return "cpu" + id;
    }
}
