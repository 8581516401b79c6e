package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.x86.mem.PhysicalMemory;

class ResourceSafetyTest {
    @Test
    void aThousandMachinesGiveBackEveryOffHeapByte() {
        long start = PhysicalMemory.liveOffHeapBytes();
        long peak = 0;
        for (int i = 0; i < 1000; i++) {
            Machine machine = Machine.builder().node(GIB).node(GIB).hugePages(1, PageSize.SIZE_2M, 2).build();
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, 8 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(va, 8, i);
            if (i % 100 == 0) {
                HugetlbFile f = machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M);
                long h = mm.mmap(f, 0, 0, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED);
                cpu.store(h, 8, i);
                machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            }
            peak = Math.max(peak, PhysicalMemory.liveOffHeapBytes() - start);
            machine.close();
        }
        assertThat(peak).as("each machine used off-heap memory").isPositive();
        assertThat(PhysicalMemory.liveOffHeapBytes()).as("off-heap bytes after closing all").isEqualTo(start);
    }

    @Test
    void everythingFailsClearlyAfterClose() {
        Machine machine = Machine.builder().build();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        cpu.store(va, 8, 1);
        machine.close();
        assertThatThrownBy(() -> mm.fault(va, Access.READ)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> mm.translate(va)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> cpu.switchTo(mm)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> machine.readPhysical(0, 8)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> machine.migration().movePages(mm, new long[] {va}, null, MigrationService.MPOL_MF_MOVE))
                .isInstanceOf(ClosedException.class);
        assertThatThrownBy(() -> machine.rmap().mappings(1)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(cpu::current).as("a closed machine's CPU has no state to show").isInstanceOf(ClosedException.class);
        machine.close(); // idempotent
    }
}
