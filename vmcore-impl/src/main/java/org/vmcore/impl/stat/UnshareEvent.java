package org.vmcore.impl.stat;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** huge_pmd_unshare of one address space's PUD window. */
@Name("vmcore.PmdUnshare")
@Label("PMD Unshare")
@Category({"vmcore", "Memory"})
@Description("An address space stopped sharing a hugetlb PMD table")
public final class UnshareEvent extends Event {
    @Label("Address Space")
    public int addressSpace;
    @Label("Window")
    public long window;
    @Label("Table PFN")
    public long tablePfn;
    @Label("Sharers Left")
    public int sharersLeft;
}
