package org.vmcore.impl.stat;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** An MMU-notifier invalidation, from its start to its end. */
@Name("vmcore.MmuNotifier")
@Label("MMU Notifier Invalidation")
@Category({"vmcore", "Notifier"})
@Description("invalidate_range_start to invalidate_range_end of one address space")
public final class NotifierEvent extends Event {
    @Label("Address Space")
    public int addressSpace;
    @Label("Start")
    public long start;
    @Label("End")
    public long end;
    @Label("Event")
    public String event;
}
