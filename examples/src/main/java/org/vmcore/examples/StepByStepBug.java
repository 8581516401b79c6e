package org.vmcore.examples;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.api.TlbEntry;

/**
 * The lost write of 017b1660, step by step and deterministic, once without the fix and once with
 * it: two processes share a PMD table, both CPUs cache the huge page H, H is migrated, and P2
 * writes right after the copy. Each step prints the page-table entries and TLB entries involved
 * and writes a picture (DOT, and SVG when Graphviz is installed) in which the shared PMD table and
 * the stale TLB entry can be seen.
 *
 * <p>Run: {@code ./run-example StepByStepBug [--out=DIR]}
 */
public final class StepByStepBug {
    private static final long GIB = 1L << 30;
    private static final long H = 6L << 20; // the huge page at offset 6 MiB of the window
    private static final long P1 = 16 * GIB;
    private static final long P2 = 18 * GIB;

    private StepByStepBug() {
    }

    public static void main(String[] args) throws Exception {
        Path out = Path.of("target", "step-by-step");
        for (String arg : args) {
            if (arg.startsWith("--out=")) {
                out = Path.of(arg.substring(6));
            } else {
                System.err.println("StepByStepBug: unknown option " + arg + " (known: --out=DIR)");
                System.exit(2);
            }
        }
        boolean render = Pictures.dotAvailable();
        long lostWithout = run(true, out.resolve("pre-017b1660"), render);
        long lostWith = run(false, out.resolve("fixed"), render);
        System.out.println();
        System.out.printf("lost writes: %d without the fix, %d with it%n", lostWithout, lostWith);
        System.out.println(render ? "pictures: SVG files in " + out.toAbsolutePath()
                : "pictures: DOT files in " + out.toAbsolutePath() + " (install graphviz and run: dot -Tsvg step-1.dot -o step-1.svg)");
    }

    /** Runs the story once; returns the number of lost writes (0 or 1). */
    static long run(boolean regression, Path dir, boolean render) throws Exception {
        Machine.Builder b = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 520)
                .hugePages(1, PageSize.SIZE_2M, 520).detectStaleTranslations(true);
        if (regression) {
            b.enable(Regression.PRE_017B1660);
        }
        System.out.println();
        System.out.println("=== " + (regression ? "WITHOUT the fix (Regression.PRE_017B1660)" : "WITH the fix (today's kernel)"));
        try (Machine machine = b.build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
            AddressSpace p1 = machine.createAddressSpace();
            AddressSpace p2 = machine.createAddressSpace();
            p1.mmap(file, 0, P1, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            p2.mmap(file, 0, P2, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            Cpu cpu1 = machine.cpu(0);
            Cpu cpu2 = machine.cpu(1);
            cpu1.switchTo(p1);
            cpu2.switchTo(p2);
            Story story = new Story(machine, List.of(p1, p2), dir, render);

            cpu1.store(P1 + H, 8, 1);
            cpu2.store(P2 + H + 8, 8, 2);
            long old = file.pageAt(3);
            story.step("P1 and P2 map the file at 1 GiB-aligned addresses and share one PMD table; both CPUs wrote H"
                    + " and cache it; H (pfn 0x" + Long.toHexString(old) + ") has mapcount " + machine.page(old).mapcount());

            List<String> late = new ArrayList<>();
            machine.migration().setObserver(e -> {
                try {
                    if (e.phase() == MigrationPhase.AFTER_UNMAP) {
                        story.step("migration of H to node 1: after try_to_migrate (" + (regression
                                ? "only P1 was flushed; the shared entry now holds a migration entry"
                                : "P1 was unshared and its 1 GiB window flushed; P2, the last sharer, got the migration entry")
                                + ")");
                    } else if (e.phase() == MigrationPhase.AFTER_COPY) {
                        try {
                            cpu2.store(P2 + H + 8, 8, 3);
                            late.add("P2's store of 3 went through its TLB to pfn 0x" + Long.toHexString(e.oldPfn())
                                    + ", the old page, after the copy");
                        } catch (MigrationWaitException w) {
                            late.add("P2's store of 3 met the migration entry and waits for the migration to end");
                        }
                        story.step("after the copy to pfn 0x" + Long.toHexString(e.newPfn()) + ": " + late.getLast());
                    } else if (e.phase() == MigrationPhase.AFTER_REMAP) {
                        story.step("after remove_migration_ptes: the entry points at the new page");
                    }
                } catch (Exception x) {
                    throw new IllegalStateException(x);
                }
            });
            machine.migration().movePages(p1, new long[] {P1 + H}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
            machine.migration().setObserver(null);
            if (!regression) {
                cpu2.store(P2 + H + 8, 8, 3); // the store that waited, retried now
            }
            long fresh = file.pageAt(3);
            long value = machine.readPhysical((fresh << 12) + 8, 8);
            story.step("the migration is over: the new page holds " + value + " where P2 last stored 3");
            System.out.printf("stale-translation detector: %d stale uses%s%n", machine.staleAccessCount(),
                    machine.staleAccesses().isEmpty() ? "" : ", e.g. " + machine.staleAccesses().getFirst());
            return value == 3 ? 0 : 1;
        }
    }

    /** Prints and draws the steps. */
    private static final class Story {
        private final Machine machine;
        private final List<AddressSpace> spaces;
        private final Path dir;
        private final boolean render;
        private int n;

        Story(Machine machine, List<AddressSpace> spaces, Path dir, boolean render) {
            this.machine = machine;
            this.spaces = spaces;
            this.dir = dir;
            this.render = render;
        }

        void step(String what) throws Exception {
            n++;
            System.out.println("step " + n + ": " + what);
            for (AddressSpace mm : spaces) {
                long base = mm == spaces.getFirst() ? P1 : P2;
                long pfn = mm.pageAt(base + H);
                System.out.printf("  %s H at 0x%x -> %s, nr_pmds=%d%n", mm, base + H, pfn < 0 ? "no present entry"
                        : "pfn 0x" + Long.toHexString(pfn), mm.counters().pmdTables());
            }
            for (int i = 0; i < machine.cpuCount(); i++) {
                for (TlbEntry e : machine.cpu(i).tlbEntries()) {
                    long now = e.addressSpace() == null ? -1 : e.addressSpace().pageAt(e.address());
                    System.out.printf("  TLB %s%s%n", e, now == e.pfn() ? "" : "  <-- STALE: the tables map "
                            + (now < 0 ? "nothing" : "pfn 0x" + Long.toHexString(now)));
                }
            }
            String dot = machine.pageTableDot(spaces, 0, 64 * GIB, true);
            Path file = Pictures.write(dir, "step-" + n, dot, render);
            System.out.println("  picture: " + file);
        }
    }
}
