package org.vmcore.impl.cpu;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.impl.mm.SimAddressSpace;

/**
 * The kernel's TLB flush operations (flush_tlb_mm_range, flush_tlb_mm, flush_tlb_all): a flush
 * for one address space reaches the CPUs in its cpumask and touches only that address space's
 * PCID; then the secondary TLBs are told. The initiating CPU (the one the calling thread runs as,
 * {@link SimCpu#DRIVEN}) flushes itself locally and counts a local flush; every other CPU counts
 * a shootdown received, and the initiator one sent for each.
 */
public final class TlbShootdown {
    /** tlb_single_page_flush_ceiling: above this many stride steps the whole address space is flushed. */
    public static final int FLUSH_CEILING = 33;

    private final SimCpu[] cpus;

    public TlbShootdown(SimCpu[] cpus) {
        this.cpus = cpus;
    }

    /** flush_tlb_mm_range of [start, end) with a stride of 2^strideShift bytes. */
    public void flushRange(SimAddressSpace mm, long start, long end, int strideShift) {
        org.vmcore.impl.stat.TlbFlushEvent event = new org.vmcore.impl.stat.TlbFlushEvent();
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
            List<SimCpu> targets = targets(mm);
            for (SimCpu cpu : targets) {
                cpu.runFlush(() -> cpu.flushPages(pcid, alignedStart, end, strideShift, single));
            }
            countLocal(targets, false);
            reached = targets.size();
            kind = single ? "page" : "range";
        }
        mm.notifiers().secondaryTlbs(start, end);
        commit(event, mm, start, end, kind, reached);
    }

    private void commit(org.vmcore.impl.stat.TlbFlushEvent event, SimAddressSpace mm, long start, long end, String kind, int reached) {
        if (event.shouldCommit()) {
            SimCpu initiator = initiator();
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
    public void flushMm(SimAddressSpace mm) {
        org.vmcore.impl.stat.TlbFlushEvent event = new org.vmcore.impl.stat.TlbFlushEvent();
        event.begin();
        int reached = flushMm(mm, null);
        long limit = mm.pageTable().mode().userAddressLimit();
        mm.notifiers().secondaryTlbs(0, limit);
        commit(event, mm, 0, limit, "mm", reached);
    }

    /** The flush of an exiting address space: its PCID is dropped everywhere and its CPUs leave it. */
    public void flushExiting(SimAddressSpace mm) {
        flushMm(mm, mm);
    }

    private int flushMm(SimAddressSpace mm, SimAddressSpace exiting) {
        int pcid = mm.pcid();
        List<SimCpu> targets = targets(mm);
        for (SimCpu cpu : targets) {
            cpu.runFlush(() -> cpu.flushPcid(pcid, exiting));
        }
        countLocal(targets, true);
        return targets.size();
    }

    /** flush_tlb_all: every CPU, every PCID. */
    public void flushAll() {
        SimCpu initiator = initiator();
        boolean remote = false;
        for (SimCpu cpu : cpus) {
            remote |= count(initiator, cpu);
            cpu.runFlush(cpu::flushEverything);
        }
        countSent(initiator, remote);
        if (initiator != null) {
            initiator.countLocalFlush(true);
        }
    }

    /** nr_tlb_local_flush_one/all: counted on the initiator only, when it is among the targets. */
    private void countLocal(List<SimCpu> targets, boolean all) {
        SimCpu initiator = initiator();
        if (initiator != null && targets.contains(initiator)) {
            initiator.countLocalFlush(all);
        }
    }

    private List<SimCpu> targets(SimAddressSpace mm) {
        SimCpu initiator = initiator();
        List<SimCpu> out = new ArrayList<>();
        boolean remote = false;
        for (SimCpu cpu : cpus) {
            if (mm.cpumaskHas(cpu.id())) {
                remote |= count(initiator, cpu);
                out.add(cpu);
            }
        }
        countSent(initiator, remote);
        return out;
    }

    /** Counts a shootdown received by {@code target} unless it is the initiator; returns whether it was remote. */
    private static boolean count(SimCpu initiator, SimCpu target) {
        if (initiator == target) {
            return false; // a local flush: no IPI
        }
        target.countShootdownReceived();
        return true;
    }

    /**
     * The CPU the calling thread runs as, if it is one of this machine's: a thread that drives
     * CPUs of several machines (or runs one machine's CPU around another's operation) initiates
     * nothing on the other machine, whose CPUs then all count the flush as remote.
     */
    private SimCpu initiator() {
        SimCpu cpu = SimCpu.DRIVEN.get();
        return cpu != null && cpu.id() < cpus.length && cpus[cpu.id()] == cpu ? cpu : null;
    }

    /** nr_tlb_remote_flush: one per flush that reached other CPUs, however many (flush_tlb_multi counts once). */
    private static void countSent(SimCpu initiator, boolean remote) {
        if (remote && initiator != null) {
            initiator.countShootdownSent();
        }
    }
}
