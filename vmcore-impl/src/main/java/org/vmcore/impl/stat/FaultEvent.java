package org.vmcore.impl.stat;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** A page fault handled by an address space. */
@Name("vmcore.Fault")
@Label("Page Fault")
@Category({"vmcore", "Memory"})
@Description("A page fault handled by the simulated kernel")
public final class FaultEvent extends Event {
    @Label("Address Space")
    public int addressSpace;
    @Label("Address")
    public long address;
    @Label("Access")
    public String access;
    @Label("Result")
    public String result;
}
