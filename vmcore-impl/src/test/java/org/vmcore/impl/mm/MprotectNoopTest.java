package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.Protection;
import org.vmcore.api.TlbStats;
import org.assertj.core.groups.Tuple;

/** mprotect_fixup returns early when a VMA already has the new flags. */
class MprotectNoopTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    @Test
    @DisplayName("mprotect with the protection the VMA has: no split, no notifier call, no flush (mprotect_fixup, newflags == oldflags)")
    void sameProtectionIsANoop() {
        Machine machine = Machine.builder().checkInvariantsAfterEveryOperation(true).build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON);
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        cpu.store(VA + 4096, 8, 7);
        List<String> calls = new ArrayList<>();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                calls.add("start " + range);
            }

            @Override
            public void invalidateSecondaryTlbs(AddressSpace a, long start, long end) {
                calls.add("secondary");
            }
        });
        TlbStats before = cpu.stats();
        int vmas = mm.vmas().size();

        mm.mprotect(VA + 4096, 2 * 4096, Protection.READ_WRITE);

        assertThat(calls).isEmpty();
        assertThat(mm.vmas()).hasSize(vmas);
        TlbStats after = cpu.stats();
        assertThat(after.pageFlushes() + after.rangeFlushes() + after.mmFlushes() + after.fullFlushes())
                .as("no flush").isEqualTo(before.pageFlushes() + before.rangeFlushes() + before.mmFlushes() + before.fullFlushes());
        assertThat(cpu.tlbHolds(mm, VA + 4096)).as("the translation stays cached").isTrue();
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("of two VMAs only the one whose protection changes is split and notified")
    void onlyTheChangingVmaIsTouched() {
        Machine machine = Machine.builder().checkInvariantsAfterEveryOperation(true).build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * 4096, Protection.READ, ANON);
        mm.mmap(VA + 4 * 4096, 4 * 4096, Protection.READ_WRITE, ANON);
        List<NotifierRange> starts = new ArrayList<>();
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                starts.add(range);
            }
        });
        mm.mprotect(VA + 4096, 6 * 4096, Protection.READ);
        assertThat(starts).hasSize(1);
        assertThat(starts.getFirst().start()).isEqualTo(VA + 4 * 4096);
        assertThat(starts.getFirst().end()).isEqualTo(VA + 7 * 4096);
        assertThat(mm.vmas()).extracting(v -> v.start(), v -> v.end()).containsExactly(
                // the first VMA is not split; the changed piece then merges with it (vma_merge: same
                // flags, neither has an anon_vma yet), as /proc/self/maps shows on Linux
                Tuple.tuple(VA, VA + 7 * 4096), Tuple.tuple(VA + 7 * 4096, VA + 8 * 4096));
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }
}
