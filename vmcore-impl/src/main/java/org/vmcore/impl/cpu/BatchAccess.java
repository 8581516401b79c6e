package org.vmcore.impl.cpu;

import java.lang.foreign.MemorySegment;
import org.vmcore.api.Access;
import org.vmcore.api.AccessListener;
import org.vmcore.api.Cpu;
import org.vmcore.api.PageSize;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TraceOp;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.L1Dtlb;

/**
 * Batches of accesses inside one handshake window: {@code loadAll}, {@code storeAll} (one
 * operation and width for all) and {@code replay} (an operation and width per access). Between
 * two accesses the CPU looks for a waiting flusher and steps out to let it through; it also steps out for a fault, which may block on the machine lock. The look is an acquire
 * load, no fence.
 *
 * <p>Each kind of batch has a loop of its own, so that the TLB-hit path of each stays as short
 * as the JIT can make it; what they share off that path is {@link #slowStep}.
 *
 * <p>With an {@link AccessListener}, the instrumented loop records every access into an
 * {@link OutcomeLog} of {@value Cpu#OUTCOME_BURST} slots and hands a full log to the listener
 * outside the window, so a listener may call into the machine.
 */
final class BatchAccess {
    private final CpuHandshake handshake;
    private final Mmu mmu;
    private final DataAccess single;
    private final CpuFlushCounters flushes;
    private final CycleMeter meter;
    private final OutcomeLog log = new OutcomeLog(Cpu.OUTCOME_BURST);
    private AccessListener listener;
    private boolean delivering; // the listener is running: batches it makes are not recorded

    BatchAccess(CpuHandshake handshake, Mmu mmu, DataAccess single, CpuFlushCounters flushes, CycleMeter meter) {
        this.handshake = handshake;
        this.mmu = mmu;
        this.single = single;
        this.flushes = flushes;
        this.meter = meter;
    }

    void listener(AccessListener listener) {
        this.listener = listener;
    }

    /** {@code loadAll} ({@code write} false) or {@code storeAll}; the arguments are checked already. */
    void all(long[] vas, int width, long[] values, boolean write) {
        byte op = write ? TraceOp.STORE : TraceOp.LOAD;
        if (instrumented()) {
            runInstrumented(null, op, vas, null, width, values);
            return;
        }
        long hits = 0;
        L1Dtlb l1 = mmu.l1();
        boolean fast = !mmu.detecting();
        handshake.enter();
        try {
            // CR3 (address space and PCID) changes only inside the handshake: read once per window
            boolean running = fast && mmu.running();
            int pcid = mmu.pcid();
            // A counted loop (i advances once per access, retries happen inside slowAccess), so the
            // JIT can drop the arrays' range checks.
            for (int i = 0; i < vas.length; i++) {
                if (handshake.flushWaiting()) {
                    stepOut();
                    running = fast && mmu.running();
                    pcid = mmu.pcid();
                }
                long va = vas[i];
                if (running && (va & 0xFFF) + width <= 4096) {
                    MemorySegment page = Mmu.l1Hit(l1, pcid, va, write);
                    if (page != null) {
                        if (write) {
                            DirectMap.writePage(page, va & 0xFFF, width, values[i]);
                        } else {
                            values[i] = DirectMap.readPage(page, va & 0xFFF, width);
                        }
                        hits++;
                        continue;
                    }
                }
                slowAccess(i, op, va, width, values);
                running = fast && mmu.running(); // it may have stepped out of the window
                pcid = mmu.pcid();
            }
        } finally {
            mmu.addL1Hits(hits);
            handshake.leave();
        }
    }

    /** {@code replay}: an operation and a width per access; the arguments are checked already. */
    void replay(byte[] ops, long[] vas, byte[] widths, long[] values) {
        if (instrumented()) {
            runInstrumented(ops, TraceOp.LOAD, vas, widths, 0, values);
            return;
        }
        long hits = 0;
        L1Dtlb l1 = mmu.l1();
        boolean fast = !mmu.detecting();
        handshake.enter();
        try {
            boolean running = fast && mmu.running();
            int pcid = mmu.pcid();
            for (int i = 0; i < vas.length; i++) {
                if (handshake.flushWaiting()) {
                    stepOut();
                    running = fast && mmu.running();
                    pcid = mmu.pcid();
                }
                long va = vas[i];
                byte op = ops[i];
                int width = widths[i];
                if (running && op != TraceOp.FETCH && (va & 0xFFF) + width <= 4096) {
                    boolean write = op == TraceOp.STORE;
                    MemorySegment page = Mmu.l1Hit(l1, pcid, va, write);
                    if (page != null) {
                        if (write) {
                            DirectMap.writePage(page, va & 0xFFF, width, values[i]);
                        } else {
                            values[i] = DirectMap.readPage(page, va & 0xFFF, width);
                        }
                        hits++;
                        continue;
                    }
                }
                slowAccess(i, op, va, width, values);
                running = fast && mmu.running();
                pcid = mmu.pcid();
            }
        } finally {
            mmu.addL1Hits(hits);
            handshake.leave();
        }
    }

    /**
     * Whether the batch must record or charge its accesses: a listener hears them (unless the
     * batch is the listener's own) or a cost model prices them. Checked once per batch, so the
     * plain loops carry no such check per access.
     */
    private boolean instrumented() {
        return (listener != null && !delivering) || mmu.instrumented();
    }

    /** Lets a waiting flusher through: out of the window and back in. */
    private void stepOut() {
        handshake.leave();
        handshake.enter();
    }

    /** One access off the L1 fast path, retried until it completes (a fault the kernel cannot resolve throws). */
    private void slowAccess(int i, byte op, long va, int width, long[] values) {
        for (int tries = 0; !slowStep(i, op, va, width, values, tries); tries++) {
            // the fault was resolved (or is being migrated): translate again
        }
    }

    /**
     * One access off the L1 fast path, inside the window: page-crossing ones through the
     * single-access path (out of the window), others by translate and the physical access.
     * Returns whether the access completed; false after a fault the kernel resolved (retry).
     */
    private boolean slowStep(int i, byte op, long va, int width, long[] values, int tries) {
        Access access = TraceOp.access(op);
        try {
            if ((va & 0xFFF) + width > 4096) { // split across pages: the unbatched path
                handshake.leave();
                try {
                    if (access == Access.WRITE) {
                        single.store(va, width, values[i]);
                    } else {
                        values[i] = single.load(va, width, access);
                    }
                } finally {
                    handshake.enter();
                }
                return true;
            }
            long pa = mmu.translate(va, access);
            if (pa < 0) {
                single.faultOutsideWindow(va, access, tries);
                return false;
            }
            if (access == Access.WRITE) {
                mmu.writePhys(pa, width, values[i]);
            } else {
                values[i] = mmu.readPhys(pa, width);
            }
            return true;
        } catch (SegmentationFaultException e) {
            throw atIndex(e, i);
        }
    }

    private static SegmentationFaultException atIndex(SegmentationFaultException e, int i) {
        if (e.batchIndex() == i) {
            return e;
        }
        SegmentationFaultException indexed = new SegmentationFaultException(e.address(), e.access(), e.cause(), i);
        indexed.initCause(e);
        return indexed;
    }

    /**
     * A batch that records each access and delivers the log to the listener in bursts. The
     * shootdowns an access waited for can only have run while the CPU was out of the window, so
     * the counter is read only around the ways out.
     */
    private void runInstrumented(byte[] ops, byte op, long[] vas, byte[] widths, int width, long[] values) {
        if (delivering) { // the listener's own batch with a cost model: charged, not recorded
            for (int k = 0; k < vas.length; k++) {
                Access access = TraceOp.access(ops == null ? op : ops[k]);
                int w = widths == null ? width : widths[k];
                try {
                    if (access == Access.WRITE) {
                        single.store(vas[k], w, values[k]);
                    } else {
                        values[k] = single.load(vas[k], w, access);
                    }
                } catch (SegmentationFaultException e) {
                    throw atIndex(e, k);
                }
            }
            return;
        }
        boolean costed = meter.model() != null;
        L1Dtlb l1 = mmu.l1();
        boolean fast = !mmu.detecting();
        int i = 0;
        int tries = 0;
        long hits = 0;
        log.clear();
        mmu.recordInto(log);
        handshake.enter();
        try {
            boolean running = fast && mmu.running(); // re-read after every way out of the window
            int pcid = mmu.pcid();
            while (i < vas.length) {
                long va = vas[i];
                byte o = ops == null ? op : ops[i];
                int w = widths == null ? width : widths[i];
                if (tries == 0) {
                    log.begin(i, va, o, costed ? meter.total() : 0);
                }
                if (handshake.flushWaiting()) {
                    long received = flushes.shootdownsReceived();
                    stepOut();
                    log.waited(flushes.shootdownsReceived() - received);
                    running = fast && mmu.running();
                    pcid = mmu.pcid();
                }
                boolean done = false;
                if (running && o != TraceOp.FETCH && (va & 0xFFF) + w <= 4096) {
                    boolean write = o == TraceOp.STORE;
                    MemorySegment page = Mmu.l1Hit(l1, pcid, va, write);
                    if (page != null) {
                        if (write) {
                            DirectMap.writePage(page, va & 0xFFF, w, values[i]);
                        } else {
                            values[i] = DirectMap.readPage(page, va & 0xFFF, w);
                        }
                        hits++;
                        log.hit(va, true, 12, Mmu.l1HitAddress(l1, pcid, va));
                        if (costed) {
                            meter.l1Hit(PageSize.SIZE_4K);
                        }
                        done = true;
                    }
                }
                if (!done) {
                    long received = flushes.shootdownsReceived();
                    done = slowStep(i, o, va, w, values, tries);
                    log.waited(flushes.shootdownsReceived() - received);
                    running = fast && mmu.running();
                    pcid = mmu.pcid();
                }
                if (!done) {
                    tries++;
                    continue;
                }
                log.end(costed ? meter.total() : 0);
                i++;
                tries = 0;
                if (log.full()) {
                    mmu.addL1Hits(hits); // the listener may read the CPU's stats
                    hits = 0;
                    deliver();
                    running = fast && mmu.running(); // the listener may have changed any of these
                    pcid = mmu.pcid();
                    costed = meter.model() != null;
                }
            }
            mmu.addL1Hits(hits);
            hits = 0;
            deliver();
        } catch (RuntimeException | Error e) {
            mmu.addL1Hits(hits);
            hits = 0;
            try {
                deliver(); // the accesses before the one that failed took effect: the listener hears of them
            } catch (RuntimeException | Error listenerFailure) {
                e.addSuppressed(listenerFailure);
            }
            throw e;
        } finally {
            mmu.addL1Hits(hits);
            mmu.recordInto(null);
            handshake.leave();
        }
    }

    /**
     * Hands the recorded outcomes to the listener outside the window (it may call into the
     * machine) and clears the log. What the listener throws ends the batch.
     */
    private void deliver() {
        AccessListener l = listener;
        int n = log.size();
        if (l == null || n == 0) {
            log.clear();
            return;
        }
        mmu.recordInto(null); // what the listener does through this CPU is not recorded
        handshake.leave();
        delivering = true;
        // What the cost model threw during the batch is the batch's: the listener's own accesses
        // must not throw it.
        Throwable batchFailure = meter.takeFailure();
        try {
            for (int s = 0; s < n; s++) {
                l.accessed(log.show(s));
            }
        } finally {
            meter.putBack(batchFailure);
            delivering = false;
            log.clear();
            handshake.enter();
            mmu.recordInto(log);
        }
    }
}
