package org.vmcore.impl.picture;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbEntry;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.MigrationEntry;
import org.vmcore.x86.pgtable.Pte;

/**
 * A Graphviz DOT picture of address spaces' page tables over a virtual range: one node per
 * table (a table shared by several address spaces is one node with an edge from each of their
 * PUD entries, filled and labelled with its share count), one node per page, leaf entries as
 * edges from tables to pages, migration entries as dotted edges, and optionally every CPU's
 * cached translations as dashed edges from the CPU to the page, red when stale.
 */
public final class PageTableGraph {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final List<? extends Cpu> cpus;
    private final StringBuilder nodes = new StringBuilder();
    private final StringBuilder edges = new StringBuilder();
    private final Set<String> seen = new LinkedHashSet<>();
    private final Map<Long, String> pages = new LinkedHashMap<>();

    public PageTableGraph(MachineLock lock, PhysicalMemory memory, List<? extends Cpu> cpus) {
        this.lock = lock;
        this.memory = memory;
        this.cpus = cpus;
    }

    /**
     * Machine.pageTableDot: checks what the user asked for (live address spaces of this machine,
     * a non-empty range) and draws it; the caller holds the machine lock.
     */
    public String drawRequested(List<AddressSpace> requested, long start, long end, boolean withTlbs) {
        assert lock.isHeldByCurrentThread();
        if (requested == null || requested.isEmpty()) {
            throw new InvalidArgumentException("addressSpaces", requested, "must name at least one address space");
        }
        if (Long.compareUnsigned(start, end) >= 0) {
            throw new InvalidArgumentException("end", end, "must be above start 0x" + Long.toHexString(start));
        }
        List<SimAddressSpace> chosen = new ArrayList<>();
        for (AddressSpace a : requested) {
            if (!(a instanceof SimAddressSpace mm) || !mm.belongsTo(lock)) {
                throw new InvalidArgumentException("addressSpace", a, "must belong to this machine (in addressSpaces)");
            }
            mm.ensureOpen();
            chosen.add(mm);
        }
        return draw(chosen, start, end, withTlbs);
    }

    /** The picture of {@code spaces} over {@code [start, end)}; the caller holds the machine lock. */
    public String draw(List<SimAddressSpace> spaces, long start, long end, boolean withTlbs) {
        assert lock.isHeldByCurrentThread();
        for (SimAddressSpace mm : spaces) {
            String mmNode = "mm" + mm.id();
            node(mmNode, "shape=box,style=bold,label=\"" + mm + "\\nPCID " + mm.pcid() + "\"");
            RawPageTable t = mm.pageTable();
            long root = t.cr3() >>> 12;
            edge(mmNode, table(root, t.rootLevel()), "CR3", "");
            walk(t, root, t.rootLevel(), 0, start, end);
        }
        if (withTlbs) {
            for (Cpu c : cpus) {
                int i = c.id();
                for (TlbEntry e : c.tlbEntries()) {
                    if (!(e.addressSpace() instanceof SimAddressSpace mm) || !spaces.contains(mm)
                            || Long.compareUnsigned(e.address(), start) < 0 || Long.compareUnsigned(e.address(), end) >= 0) {
                        continue;
                    }
                    String cpu = "cpu" + i;
                    node(cpu, "shape=circle,label=\"cpu" + i + "\"");
                    boolean stale = mm.pageAt(e.address()) != e.pfn();
                    String label = String.format("TLB %s 0x%x%s", mm, e.address(), stale ? " STALE" : "");
                    edge(cpu, page(e.pfn(), e.size()), label, stale ? "style=dashed,color=red,fontcolor=red,penwidth=2"
                            : "style=dashed,color=blue");
                }
            }
        }
        StringBuilder dot = new StringBuilder("digraph pagetables {\n  rankdir=LR;\n  node [fontname=\"monospace\",fontsize=10];\n"
                + "  edge [fontname=\"monospace\",fontsize=9];\n");
        return dot.append(nodes).append(edges).append("}\n").toString();
    }

    private void walk(RawPageTable t, long tablePfn, Level level, long base, long start, long end) {
        long[] entries = t.readTable(tablePfn);
        String from = table(tablePfn, level);
        for (int i = 0; i < Level.ENTRIES; i++) {
            long va = base + ((long) i << level.shift());
            long span = level.entrySpan();
            if (Long.compareUnsigned(va + span, start) <= 0 || Long.compareUnsigned(va, end) >= 0
                    || va >= t.mode().userAddressLimit()) {
                continue;
            }
            long e = entries[i];
            if (Pte.isNone(e)) {
                continue;
            }
            String label = String.format("[%d] 0x%x", i, va);
            if (MigrationEntry.isMigration(e)) {
                PageSize size = level.leafSize();
                edge(from, page(MigrationEntry.pfn(e), size), label + " migration", "style=dotted,color=darkorange");
            } else if (level == Level.PTE || (Pte.isPresent(e) && Pte.isLeaf(e, level))) {
                PageSize size = level.leafSize();
                edge(from, page(Pte.pfn(e, size), size), label + ((e & Pte.RW) != 0 ? " rw" : " ro"), "");
            } else if (Pte.isPresent(e)) {
                long child = Pte.pfn(e);
                String to = table(child, level.below());
                edge(from, to, label, "");
                if (seen.add("walked " + child)) {
                    walk(t, child, level.below(), va, start, end);
                }
            }
        }
    }

    private String table(long pfn, Level level) {
        String name = "t" + Long.toHexString(pfn);
        int shares = memory.descriptors().ptShareCount(pfn);
        String style = shares > 0 ? ",style=filled,fillcolor=gold" : "";
        node(name, "shape=box" + style + ",label=\"" + level + " table\\npfn 0x" + Long.toHexString(pfn)
                + (shares > 0 ? "\\nshared by " + (shares + 1) + " address spaces" : "") + "\"");
        return name;
    }

    private String page(long pfn, PageSize size) {
        return pages.computeIfAbsent(pfn, p -> {
            String name = "p" + Long.toHexString(p);
            var d = memory.descriptors();
            node(name, "shape=ellipse,label=\"" + size.label() + " page pfn 0x" + Long.toHexString(p) + "\\nnode "
                    + memory.nodeOf(p) + ", mapcount " + d.mapcount(p) + "\"");
            return name;
        });
    }

    private void node(String name, String attributes) {
        if (seen.add(name)) {
            nodes.append("  ").append(name).append(" [").append(attributes).append("];\n");
        }
    }

    private void edge(String from, String to, String label, String attributes) {
        edges.append("  ").append(from).append(" -> ").append(to).append(" [label=\"").append(label).append('"')
                .append(attributes.isEmpty() ? "" : "," + attributes).append("];\n");
    }
}
