package org.vmcore.impl.tlb;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.stat.TlbFlushEvent;
import org.vmcore.impl.vma.MmStruct;

/**
 * The kernel's TLB flush operations (flush_tlb_mm_range, flush_tlb_mm, flush_tlb_all): a flush
 * for one address space reaches the CPUs in its cpumask and touches only that address space's
 * PCID; then the secondary TLBs are told. The initiating CPU (the one the calling thread runs as,
 * {@code Initiator.DRIVEN}) flushes itself locally and counts a local flush; every other CPU counts
 * a shootdown received, and the initiator one sent per flush that reached any of them.
 *
 * <p>It may touch the CPUs only through {@link FlushTarget} and an address space only as an
 * {@link MmStruct} (PCID, cpumask, notifier chain).
 */
public final class TlbShootdown {
    /** tlb_single_page_flush_ceiling: above this many stride steps the whole address space is flushed. */
    public static final int FLUSH_CEILING = 33;

    private final FlushTarget[] cpus;

    public TlbShootdown(FlushTarget[] cpus) {
        this.cpus = cpus;
    }

    /** flush_tlb_mm_range of [start, end) with a stride of 2^strideShift bytes. */
    public void flushTlbMmRange(MmStruct mm, long start, long end, int strideShift) {
        flushTlbMmRange(mm, start, end, strideShift, true);
    }

    /**
     * flush_tlb_mm_range of the CPUs only, for a caller under a page-table lock: it tells the
     * secondary TLBs ({@code mm.notifiers().secondaryTlbs}) once it has dropped its locks, since a
     * notifier may call back into the engine, which would take page-table locks inside this one.
     */
    public void flushTlbMmRangeCpus(MmStruct mm, long start, long end, int strideShift) {
        flushTlbMmRange(mm, start, end, strideShift, false);
    }

    private void flushTlbMmRange(MmStruct mm, long start, long end, int strideShift, boolean secondary) {
        TlbFlushEvent event = new TlbFlushEvent();
        event.begin();
        long alignedStart = start & -(1L << strideShift);
        long steps = (end - alignedStart + (1L << strideShift) - 1) >>> strideShift;
        int reached;
        String kind;
        if (steps > FLUSH_CEILING) {
            reached = flushMm(mm, null);
            kind = "mm (range over the ceiling)";
        } else {
            int pcid = mm.pcid();
            boolean single = steps == 1;
            FlushTarget initiator = initiator();
            List<FlushTarget> targets = targets(mm);
            for (FlushTarget cpu : targets) {
                cpu.runFlush(() -> {
                    received(initiator, cpu);
                    cpu.flushPages(pcid, alignedStart, end, strideShift, single);
                });
            }
            countLocal(targets, false, steps);
            reached = targets.size();
            kind = single ? "page" : "range";
        }
        if (secondary) {
            mm.notifiers().secondaryTlbs(start, end);
        }
        commit(event, mm, start, end, kind, reached);
    }

    private void commit(TlbFlushEvent event, MmStruct mm, long start, long end, String kind, int reached) {
        if (event.shouldCommit()) {
            FlushTarget initiator = initiator();
            event.addressSpace = mm.id();
            event.start = start;
            event.end = end;
            event.kind = kind;
            event.cpus = reached;
            event.shootdowns = initiator != null && mm.cpumaskHas(initiator.id()) ? reached - 1 : reached;
            event.commit();
        }
    }

    /** flush_tlb_mm: the whole PCID on every CPU of the cpumask, then the secondary TLBs. */
    public void flushTlbMm(MmStruct mm) {
        TlbFlushEvent event = new TlbFlushEvent();
        event.begin();
        int reached = flushMm(mm, null);
        long limit = mm.pageTable().mode().userAddressLimit();
        mm.notifiers().secondaryTlbs(0, limit);
        commit(event, mm, 0, limit, "mm", reached);
    }

    /** The flush of an exiting address space: its PCID is dropped everywhere and its CPUs leave it. */
    public void flushExiting(MmStruct mm) {
        flushMm(mm, mm);
    }

    private int flushMm(MmStruct mm, MmStruct exiting) {
        int pcid = mm.pcid();
        FlushTarget initiator = initiator();
        List<FlushTarget> targets = targets(mm);
        for (FlushTarget cpu : targets) {
            cpu.runFlush(() -> {
                received(initiator, cpu);
                cpu.flushPcid(pcid, exiting);
            });
        }
        countLocal(targets, true, 0);
        return targets.size();
    }

    /** flush_tlb_all: every CPU, every PCID. */
    public void flushTlbAll() {
        FlushTarget initiator = initiator();
        int remote = 0;
        for (FlushTarget cpu : cpus) {
            remote += initiator == cpu ? 0 : 1;
            cpu.runFlush(() -> {
                received(initiator, cpu);
                cpu.flushEverything();
            });
        }
        countSent(initiator, remote);
        if (initiator != null) {
            initiator.countLocalFlush(true, 0);
        }
    }

    /**
     * The CPU the calling thread runs as, if it is one of this machine's: a thread that drives
     * CPUs of several machines (or runs one machine's CPU around another's operation) initiates
     * nothing on the other machine, whose CPUs then all count the flush as remote.
     */
    private FlushTarget initiator() {
        Initiator cpu = Initiator.DRIVEN.get();
        return cpu != null && cpu.id() < cpus.length && cpus[cpu.id()] == cpu ? cpus[cpu.id()] : null;
    }

    /** nr_tlb_local_flush_one/all: counted on the initiator only, when it is among the targets. */
    private void countLocal(List<FlushTarget> targets, boolean all, long pages) {
        FlushTarget initiator = initiator();
        if (initiator != null && targets.contains(initiator)) {
            initiator.countLocalFlush(all, pages);
        }
    }

    private List<FlushTarget> targets(MmStruct mm) {
        FlushTarget initiator = initiator();
        List<FlushTarget> out = new ArrayList<>();
        int remote = 0;
        for (FlushTarget cpu : cpus) {
            if (mm.cpumaskHas(cpu.id())) {
                remote += initiator == cpu ? 0 : 1; // a local flush sends no IPI
                out.add(cpu);
            }
        }
        countSent(initiator, remote);
        return out;
    }

    /**
     * Counts a shootdown received by {@code target} unless it is the initiator. Called inside the
     * flush, while the target is held out of its accesses, so the access that stepped aside for it
     * sees it counted when it resumes (AccessOutcome.shootdownsWaited).
     */
    private static void received(FlushTarget initiator, FlushTarget target) {
        if (initiator != target) {
            target.countShootdownReceived();
        }
    }

    /** nr_tlb_remote_flush: one per flush that reached other CPUs, however many (flush_tlb_multi counts once). */
    private static void countSent(FlushTarget initiator, int remote) {
        if (remote > 0 && initiator != null) {
            initiator.countShootdownSent(remote);
        }
    }
}
