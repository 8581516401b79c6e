package org.vmcore.impl.cpu;

import java.util.List;
import java.util.function.IntFunction;
import java.util.function.Supplier;
import org.vmcore.api.Access;
import org.vmcore.api.AccessListener;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.CostModel;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbEntry;
import org.vmcore.api.TlbStats;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.tlb.FlushTarget;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.tlb.Tlb;

/**
 * A CPU: its {@link Mmu} (CR3, TLB with paging-structure caches, walker), the accesses of one
 * instruction ({@link DataAccess}) and of batches ({@link BatchAccess}), the cost model's
 * {@link CycleMeter}, and the receiving end of TLB shootdowns.
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
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class SimCpu implements Cpu, FlushTarget {
    private final MachineLock lock;
    private final int id;
    private final Tlb tlb;
    private final TlbFill fill;
    private final CpuHandshake handshake = new CpuHandshake();
    private final CycleMeter meter = new CycleMeter();
    private final Mmu mmu;
    private final DataAccess access;
    private final BatchAccess batch;
    private final RecordedAccess recorded;
    private final MmCharges charges;
    private final CpuFlushCounters flushes = new CpuFlushCounters();
    private final TlbInspection inspection;

    /**
     * @param addressSpaceOfPcid the live address space tagged with a PCID, or null (for {@link #tlbEntries})
     */
    public SimCpu(MachineLock lock, int id, MachineConfig config, PhysicalMemory memory, StaleDetector detector,
                  IntFunction<AddressSpace> addressSpaceOfPcid, CallbackFailures callbackFailures) {
        this.lock = lock;
        this.id = id;
        this.tlb = new Tlb(config.tlb());
        this.inspection = new TlbInspection(id, tlb, handshake, addressSpaceOfPcid);
        this.fill = new TlbFill(tlb, Nodes.newWalker(memory));
        this.mmu = new Mmu(this, tlb, SharedSecrets.l1Dtlb(tlb), fill, Nodes.newWalker(memory), memory.contents(),
                SharedSecrets.directMap(memory), detector, config.detectStaleTranslations(), meter);
        this.access = new DataAccess(handshake, mmu);
        this.batch = new BatchAccess(handshake, mmu, access, flushes, meter);
        this.recorded = new RecordedAccess(access, mmu, meter, flushes);
        this.charges = new MmCharges(callbackFailures, meter, mmu);
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
        try (MachineLock.Held locked = lock.shared()) {
            lock.ensureOpen();
            if (mm == null) {
                load(null);
                return;
            }
            try (MachineLock.Held mmap = mm.mmapRead()) { // the address space cannot exit meanwhile
                mm.ensureOpen();
                mm.cpumaskSet(id); // before any entry can be cached, so every later flush reaches us
                load(mm);
            }
        }
    }

    private void load(SimAddressSpace mm) {
        Initiator.DRIVEN.set(this);
        handshake.enter();
        try {
            mmu.load(mm);
        } finally {
            handshake.leave();
        }
    }

    @Override
    public AddressSpace current() {
        lock.ensureOpen();
        return mmu.current();
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
        Initiator previous = Initiator.DRIVEN.get();
        Initiator.DRIVEN.set(this);
        try {
            return action.get();
        } finally {
            if (previous == null) {
                Initiator.DRIVEN.remove();
            } else {
                Initiator.DRIVEN.set(previous);
            }
        }
    }

    // ---- accesses ----
    // Each completes, then throws what the cost model threw meanwhile (CycleMeter.accessDone); if
    // the access itself throws, the model's exception is suppressed into it (accessFailed). A try
    // costs nothing until something throws.

    @Override
    public long load(long va, int width) {
        AccessArgs.checkWidth(width);
        long v;
        try {
            v = access.load(va, width, Access.READ);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
        return v;
    }

    @Override
    public void store(long va, int width, long value) {
        AccessArgs.checkWidth(width);
        try {
            access.store(va, width, value);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
    }

    @Override
    public void read(long va, byte[] dst, int offset, int length) {
        AccessArgs.checkBuffer(dst, offset, length);
        guarded(() -> access.copy(va, dst, offset, length, Access.READ));
    }

    @Override
    public void write(long va, byte[] src, int offset, int length) {
        AccessArgs.checkBuffer(src, offset, length);
        guarded(() -> access.write(va, src, offset, length));
    }

    @Override
    public void loadAll(long[] vas, int width, long[] values) {
        AccessArgs.checkBatch(vas, width, values);
        try {
            batch.all(vas, width, values, false);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
    }

    @Override
    public void storeAll(long[] vas, int width, long[] values) {
        AccessArgs.checkBatch(vas, width, values);
        try {
            batch.all(vas, width, values, true);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
    }

    @Override
    public void replay(byte[] ops, long[] vas, byte[] widths, long[] values) {
        lock.ensureOpen();
        AccessArgs.checkTrace(ops, vas, widths, values);
        try {
            batch.replay(ops, vas, widths, values);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
    }

    /** Runs a copy or a recorded store; see {@code CycleMeter.accessDone} and {@code accessFailed}. Not for the batches: no lambda there. */
    private void guarded(Runnable accesses) {
        try {
            accesses.run();
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
    }

    // ---- recorded accesses, listener, cost model ----

    @Override
    public long loadRecorded(long va, int width) {
        AccessArgs.checkWidth(width);
        lock.ensureOpen();
        long v;
        try {
            v = recorded.load(va, width);
        } catch (Throwable t) {
            throw meter.accessFailed(t);
        }
        meter.accessDone();
        return v;
    }

    @Override
    public void storeRecorded(long va, int width, long value) {
        AccessArgs.checkWidth(width);
        lock.ensureOpen();
        guarded(() -> recorded.store(va, width, value));
    }

    @Override
    public AccessOutcome outcome() {
        lock.ensureOpen();
        return recorded.outcome().show(0);
    }

    @Override
    public void accessListener(AccessListener listener) {
        lock.ensureOpen();
        batch.listener(listener);
    }

    @Override
    public void costModel(CostModel model) {
        lock.ensureOpen();
        meter.model(model);
        mmu.costModelChanged();
    }

    @Override
    public long cycles() {
        lock.ensureOpen();
        return meter.total();
    }

    @Override
    public void resetCycles() {
        lock.ensureOpen();
        meter.reset();
    }

    @Override
    public void chargeNotifierCall() {
        charges.notifierCall();
    }

    @Override
    public void chargePageCopy(long bytes) {
        charges.pageCopy(bytes);
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
        if (exiting != null && mmu.current() == exiting) {
            mmu.closedUnder("address space " + exiting); // the exiting mm's CPUs switch to no user address space
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
            mmu.closedUnder("machine");
        });
    }

    @Override
    public void flushEverything() {
        tlb.invalidateAll();
        flushes.full();
    }

    @Override
    public void countShootdownSent(int targets) {
        flushes.shootdownSent();
        charges.shootdownSent(targets);
    }

    @Override
    public void countShootdownReceived() {
        flushes.shootdownReceived();
        charges.shootdownReceived();
    }

    @Override
    public void countLocalFlush(boolean all, long pages) {
        flushes.local(all);
        charges.localFlush(all, pages);
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
        return new TlbStats(mmu.l1Hits(), mmu.stlbHits(), fill.misses(), fill.misses(0), fill.misses(1), fill.misses(2),
                fill.faults(), fill.misses() + fill.faults(), fill.pscHits(), flushes.pageFlushes(), flushes.rangeFlushes(),
                flushes.mmFlushes(), flushes.fullFlushes(), flushes.shootdownsSent(), flushes.shootdownsReceived());
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
