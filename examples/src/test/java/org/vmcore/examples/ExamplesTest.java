package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** Every example runs, small and bounded, and its report says what it should. */
class ExamplesTest {
    private interface Body {
        void run() throws Exception;
    }

    private static String capture(Body body) throws Exception {
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        PrintStream old = System.out;
        System.setOut(new PrintStream(bytes, true, StandardCharsets.UTF_8));
        try {
            body.run();
        } finally {
            System.setOut(old);
        }
        return bytes.toString(StandardCharsets.UTF_8);
    }

    private static String lastLine(String report) {
        String[] lines = report.strip().split("\\R");
        return lines[lines.length - 1];
    }

    @Test
    void quickstartStoresAndLoads() throws Exception {
        String report = capture(() -> Quickstart.main(new String[0]));
        assertThat(report).contains("load gives 42").containsPattern("translates to physical 0x[0-9a-f]+ on node 0")
                .contains("anonPages=1");
    }

    @Test
    void forkCowShowsEachProcessItsOwnValue() throws Exception {
        String report = capture(() -> ForkCow.main(new String[0]));
        assertThat(report).contains("mm1 reads 3", "mm2 reads 2", "mm4 reads 4");
        assertThat(report).contains("after three forks").containsPattern("mapcount 4 mapped by \\[mm1@.*mm2@.*mm3@.*mm4@");
    }

    @Test
    void swapThrashPaysMajorFaultsOnlyAboveTheLimit() throws Exception {
        SwapThrash.Result[] r = new SwapThrash.Result[3];
        String report = capture(() -> {
            r[0] = SwapThrash.run(192, 256, 3, false);
            r[1] = SwapThrash.run(320, 256, 3, false);
            r[2] = SwapThrash.run(320, 256, 3, true);
        });
        assertThat(r[0].majorFaults()).as("the working set fits").isZero();
        assertThat(r[0].pswpout()).isZero();
        assertThat(r[1].majorFaults()).as("every sweep swaps in").isGreaterThan(2 * 64);
        assertThat(r[1].pswpin()).isEqualTo(r[1].majorFaults());
        assertThat(r[1].cycles()).isGreaterThan(r[0].cycles() + r[1].majorFaults() * 30_000);
        assertThat(r[2].majorFaults()).as("the cold half goes first, the hot half stays").isLessThan(r[1].majorFaults() / 2);
        assertThat(report).contains("320 pages, limit 256, 3 sweeps: RSS").contains("MADV_COLD");
        assertThat(capture(() -> SwapThrash.main(new String[0]))).contains("192 pages, limit 256, 3 sweeps: RSS 192, VmSwap 0");
    }

    @Test
    void numaTieringMovesTheHotSetToTheFastNode() throws Exception {
        double[] share = new double[1];
        String report = capture(() -> share[0] = NumaTiering.run(4, 3));
        assertThat(share[0]).as("share of accesses on the fast node in the last epoch").isGreaterThan(0.8);
        assertThat(report).contains("summary:").containsPattern("[1-9]\\d* pages promoted");
    }

    @Test
    void stepByStepBugShowsTheSharedTableAndTheStaleTlbEntry(@TempDir Path dir) throws Exception {
        long[] lost = new long[2];
        String report = capture(() -> {
            lost[0] = StepByStepBug.run(true, dir.resolve("pre"), false);
            lost[1] = StepByStepBug.run(false, dir.resolve("fixed"), false);
        });
        assertThat(lost).containsExactly(1, 0);
        assertThat(report).contains("<-- STALE").contains("met the migration entry and waits");
        for (int step = 1; step <= 5; step++) {
            assertThat(dir.resolve("pre").resolve("step-" + step + ".dot")).exists();
            assertThat(dir.resolve("fixed").resolve("step-" + step + ".dot")).exists();
        }
        String first = Files.readString(dir.resolve("pre").resolve("step-1.dot"));
        assertThat(first).contains("shared by 2 address spaces");
        String afterRemap = Files.readString(dir.resolve("pre").resolve("step-4.dot"));
        assertThat(afterRemap).contains("STALE").contains("color=red");
        assertThat(Files.readString(dir.resolve("fixed").resolve("step-5.dot"))).doesNotContain("STALE");
    }

    @Test
    void unshareNotifierShowsTheShadowTableKeepingTheWindow() throws Exception {
        long[] stale = new long[2];
        String report = capture(() -> {
            stale[0] = UnshareNotifier.run(true);
            stale[1] = UnshareNotifier.run(false);
        });
        assertThat(stale).containsExactly(3, 0);
        assertThat(report).contains("start UNMAP [0x43fe00000, 0x440000000)", "start UNMAP [0x400000000, 0x440000000)")
                .contains("translate(P1) = -1").contains("kvm-shadow: 3 hits, 3 misses, 3 stale uses")
                .contains("kvm-shadow: 0 hits, 6 misses, 0 stale uses").contains("iommu: 0 hits, 6 misses, 0 stale uses");
        assertThat(capture(() -> UnshareNotifier.main(new String[0])))
                .contains("stale uses by the shadow table: 3 without the fix, 0 with it");
    }

    @Test
    void unshareFlushShowsAStaleTlbStoreInAnotherFilesPage() throws Exception {
        long[] stale = new long[2];
        String report = capture(() -> {
            stale[0] = UnshareFlush.run(true);
            stale[1] = UnshareFlush.run(false);
        });
        assertThat(stale).containsExactly(3, 0);
        assertThat(report).contains("cpu0 still caches 3 of P1's three pages", "cpu0 still caches 0 of P1's three pages")
                .contains("512 huge pages free").contains("values P3 never wrote: 3", "values P3 never wrote: 0")
                .contains("P3 reads 0xbadcafe in its page").contains("SIGBUS (BEYOND_EOF)");
        assertThat(capture(() -> UnshareFlush.main(new String[0])))
                .contains("stale uses by P1's CPU: 3 without the fix, 0 with it");
    }

    @Test
    void shareCountShowsTheLastUsersTableLeakingWithoutTheFix() throws Exception {
        long[] leaked = new long[2];
        String report = capture(() -> {
            leaked[0] = ShareCount.run(true);
            leaked[1] = ShareCount.run(false);
        });
        assertThat(leaked).containsExactly(4, 0);
        assertThat(report).contains("share count: PMD table pfn").contains("leaked page table: ")
                .contains("huge page 0 has mapcount 1").contains("huge page 0 has mapcount 0").contains("invariant checker: clean");
        assertThat(capture(() -> ShareCount.main(new String[0])))
                .contains("huge pages never freed: 4 without the fix, 0 with it");
    }

    @Test
    void faultUnshareRaceShowsTheFaultWritingThroughTheFreedTable() throws Exception {
        String pre = capture(() -> FaultUnshareRace.main(new String[] {"--regression=pre-c0d0381a"}));
        assertThat(lastLine(pre)).isEqualTo("mode=pre-c0d0381a violations=1");
        assertThat(pre).contains("nothing held it back").contains("A's fault returned NEW_PAGE; A's translate(va) = -1")
                .containsPattern("page cache: unmapped cached pfn 0x[0-9a-f]+ has mapcount 1");
        String fixed = capture(() -> FaultUnshareRace.main(new String[] {"--regression=none"}));
        assertThat(lastLine(fixed)).isEqualTo("mode=fixed violations=0");
        assertThat(fixed).contains("the truncate thread is WAITING").contains("invariant checker: clean");
    }

    @Test
    void gupFastRaceShowsAPinOnAnotherProcesssPage() throws Exception {
        String pre = capture(() -> GupFastRace.main(new String[] {"--regression=pre-1013af4f"}));
        assertThat(lastLine(pre)).isEqualTo("mode=pre-1013af4f leaked=true");
        assertThat(pre).contains("the munmap returned at once").contains("its entry now points to a PTE table of B's")
                .contains("(B's private anonymous page); the driver reads 0x5ec2e75ec2e7 through it: B's secret");
        String fixed = capture(() -> GupFastRace.main(new String[] {"--regression=none"}));
        assertThat(lastLine(fixed)).isEqualTo("mode=fixed leaked=false");
        assertThat(fixed).contains("the munmap thread is WAITING").contains("(A's file page 3); the driver reads 0xa11ceda7a");
    }

    @Test
    void thpTlbReachPrintsBothRunsAndTheRatios() throws Exception {
        String report = capture(() -> ThpTlbReach.main(new String[] {"--mib=16", "--accesses=20000", "--seed=3"}));
        assertThat(report).contains("16 MiB private anonymous, thp=madvise").containsPattern("MADV_HUGEPAGE +24096 .* 8 +16384 kB")
                .containsPattern("MADV_NOHUGEPAGE +24096 .* 4096 +0 kB");
        assertThat(lastLine(report)).startsWith("HUGEPAGE / NOHUGEPAGE: TLB misses 0.").endsWith("(thp_fault_alloc 8)");
    }
}
