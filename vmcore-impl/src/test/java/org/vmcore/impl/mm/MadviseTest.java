package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/**
 * madvise(MADV_DONTNEED) (mm/madvise.c: madvise_dontneed_single_vma, zap_page_range_single),
 * from outside. The expectations are what the kernel of the development machine did with the
 * same calls: docs/kernel-parity/madvise_dontneed*.c and their output madvise_dontneed.out.
 */
class MadviseTest {
    private static final long K4 = 4096;
    private static final long H = 2 * MIB;
    private static final long VA = 0x20_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    private final Machine machine = Machine.builder().node(GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 16)
            .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    private final Cpu cpu = machine.cpu(0);

    @AfterEach
    void close() {
        Fixtures.closeChecked(machine);
    }

    private AddressSpace written(long pages) {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, pages * K4, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (int i = 0; i < pages; i++) {
            cpu.store(VA + i * K4, 8, 100 + i);
        }
        return mm;
    }

    @Test
    @DisplayName("private anonymous pages go (RssAnon drops); the next read maps the zero page, the mapping and its tables stay")
    void anonymousPagesGo() {
        AddressSpace mm = written(8);
        long tables = mm.counters().pageTablePages();
        long free = machine.freeFrames();
        assertThat(mm.madvise(VA, 8 * K4, Advice.DONTNEED)).isZero();
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(machine.freeFrames()).isEqualTo(free + 8);
        assertThat(mm.counters().pageTablePages()).as("DONTNEED frees no page table").isEqualTo(tables);
        assertThat(mm.vmas()).hasSize(1);
        assertThat(cpu.load(VA + 3 * K4, 8)).as("zero-fill on demand, no stale translation").isZero();
        assertThat(mm.fault(VA + 3 * K4, Access.READ)).isEqualTo(FaultResult.ALREADY_MAPPED);
        assertThat(mm.fault(VA + 4 * K4, Access.READ)).isEqualTo(FaultResult.ZERO_PAGE);
        assertThat(mm.madvise(VA, 8 * K4, Advice.DONTNEED)).as("again: zero-page entries just go").isZero();
    }

    @Test
    @DisplayName("a hole: the mapped parts are dropped, then -ENOMEM (the kernel: rc -1, errno 12, p[0] and p[3P] read 0)")
    void aHoleIsReportedAfterTheRest() {
        AddressSpace mm = written(8);
        mm.munmap(VA + 2 * K4, K4);
        assertThat(mm.madvise(VA, 8 * K4, Advice.DONTNEED)).isEqualTo(-Errno.ENOMEM);
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(cpu.load(VA, 8)).isZero();
        assertThat(cpu.load(VA + 3 * K4, 8)).isZero();
        assertThat(mm.madvise(0x30_0000_0000L, K4, Advice.DONTNEED)).as("nothing mapped at all").isEqualTo(-Errno.ENOMEM);
    }

    @Test
    @DisplayName("an mlocked VMA stops the walk with -EINVAL; the VMAs before it were advised (the kernel: p[3P]=0, p[5P]=1)")
    void anMlockedVmaStopsTheWalk() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 3 * K4, Protection.READ_WRITE, ANON);
        mm.mmap(VA + 3 * K4, K4, Protection.READ_WRITE, ANON | MapFlags.MAP_LOCKED);
        mm.mmap(VA + 4 * K4, 2 * K4, Protection.READ, ANON); // another protection: three VMAs
        cpu.switchTo(mm);
        cpu.store(VA, 8, 1);
        cpu.store(VA + 3 * K4, 8, 2);
        assertThat(mm.madvise(VA, 6 * K4, Advice.DONTNEED)).isEqualTo(-Errno.EINVAL);
        assertThat(cpu.load(VA, 8)).as("before the locked VMA: dropped").isZero();
        assertThat(cpu.load(VA + 3 * K4, 8)).as("the locked VMA: kept").isEqualTo(2);
    }

    @Test
    @DisplayName("bad arguments throw and change nothing; length 0 is a no-op; lengths round up to pages")
    void badArguments() {
        AddressSpace mm = written(4);
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.madvise(VA + 1, K4, Advice.DONTNEED)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("address");
        assertThatThrownBy(() -> mm.madvise(VA, -1, Advice.DONTNEED)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("length");
        assertThatThrownBy(() -> mm.madvise(VA, K4, null)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("advice");
        assertThatThrownBy(() -> mm.madvise(0x7fff_ffff_f000L, 2 * K4, Advice.DONTNEED)).isInstanceOf(InvalidArgumentException.class);
        assertThat(mm.madvise(VA, 0, Advice.DONTNEED)).isZero();
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        assertThat(mm.madvise(VA, K4 + 1, Advice.DONTNEED)).isZero();
        assertThat(mm.counters().anonPages()).as("two pages: the length rounded up").isEqualTo(2);
    }

    @Test
    @DisplayName("shmem: the mapping goes (RssShmem drops), the page stays in the cache and the data with it (the kernel: s[0]=7)")
    void shmemKeepsItsData() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * K4, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        cpu.switchTo(mm);
        cpu.store(VA, 8, 7);
        AddressSpace child = mm.fork();
        assertThat(mm.madvise(VA, 4 * K4, Advice.DONTNEED)).isZero();
        assertThat(mm.counters().shmemPages()).isZero();
        assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.PAGE_CACHE);
        assertThat(cpu.load(VA, 8)).isEqualTo(7);
        child.close();
    }

    private HugetlbPoolState pool() {
        return machine.hugetlbfs().pool(0, PageSize.SIZE_2M);
    }

    @Test
    @DisplayName("private hugetlb: the page goes back to the pool and the owner gets its reservation back (the kernel: free 14->15, rsvd 2->3)")
    void privateHugetlbRestoresTheReservation() {
        HugetlbFile file = machine.hugetlbfs().create("p", 4 * H, PageSize.SIZE_2M);
        AddressSpace mm = machine.createAddressSpace();
        long p = mm.mmap(file, 0, 0, 4 * H, Protection.READ_WRITE, MapFlags.MAP_PRIVATE);
        assertThat(pool().reserved()).isEqualTo(4);
        cpu.switchTo(mm);
        cpu.store(p, 8, 1);
        cpu.store(p + H, 8, 2);
        assertThat(pool().free()).isEqualTo(14);
        assertThat(pool().reserved()).isEqualTo(2);
        assertThat(mm.madvise(p, H, Advice.DONTNEED)).isZero();
        assertThat(pool().free()).isEqualTo(15);
        assertThat(pool().reserved()).isEqualTo(3);
        assertThat(cpu.load(p, 8)).isZero();
        assertThat(pool().free()).isEqualTo(14);
        assertThat(pool().reserved()).isEqualTo(2);
        assertThat(mm.madvise(p + K4, H, Advice.DONTNEED)).as("a hugetlb range starts on a huge page").isEqualTo(-Errno.EINVAL);
        assertThat(mm.madvise(p + H, H + K4, Advice.DONTNEED)).as("and is cut down to whole ones").isZero();
        assertThat(cpu.load(p + H, 8)).isZero();
        assertThat(cpu.load(p + 2 * H, 8)).isZero();
        assertThat(pool().free()).isEqualTo(13);
    }

    @Test
    @DisplayName("shared hugetlb: the page stays in the file (the kernel: free and rsvd unchanged, p[0]=1)")
    void sharedHugetlbKeepsItsPage() {
        HugetlbFile file = machine.hugetlbfs().create("s", 4 * H, PageSize.SIZE_2M);
        AddressSpace mm = machine.createAddressSpace();
        long p = mm.mmap(file, 0, 0, 4 * H, Protection.READ_WRITE, MapFlags.MAP_SHARED);
        cpu.switchTo(mm);
        cpu.store(p, 8, 1);
        HugetlbPoolState before = pool();
        assertThat(mm.madvise(p, H, Advice.DONTNEED)).isZero();
        assertThat(pool()).isEqualTo(before);
        assertThat(mm.counters().hugetlbBytes()).isZero();
        assertThat(cpu.load(p, 8)).isEqualTo(1);
    }

    @Test
    @DisplayName("DONTNEED of one page of a shared PMD window unshares the whole window of that process, notifying it all")
    void aSharedWindowIsUnshared() {
        Machine big = Machine.builder().node(4 * GIB).cpus(1).hugePages(0, PageSize.SIZE_2M, 1100).detectStaleTranslations(true).build();
        try {
            Fixtures.SharedWindow w = Fixtures.sharedWindow(big, 8 * GIB, 16 * GIB, true);
            w.b().fault(16 * GIB, Access.READ);
            w.b().fault(16 * GIB + H, Access.READ);
            assertThat(w.b().fault(16 * GIB + 2 * H, Access.READ)).isNotEqualTo(FaultResult.MIGRATION_WAIT);
            List<NotifierRange> heard = new ArrayList<>();
            w.b().registerNotifier(new MmuNotifier() {
                @Override
                public void invalidateRangeStart(NotifierRange range) {
                    heard.add(range);
                }
            });
            long tablesBefore = w.b().counters().pmdTables();
            assertThat(w.b().madvise(16 * GIB + H, H, Advice.DONTNEED)).isZero();
            assertThat(heard).hasSize(1);
            assertThat(heard.getFirst().start()).as("adjust_range_if_pmd_sharing_possible").isEqualTo(16 * GIB);
            assertThat(heard.getFirst().end()).isEqualTo(17 * GIB);
            assertThat(w.b().translate(16 * GIB)).as("the whole window left b: its pages fault back in").isEqualTo(-1);
            assertThat(w.a().translate(8 * GIB)).as("a keeps the table").isNotNegative();
            assertThat(w.b().counters().pmdTables()).isEqualTo(tablesBefore - 1);
            assertThat(w.b().fault(16 * GIB, Access.READ)).isIn(FaultResult.SHARED_TABLE, FaultResult.PAGE_CACHE);
            assertThat(big.checkInvariants()).isEmpty();
        } finally {
            big.close();
        }
    }

    @Test
    @DisplayName("a notifier that refuses the range leaves that VMA as it was, and its exception reaches the caller")
    void aRefusingNotifierChangesNothing() {
        AddressSpace mm = written(4);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                throw new IllegalStateException("device busy");
            }
        });
        assertThatThrownBy(() -> mm.madvise(VA, 4 * K4, Advice.DONTNEED)).isInstanceOf(IllegalStateException.class)
                .hasMessage("device busy");
        assertThat(mm.counters().anonPages()).isEqualTo(4);
        assertThat(cpu.load(VA + K4, 8)).isEqualTo(101);
    }
}
