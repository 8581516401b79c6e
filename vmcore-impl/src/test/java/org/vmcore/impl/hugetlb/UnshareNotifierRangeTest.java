package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.eclipse.collections.impl.map.mutable.primitive.LongLongHashMap;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Machine;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.api.StaleAccess;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.Fixtures.SharedWindow;

/**
 * dff11abe280b: truncating one huge page of a file whose PMD table two address spaces share
 * unshares the whole 1 GiB window of the first address space the truncation visits, so its
 * secondary MMUs must hear of the whole window. A shadow table in the style of KVM forgets
 * translations only in invalidateRangeStart; with {@link Regression#PRE_DFF11ABE} it is told of
 * the truncated 2 MiB only and keeps using translations its address space no longer has.
 */
class UnshareNotifierRangeTest {
    private static final long A = GIB;
    private static final long B = 3 * GIB;
    private static final long LAST = GIB - 2 * MIB; // the huge page the truncation removes

    /** A secondary MMU with its own copy of the translations of 2 MiB pages, checked on every use. */
    static final class Shadow implements MmuNotifier {
        final List<String> starts = new ArrayList<>();
        private final Machine machine;
        private final AddressSpace mm;
        private final String name;
        private final boolean atsStyle;
        private final LongLongHashMap cache = new LongLongHashMap(); // 2 MiB virtual page -> physical address
        long staleUses;

        Shadow(Machine machine, AddressSpace mm, String name, boolean atsStyle) {
            this.machine = machine;
            this.mm = mm;
            this.name = name;
            this.atsStyle = atsStyle;
            mm.registerNotifier(this);
        }

        /** Writes 8 bytes at va through the shadow translation (refilled by a fault on a miss). */
        void write(long va, long value) {
            long page = va & -(2 * MIB);
            long pa = cache.getIfAbsent(page, -1);
            if (pa >= 0 && !machine.checkTranslation(name, mm, page, pa >>> 12, true)) {
                staleUses++;
            }
            if (pa < 0) {
                mm.fault(page, Access.WRITE);
                pa = mm.translate(page);
                cache.put(page, pa);
            }
            machine.writePhysical(pa + (va - page), 8, value);
        }

        @Override
        public void invalidateRangeStart(NotifierRange range) {
            starts.add(String.format("%s [%x,%x)", range.event(), range.start(), range.end()));
            drop(range.start(), range.end());
        }

        @Override
        public void invalidateSecondaryTlbs(AddressSpace addressSpace, long start, long end) {
            if (atsStyle) { // an IOMMU's device TLB is flushed with the CPU TLBs; a KVM shadow table is not
                drop(start, end);
            }
        }

        private void drop(long start, long end) {
            cache.keySet().removeIf(page -> page >= start && page < end);
        }
    }

    private record Run(Shadow kvm, Shadow ats, List<StaleAccess> stale, AddressSpace a, AddressSpace b, long[] pfns) {
    }

    /** a and b share the window; a's two secondary MMUs cache pages 0, 1, 2 and the last; the file loses its last page. */
    private static Run truncateLastPage(Machine machine) {
        SharedWindow w = Fixtures.sharedWindow(machine, A, B, true);
        w.b().fault(B, Access.READ); // b shares a's PMD table
        Shadow kvm = new Shadow(machine, w.a(), "kvm-a", false);
        Shadow ats = new Shadow(machine, w.a(), "ats-a", true);
        long[] pages = {0, 2 * MIB, 4 * MIB, LAST};
        for (long off : pages) {
            kvm.write(A + off, 1);
            ats.write(A + off + 8, 1);
        }
        long[] pfns = {w.a().pageAt(A), w.a().pageAt(A + 2 * MIB), w.a().pageAt(A + 4 * MIB)};
        w.file().truncate(GIB - 2 * MIB);
        for (int i = 0; i < 3; i++) {
            kvm.write(A + pages[i], 2);
        }
        for (int i = 0; i < 3; i++) { // a miss faults, and a fault shares b's table again: a maps the window anew
            ats.write(A + pages[i] + 8, 2);
        }
        return new Run(kvm, ats, machine.staleAccesses(), w.a(), w.b(), pfns);
    }

    private static Machine.Builder machine() {
        return Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 600).detectStaleTranslations(true);
    }

    @Test
    void todaysKernelTellsTheSecondaryMmusOfTheWholeUnsharedWindow() {
        try (Machine machine = machine().build()) {
            Run run = truncateLastPage(machine);
            assertThat(run.kvm().starts).containsExactly("UNMAP [40000000,80000000)");
            assertThat(run.kvm().staleUses).isZero();
            assertThat(run.ats().staleUses).isZero();
            assertThat(run.stale()).isEmpty();
            for (int i = 0; i < 3; i++) { // refilled after a fault that shared b's table again
                assertThat(run.a().pageAt(A + 2 * MIB * i)).isEqualTo(run.pfns()[i]);
            }
        }
    }

    @Test
    void beforeDff11abeAKvmShadowKeepsTheRestOfTheWindow() {
        try (Machine machine = machine().enable(Regression.PRE_DFF11ABE).build()) {
            Run run = truncateLastPage(machine);
            assertThat(run.kvm().starts).containsExactly("UNMAP [7fe00000,80000000)");
            assertThat(run.kvm().staleUses).isEqualTo(3);
            assertThat(run.stale()).hasSize(3).allSatisfy(s -> {
                assertThat(s.who()).isEqualTo("kvm-a");
                assertThat(s.addressSpace()).isEqualTo(run.a());
                assertThat(s.write()).isTrue();
                assertThat(s.currentPfn()).as("a maps nothing there any more").isEqualTo(-1);
            });
            assertThat(run.stale()).extracting(StaleAccess::cachedPfn).containsExactly(run.pfns()[0], run.pfns()[1], run.pfns()[2]);
            assertThat(run.ats().staleUses).as("the window's TLB flush (a4a118f2eead) reached the device TLB").isZero();
        }
    }

    /** The mprotect half of the fix shows nothing today: the VMA split unshares the window first (hugetlb_split). */
    @Test
    void mprotectInsideTheWindowIsTheSameWithAndWithoutTheSwitch() {
        List<List<String>> starts = new ArrayList<>();
        for (boolean regression : new boolean[] {false, true}) {
            Machine.Builder b = machine();
            if (regression) {
                b.enable(Regression.PRE_DFF11ABE);
            }
            try (Machine machine = b.build()) {
                SharedWindow w = Fixtures.sharedWindow(machine, A, B, true);
                w.b().fault(B, Access.READ);
                Shadow kvm = new Shadow(machine, w.a(), "kvm-a", false);
                kvm.write(A, 1);
                w.a().mprotect(A + 4 * MIB, 2 * MIB, Protection.READ);
                kvm.write(A, 2);
                assertThat(kvm.staleUses).isZero();
                assertThat(machine.staleAccesses()).isEmpty();
                starts.add(kvm.starts);
            }
        }
        assertThat(starts.get(1)).isEqualTo(starts.get(0)).contains("CLEAR [40000000,80000000)");
    }
}
