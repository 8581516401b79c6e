package org.vmcore.impl.stat;

import jdk.jfr.Category;
import jdk.jfr.Description;
import jdk.jfr.Event;
import jdk.jfr.Label;
import jdk.jfr.Name;

/** One phase of one page's migration: unmap, copy, remap, from its start to its end. */
@Name("vmcore.MigrationPhase")
@Label("Migration Phase")
@Category({"vmcore", "Migration"})
@Description("unmap (try_to_migrate), copy, or remap (remove_migration_ptes) of one page")
public final class MigrationPhaseEvent extends Event {
    @Label("Phase")
    public String phase;
    @Label("Old PFN")
    public long oldPfn;
    @Label("New PFN")
    public long newPfn;
    @Label("Page Size")
    public long size;
}
