package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;
import org.vmcore.impl.Fixtures;

/**
 * MADV_FREE and MADV_PAGEOUT without swap (mm/madvise.c: madvise_free_pte_range,
 * madvise_pageout; mm/vmscan.c: the lazy-free case of shrink_folio_list), from outside. The
 * expectations are what the kernel of the development machine did with the same calls
 * (docs/kernel-parity/madvise_free.c and madvise_free.out).
 */
class MadviseFreeTest {
    private static final long P = 4096;
    private static final long VA = 0x5000_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    private final Machine machine = Machine.builder().node(GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 4)
            .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    private final Cpu cpu = machine.cpu(0);

    @AfterEach
    void close() {
        Fixtures.closeChecked(machine);
    }

    @Test
    @DisplayName("FREE keeps the pages mapped; PAGEOUT drops the 12 that stayed clean and keeps the 4 written since (the kernel: pglazyfreed 12, p[0]=100, p[4P]=0)")
    void cleanLazyFreePagesGoWrittenOnesStay() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 16 * P, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (int i = 0; i < 16; i++) {
            cpu.store(VA + i * P, 1, 1 + i);
        }
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(mm.madvise(VA, 16 * P, Advice.FREE)).isZero();
        assertThat(mm.counters().anonPages()).as("still mapped and counted").isEqualTo(16);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PGLAZYFREE)).isEqualTo(16);
        assertThat(cpu.load(VA + 7 * P, 1)).as("a read does not cancel it").isEqualTo(8);
        for (int i = 0; i < 4; i++) {
            cpu.store(VA + i * P, 1, 100 + i); // written again: no longer free to drop
        }
        assertThat(mm.madvise(VA, 16 * P, Advice.PAGEOUT)).isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(4);
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PGLAZYFREED)).isEqualTo(12);
        assertThat(cpu.load(VA, 1)).isEqualTo(100);
        assertThat(cpu.load(VA + 3 * P, 1)).isEqualTo(103);
        assertThat(cpu.load(VA + 4 * P, 1)).as("dropped: zero-fill on demand").isZero();
        assertThat(cpu.load(VA + 15 * P, 1)).isZero();
        assertThat(mm.madvise(VA, 16 * P, Advice.PAGEOUT)).as("nothing lazy free is left: no swap for the rest").isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(4);
    }

    @Test
    @DisplayName("pages shared with a forked child are not made lazy free; the child keeps its copy")
    void sharedPagesAreLeftAlone() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * P, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        cpu.store(VA, 1, 5);
        cpu.store(VA + P, 1, 6);
        AddressSpace child = mm.fork();
        VmstatSnapshot before = machine.vmstatSnapshot();
        assertThat(mm.madvise(VA, 2 * P, Advice.FREE)).isZero();
        assertThat(mm.madvise(VA, 2 * P, Advice.PAGEOUT)).isZero();
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PGLAZYFREE)).isZero();
        assertThat(cpu.load(VA, 1)).isEqualTo(5);
        child.close();
        assertThat(mm.madvise(VA, 2 * P, Advice.FREE)).isZero();
        assertThat(mm.madvise(VA, 2 * P, Advice.PAGEOUT)).isZero();
        assertThat(machine.vmstatSnapshot().minus(before).get(VmstatCounter.PGLAZYFREE)).as("mapped once now (the kernel: 2)").isEqualTo(2);
        assertThat(cpu.load(VA, 1)).as("the kernel: q[0]=0").isZero();
    }

    @Test
    @DisplayName("FREE refuses shared memory, hugetlb and mlocked VMAs (-EINVAL); PAGEOUT refuses hugetlb and mlocked ones")
    void whereItDoesNotApply() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * P, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        assertThat(mm.madvise(VA, 4 * P, Advice.FREE)).as("the kernel: rc -1 errno 22").isEqualTo(-Errno.EINVAL);
        assertThat(mm.madvise(VA, 4 * P, Advice.PAGEOUT)).as("shmem: nothing to do without swap").isZero();
        mm.mmap(VA + 16 * P, P, Protection.READ_WRITE, ANON | MapFlags.MAP_LOCKED);
        assertThat(mm.madvise(VA + 16 * P, P, Advice.FREE)).isEqualTo(-Errno.EINVAL);
        assertThat(mm.madvise(VA + 16 * P, P, Advice.PAGEOUT)).isEqualTo(-Errno.EINVAL);
        HugetlbFile file = machine.hugetlbfs().create("h", 2 * MIB, PageSize.SIZE_2M);
        long h = mm.mmap(file, 0, 0, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE);
        assertThat(mm.madvise(h, 2 * MIB, Advice.FREE)).isEqualTo(-Errno.EINVAL);
        assertThat(mm.madvise(h, 2 * MIB, Advice.PAGEOUT)).isEqualTo(-Errno.EINVAL);
    }
}
