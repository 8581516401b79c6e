package org.vmcore.impl.stat;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** A TLB flush of one address space (flush_tlb_mm_range), with the CPUs it reached. */
@Name("vmcore.TlbFlush")
@Label("TLB Flush")
@Category({"vmcore", "TLB"})
@Description("A TLB flush sent to the CPUs of an address space's cpumask")
public final class TlbFlushEvent extends Event {
    @Label("Address Space")
    public int addressSpace;
    @Label("Start")
    public long start;
    @Label("End")
    public long end;
    @Label("Kind")
    public String kind;
    @Label("CPUs")
    public int cpus;
    @Label("Shootdowns")
    public int shootdowns;
}
