package org.vmcore.impl;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
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

    /** Any number of sharers of one 1 GiB hugetlbfs file of 2 MiB pages, in the order of their bases. */
    public record Sharers(HugetlbFile file, List<AddressSpace> mms) {
    }

    /** A hugetlbfs file mapped whole, MAP_SHARED | MAP_POPULATE, at va: every page is in its page cache. */
    public record PopulatedFile(HugetlbFile file, long va) {
    }

    /**
     * The setup of PMD sharing: a file "shm" of 1 GiB in 2 MiB pages, mapped read-write,
     * MAP_SHARED | MAP_FIXED, by a new address space a at aBase and a new address space b at
     * bBase (both PUD-aligned, so b can share a's PMD table). With populateA, a maps it with
     * MAP_POPULATE and so holds the PMD table and all 512 pages; b has faulted nothing.
     */
    public static SharedWindow sharedWindow(Machine machine, long aBase, long bBase, boolean populateA) {
        Sharers s = sharers(machine, populateA, aBase, bBase);
        return new SharedWindow(s.file(), s.mms().get(0), s.mms().get(1));
    }

    /**
     * As {@link #sharedWindow}, with one new address space per base: each maps the whole 1 GiB
     * file "shm" read-write, MAP_SHARED | MAP_FIXED, at its (PUD-aligned) base. With
     * populateFirst, the first maps it with MAP_POPULATE and so holds the PMD table and all 512
     * pages; the others have faulted nothing.
     */
    public static Sharers sharers(Machine machine, boolean populateFirst, long... bases) {
        HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        List<AddressSpace> mms = new ArrayList<>();
        int shared = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
        for (long base : bases) {
            AddressSpace mm = machine.createAddressSpace();
            boolean populate = populateFirst && mms.isEmpty();
            mm.mmap(file, 0, base, GIB, Protection.READ_WRITE, populate ? shared | MapFlags.MAP_POPULATE : shared);
            mms.add(mm);
        }
        return new Sharers(file, List.copyOf(mms));
    }

    /** The PUD-aligned bases first, first + 2 GiB, first + 4 GiB, ... of n sharers, one window apart. */
    public static long[] windowBases(long first, int n) {
        long[] bases = new long[n];
        for (int i = 0; i < n; i++) {
            bases[i] = first + 2 * i * GIB;
        }
        return bases;
    }

    /**
     * A new hugetlbfs file "name" of size bytes in 2 MiB pages, mapped whole by mm read-write,
     * MAP_SHARED | MAP_POPULATE, where the kernel chooses: the file's page cache holds every page.
     */
    public static PopulatedFile populatedFile(Machine machine, AddressSpace mm, String name, long size) {
        HugetlbFile file = machine.hugetlbfs().create(name, size, PageSize.SIZE_2M);
        long va = mm.mmap(file, 0, 0, size, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_POPULATE);
        return new PopulatedFile(file, va);
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

    /**
     * Closes a machine a test used after checking it: no invariant broken, no stale translation
     * used, and after the close no off-heap memory left.
     */
    public static void closeChecked(Machine machine) {
        org.assertj.core.api.Assertions.assertThat(machine.checkInvariants()).isEmpty();
        org.assertj.core.api.Assertions.assertThat(machine.staleAccessCount()).isZero();
        machine.close();
        org.assertj.core.api.Assertions.assertThat(machine.offHeapBytes()).isZero();
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

    /**
     * The lines of a recorded kernel output (test resource {@code /kernel-parity/<name>}), trimmed,
     * without its '#' comments and blank lines.
     */
    public static List<String> kernelOutput(String name) {
        List<String> lines = new ArrayList<>();
        try (InputStream in = Fixtures.class.getResourceAsStream("/kernel-parity/" + name)) {
            if (in == null) {
                throw new IllegalStateException("no recorded kernel output /kernel-parity/" + name);
            }
            BufferedReader r = new BufferedReader(new InputStreamReader(in, StandardCharsets.UTF_8));
            for (String line = r.readLine(); line != null; line = r.readLine()) {
                if (!line.startsWith("#") && !line.isBlank()) {
                    lines.add(line.trim());
                }
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        return lines;
    }
}
