package org.vmcore.impl.tlb;

import org.vmcore.impl.base.Initiator;
import org.vmcore.impl.vma.MmStruct;

/**
 * The receiving end of a TLB shootdown: what {@link TlbShootdown} may ask of one CPU. The CPU
 * implements it; the shootdown needs nothing else of the CPU, so it does not depend on the
 * access path.
 */
public interface FlushTarget extends Initiator {

    /** Runs {@code flush} on this CPU's TLB once no access is in progress (the IPI handshake). */
    void runFlush(Runnable flush);

    /** Drops the translations of [start, end) of {@code pcid}; counted as a page or a range flush. */
    void flushPages(int pcid, long start, long end, int strideShift, boolean single);

    /** Drops every translation of {@code pcid}; a CPU running {@code exiting} (if not null) leaves it. */
    void flushPcid(int pcid, MmStruct exiting);

    /** Drops every translation of every PCID. */
    void flushEverything();

    /** A flush this CPU initiated reached {@code targets} other CPUs (nr_tlb_remote_flush counts it once). */
    void countShootdownSent(int targets);

    void countShootdownReceived();

    /** nr_tlb_local_flush_all ({@code all}) or nr_tlb_local_flush_one, of {@code pages} pages. */
    void countLocalFlush(boolean all, long pages);
}
