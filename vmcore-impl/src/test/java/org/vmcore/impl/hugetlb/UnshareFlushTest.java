package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.StaleAccess;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.Fixtures.SharedWindow;

/**
 * a4a118f2eead (CVE-2021-4002): truncating a hugetlbfs file whose PMD table two address spaces
 * share unshares the whole 1 GiB window of the first address space the truncation visits; its
 * CPUs must forget every translation of that window, though the truncation cleared none of its
 * entries. With {@link Regression#PRE_A4A118F2} the flush covers only what was cleared (here
 * nothing), so a CPU of that address space keeps its 2 MiB TLB entries; truncating to 0 frees
 * the pages, another file takes them, and a store through a stale entry lands in the other
 * file's page.
 */
class UnshareFlushTest {
    private static final long A = GIB;
    private static final long B = 3 * GIB;
    private static final long C = 5 * GIB;
    private static final long HUGE = 2 * MIB;
    private static final long MARK = 0x0bad_cafeL;

    /** What a run saw: a's frames before, the stale uses, and where a's last store ended up. */
    private record Run(long[] pfns, List<StaleAccess> stale, boolean tlbKeptWindow, AddressSpace a, AddressSpace other,
                       Cpu cpu1, long[] otherPfns) {
    }

    private static Machine.Builder machine() {
        // 512 huge pages: exactly the file, so the second file can only get the freed ones
        return Machine.builder().node(4 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 512).detectStaleTranslations(true);
    }

    /**
     * a and b share the window; cpu0 runs a and stores to huge pages 0, 1, 2; the file loses its
     * last page (a is unshared), then everything; a second file, mapped populated by a third
     * address space, takes all 512 freed pages.
     */
    private static Run truncateAndReuse(Machine machine) {
        SharedWindow w = Fixtures.sharedWindow(machine, A, B, true);
        w.b().fault(B, Access.READ); // b's PUD entry now points at a's PMD table
        Cpu cpu0 = machine.cpu(0);
        cpu0.switchTo(w.a());
        long[] pfns = new long[3];
        for (int i = 0; i < 3; i++) {
            cpu0.store(A + i * HUGE, 8, 1 + i);
            pfns[i] = w.a().pageAt(A + i * HUGE);
        }
        w.file().truncate(GIB - HUGE);
        assertThat(w.a().translate(A)).as("a is unshared: it maps nothing in the window").isEqualTo(-1);
        assertThat(w.b().pageAt(B)).as("b keeps the table and page 0").isEqualTo(pfns[0]);
        boolean kept = cpu0.tlbHolds(w.a(), A) && cpu0.tlbHolds(w.a(), A + HUGE) && cpu0.tlbHolds(w.a(), A + 2 * HUGE);
        w.file().truncate(0);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).as("every page back in the pool").isEqualTo(512);

        HugetlbFile second = machine.hugetlbfs().create("other", GIB, PageSize.SIZE_2M);
        AddressSpace other = machine.createAddressSpace();
        other.mmap(second, 0, C, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        long[] otherPfns = new long[512];
        for (int i = 0; i < 512; i++) {
            otherPfns[i] = other.pageAt(C + i * HUGE);
        }
        Cpu cpu1 = machine.cpu(1);
        cpu1.switchTo(other);
        return new Run(pfns, machine.staleAccesses(), kept, w.a(), other, cpu1, otherPfns);
    }

    private static int indexOf(long[] pfns, long pfn) {
        for (int i = 0; i < pfns.length; i++) {
            if (pfns[i] == pfn) {
                return i;
            }
        }
        return -1;
    }

    @Test
    void todaysKernelFlushesTheWholeUnsharedWindowSoTheStoreFaults() {
        try (Machine machine = machine().build()) {
            Run run = truncateAndReuse(machine);
            assertThat(run.tlbKeptWindow()).isFalse();
            assertThatThrownBy(() -> machine.cpu(0).store(A, 8, MARK)).isInstanceOfSatisfying(SegmentationFaultException.class,
                    e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.BEYOND_EOF));
            for (int i = 0; i < 512; i++) {
                assertThat(run.cpu1().load(C + i * HUGE, 8)).isZero();
            }
            assertThat(machine.staleAccesses()).isEmpty();
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Test
    void beforeA4a118f2AStaleTlbEntryWritesIntoAnotherFilesPage() {
        try (Machine machine = machine().enable(Regression.PRE_A4A118F2).build()) {
            Run run = truncateAndReuse(machine);
            assertThat(run.tlbKeptWindow()).as("the truncation cleared none of a's entries, so it flushed none").isTrue();
            assertThat(run.stale()).as("no use yet").isEmpty();
            assertThat(machine.checkInvariants()).as("the TLB rule sees the entries the tables no longer hold").isNotEmpty();

            machine.cpu(0).store(A, 8, MARK); // a's CPU, through its stale TLB entry
            int k = indexOf(run.otherPfns(), run.pfns()[0]);
            assertThat(k).as("the second file owns a's old page 0").isNotNegative();
            assertThat(run.cpu1().load(C + k * HUGE, 8)).as("the new owner reads a value it never wrote").isEqualTo(MARK);
            assertThat(machine.staleAccesses()).singleElement().satisfies(s -> {
                assertThat(s.who()).isEqualTo("cpu0");
                assertThat(s.addressSpace()).isEqualTo(run.a());
                assertThat(s.write()).isTrue();
                assertThat(s.kind()).isEqualTo(StaleAccess.Kind.FRAME);
                assertThat(s.cachedPfn()).isEqualTo(run.pfns()[0]);
                assertThat(s.currentPfn()).isEqualTo(-1);
            });
        }
    }

    /** A secondary MMU's record of the notifier ranges and secondary-TLB flushes of a. */
    private static final class Recorder implements MmuNotifier {
        final List<String> calls = new ArrayList<>();

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            calls.add(String.format("start %x-%x", range.start(), range.end()));
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
            calls.add(String.format("flush %x-%x", start, end));
        }
    }

    private static List<String> callsOnTruncate(Regression... regressions) {
        Machine.Builder b = machine();
        for (Regression r : regressions) {
            b.enable(r);
        }
        try (Machine machine = b.build()) {
            SharedWindow w = Fixtures.sharedWindow(machine, A, B, true);
            w.b().fault(B, Access.READ);
            Recorder rec = new Recorder();
            w.a().registerNotifier(rec);
            w.file().truncate(GIB - HUGE);
            return rec.calls;
        }
    }

    /** The switch narrows the flush only; the notifier range is dff11abe280b's, and both switches combine. */
    @Test
    void theSwitchLeavesTheNotifierRangeToPreDff11abe() {
        assertThat(callsOnTruncate()).containsExactly("start 40000000-80000000", "flush 40000000-80000000");
        assertThat(callsOnTruncate(Regression.PRE_A4A118F2)).containsExactly("start 40000000-80000000");
        assertThat(callsOnTruncate(Regression.PRE_DFF11ABE)).containsExactly("start 7fe00000-80000000", "flush 40000000-80000000");
        assertThat(callsOnTruncate(Regression.PRE_A4A118F2, Regression.PRE_DFF11ABE)).containsExactly("start 7fe00000-80000000");
    }
}
