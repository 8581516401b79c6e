package org.vmcore.impl;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/** Shared helpers of the vmcore-impl tests. */
public final class Fixtures {
    public static final long KIB = 1L << 10;
    public static final long MIB = 1L << 20;
    public static final long GIB = 1L << 30;

    private Fixtures() {
    }

    /** Two sharers of one 1 GiB hugetlbfs file of 2 MiB pages, each mapping all of it MAP_SHARED. */
    public record SharedWindow(HugetlbFile file, AddressSpace a, AddressSpace b) {
    }

    /**
     * The setup of PMD sharing: a file "shm" of 1 GiB in 2 MiB pages, mapped read-write,
     * MAP_SHARED | MAP_FIXED, by a new address space a at aBase and a new address space b at
     * bBase (both PUD-aligned, so b can share a's PMD table). With populateA, a maps it with
     * MAP_POPULATE and so holds the PMD table and all 512 pages; b has faulted nothing.
     */
    public static SharedWindow sharedWindow(Machine machine, long aBase, long bBase, boolean populateA) {
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
        a.mmap(file, 0, aBase, GIB, Protection.READ_WRITE, populateA ? shared | MapFlags.MAP_POPULATE : shared);
        b.mmap(file, 0, bBase, GIB, Protection.READ_WRITE, shared);
        return new SharedWindow(file, a, b);
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
            sb.append(machine.hugetlbfs().pool(node, PageSize.SIZE_2M)).append('\n');
            sb.append(machine.hugetlbfs().pool(node, PageSize.SIZE_1G)).append('\n');
        }
        return sb.toString();
    }
}
