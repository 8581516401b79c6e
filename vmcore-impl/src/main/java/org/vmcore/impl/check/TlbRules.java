package org.vmcore.impl.check;

import java.util.List;
import org.eclipse.collections.impl.map.mutable.primitive.IntObjectHashMap;
import org.vmcore.api.Cpu;
import org.vmcore.api.TlbEntry;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.cpu.SimCpu;
import org.vmcore.impl.cpu.StaleRules;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.x86.tlb.Tlb;

/**
 * The invariant checker's rules for what CPUs cache: every TLB entry translates as the tables do
 * (no writable entry the tables write-protect), and every paging-structure-cache entry points to
 * the table the tables' entry points to now, each outside an open invalidation and outside a
 * flush the address space is owed.
 */
final class TlbRules {
    private static final String[] PSC_NAMES = {"PML4E", "PDPTE", "PDE"}; // by Tlb.PML4E, PDPTE, PDE

    private final PhysicalMemory memory;
    private final List<SimAddressSpace> spaces;
    private final List<? extends Cpu> cpus;

    TlbRules(PhysicalMemory memory, List<SimAddressSpace> spaces, List<? extends Cpu> cpus) {
        this.memory = memory;
        this.spaces = spaces;
        this.cpus = cpus;
    }

    void checkTlbs(List<String> out) {
        for (Cpu cpu : cpus) {
            int i = cpu.id();
            for (TlbEntry e : cpu.tlbEntries()) {
                SimAddressSpace mm = (SimAddressSpace) e.addressSpace();
                if (mm == null) {
                    out.add("TLB: cpu" + i + " caches 0x" + Long.toHexString(e.address()) + " under PCID " + e.pcid()
                            + ", which no live address space has");
                    continue;
                }
                long now = mm.pageAt(e.address());
                if (mm.notifiers().isInvalidating(e.address())) {
                    continue;
                }
                if (now != e.pfn()) {
                    out.add("TLB: cpu" + i + " translates " + mm + " 0x" + Long.toHexString(e.address()) + " to pfn 0x"
                            + Long.toHexString(e.pfn()) + " but the tables map " + (now < 0 ? "nothing" : "pfn 0x" + Long.toHexString(now)));
                } else if (e.writable() && (mm.permissionsAt(e.address()) & Pte.RW) == 0 && !mm.tlbFlushPending()) {
                    out.add("TLB: cpu" + i + " caches a writable translation of " + mm + " 0x" + Long.toHexString(e.address())
                            + " to pfn 0x" + Long.toHexString(e.pfn()) + " but the tables refuse a store");
                }
            }
        }
    }

    /**
     * Every cached PML4E, PDPTE and PDE of a live address space points to the table the tables'
     * entry points to now, with no permission the tables no longer give, outside an open
     * invalidation of the range it covers and outside a flush the address space is owed.
     */
    void checkPagingStructureCaches(List<String> out) {
        IntObjectHashMap<SimAddressSpace> byPcid = new IntObjectHashMap<>();
        for (SimAddressSpace mm : spaces) {
            if (!mm.isClosed()) {
                byPcid.put(mm.pcid(), mm);
            }
        }
        Walker walker = Nodes.newWalker(memory);
        WalkResult walk = new WalkResult();
        for (Cpu cpu : cpus) {
            if (!(cpu instanceof SimCpu sim)) {
                continue;
            }
            for (int psc = Tlb.PML4E; psc <= Tlb.PDE; psc++) {
                String name = PSC_NAMES[psc];
                for (Tlb.Entry e : sim.pagingStructureEntries(psc, -1)) {
                    SimAddressSpace mm = byPcid.get(e.pcid());
                    String where = "cpu" + cpu.id() + " caches a " + name + " for 0x" + Long.toHexString(e.va());
                    if (mm == null) {
                        out.add("paging-structure cache: " + where + " under PCID " + e.pcid() + ", which no live address space has");
                        continue;
                    }
                    long end = e.va() + (1L << StaleRules.pscShift(psc));
                    if (mm.notifiers().isInvalidating(e.va(), end)) { // a flush owed (fork) changes no upper entry
                        continue;
                    }
                    RawPageTable t = mm.pageTable();
                    walker.translate(t.cr3(), t.mode(), e.va(), walk);
                    long held = StaleRules.pscHeld(walk, psc);
                    if (StaleRules.pscStale(e.value(), held)) {
                        out.add("paging-structure cache: " + where + " of " + mm + " to table 0x" + Long.toHexString(e.pfn())
                                + " (" + bits(e.value()) + ") but the tables hold "
                                + (held == 0 ? "no such entry" : "table 0x" + Long.toHexString(Pte.pfn(held)) + " (" + bits(held) + ")"));
                    }
                }
            }
        }
    }

    /** The RW, USER and NX bits of a paging-structure value, as text. */
    private static String bits(long v) {
        return ((v & Pte.RW) != 0 ? "rw" : "ro") + ((v & Pte.USER) != 0 ? " user" : " supervisor") + ((v & Pte.NX) != 0 ? " nx" : "");
    }
}
