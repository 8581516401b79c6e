package org.vmcore.impl;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;

/** Shared helpers of the vmcore-impl tests. */
public final class Fixtures {
    public static final long KIB = 1L << 10;
    public static final long MIB = 1L << 20;
    public static final long GIB = 1L << 30;

    private Fixtures() {
    }

    /** Writes 8 bytes at va through the page tables, as a store by a CPU would land. */
    public static void poke(Machine machine, AddressSpace mm, long va, long value) {
        long pa = mm.translate(va);
        if (pa < 0) {
            throw new AssertionError("0x" + Long.toHexString(va) + " is not mapped in " + mm);
        }
        ((SimMachine) machine).memory().contents().write(pa, 8, value);
    }

    /** Reads 8 bytes at va through the page tables. */
    public static long peek(Machine machine, AddressSpace mm, long va) {
        long pa = mm.translate(va);
        if (pa < 0) {
            throw new AssertionError("0x" + Long.toHexString(va) + " is not mapped in " + mm);
        }
        return ((SimMachine) machine).memory().contents().read(pa, 8);
    }

    /** A snapshot of everything a failed call must leave unchanged. */
    public static String state(Machine machine) {
        StringBuilder sb = new StringBuilder();
        sb.append("free=").append(machine.freeFrames()).append('\n');
        for (AddressSpace mm : machine.addressSpaces()) {
            sb.append(mm).append(' ').append(mm.counters()).append('\n');
            mm.vmas().forEach(v -> sb.append("  ").append(v).append('\n'));
            sb.append(mm.dumpPageTables());
        }
        for (var f : machine.hugetlbfs().files()) {
            sb.append(f).append(" cached=").append(f.cachedPages()).append('\n');
        }
        for (int node = 0; node < machine.config().nodeBytes().size(); node++) {
            sb.append(machine.hugetlbfs().pool(node, org.vmcore.api.PageSize.SIZE_2M)).append('\n');
            sb.append(machine.hugetlbfs().pool(node, org.vmcore.api.PageSize.SIZE_1G)).append('\n');
        }
        return sb.toString();
    }
}
