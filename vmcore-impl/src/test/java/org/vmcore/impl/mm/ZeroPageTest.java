package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmCounters;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.PteFlag;
import org.vmcore.api.VmException;

/**
 * The shared zero page (mm/memory.c: do_anonymous_page maps my_zero_pfn, special and read-only,
 * for a read fault of private anonymous memory; wp_page_copy breaks it with a zeroed page).
 * Everything here goes through the public API; the layouts of {@link #theKernelOnThisMachineAgrees}
 * are those of docs/kernel-parity/zero_page.c, whose output on the real kernel is a test resource.
 */
class ZeroPageTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long K4 = 4096;
    private static final long VA = 0x10_0000_0000L;

    private final Machine machine = Machine.builder().node(GIB).node(GIB).cpus(2).detectStaleTranslations(true)
            .checkInvariantsAfterEveryOperation(true).hugePages(0, PageSize.SIZE_2M, 4).build();

    @AfterEach
    void close() {
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("reads of private anonymous memory map one reserved zero page, read-only, counted in no RSS")
    void readsMapTheZeroPage() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 16 * K4, Protection.READ_WRITE, ANON);
        long free = machine.freeFrames();
        for (int i = 0; i < 16; i++) {
            assertThat(mm.fault(VA + i * K4, Access.READ)).isEqualTo(FaultResult.ZERO_PAGE);
        }
        long zero = mm.pageAt(VA);
        for (int i = 1; i < 16; i++) {
            assertThat(mm.pageAt(VA + i * K4)).as("one zero page for all").isEqualTo(zero);
        }
        assertThat(machine.page(zero).flags()).contains(PageFlag.RESERVED);
        assertThat(machine.page(zero).mapcount()).as("special entries hold no mapcount").isZero();
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(mm.counters().minorFaults()).isEqualTo(16);
        assertThat(machine.freeFrames()).as("only the PTE table (and above it) was allocated")
                .isEqualTo(free - (mm.counters().pageTablePages() - 1));
        assertThat(mm.pageTableView().entry(VA, PageTableLevel.PTE).orElseThrow().flags().contains(PteFlag.RW)).isFalse();
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        assertThat(cpu.load(VA + 5 * K4 + 8, 8)).isZero();
        assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.ALREADY_MAPPED);
    }

    @Test
    @DisplayName("a write breaks the zero page with a zeroed page of its own; the other CPU's translation is flushed")
    void aWriteCopiesOnWrite() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * K4, Protection.READ_WRITE, ANON);
        Cpu reader = machine.cpu(0);
        Cpu writer = machine.cpu(1);
        reader.switchTo(mm);
        writer.switchTo(mm);
        assertThat(reader.load(VA, 8)).isZero(); // the reader caches the zero page's translation
        long zero = mm.pageAt(VA);
        writer.storeRecorded(VA + 8, 8, 42);
        assertThat(writer.outcome().faultResult()).isEqualTo(FaultResult.COW_COPY);
        assertThat(mm.pageAt(VA)).isNotEqualTo(zero);
        assertThat(mm.counters().anonPages()).as("the copy is an anonymous page").isEqualTo(1);
        assertThat(reader.load(VA + 8, 8)).as("no stale translation to the zero page").isEqualTo(42);
        assertThat(reader.load(VA, 8)).as("the new page was zeroed").isZero();
        assertThat(machine.readPhysical(zero << 12, 8) | machine.readPhysical((zero << 12) + 8, 8)).as("the zero page stays zero")
                .isZero();
        assertThat(mm.pageAt(VA + K4)).isEqualTo(-1);
        assertThat(machine.staleAccessCount()).isZero();
    }

    @Test
    @DisplayName("fork shares the zero page as it is; munmap and exit drop its entries without a put")
    void forkMunmapAndExit() {
        AddressSpace parent = machine.createAddressSpace();
        parent.mmap(VA, 8 * K4, Protection.READ_WRITE, ANON);
        parent.fault(VA, Access.WRITE); // an anonymous page, so that fork copies the VMA's entries
        parent.fault(VA + K4, Access.READ);
        long zero = parent.pageAt(VA + K4);
        AddressSpace child = parent.fork();
        assertThat(child.pageAt(VA + K4)).as("copy_present_pte copies the special entry").isEqualTo(zero);
        MmCounters c = child.counters();
        assertThat(c.anonPages()).isEqualTo(1);
        assertThat(child.fault(VA + K4, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
        assertThat(child.counters().anonPages()).isEqualTo(2);
        assertThat(parent.pageAt(VA + K4)).isEqualTo(zero);
        child.munmap(VA, 8 * K4);
        assertThat(child.counters().anonPages()).isZero();
        parent.close();
        child.close();
        assertThat(machine.page(zero).flags()).as("the zero page outlives every mapping").contains(PageFlag.RESERVED);
    }

    @Test
    @DisplayName("mprotect never makes the zero page writable; MAP_POPULATE of a read-only mapping maps it")
    void mprotectAndPopulate() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * K4, Protection.READ, ANON | MapFlags.MAP_POPULATE);
        long zero = mm.pageAt(VA);
        assertThat(zero).isNotNegative();
        assertThat(mm.pageAt(VA + 3 * K4)).isEqualTo(zero);
        assertThat(mm.counters().anonPages()).isZero();
        mm.mprotect(VA, 4 * K4, Protection.READ_WRITE);
        assertThat(mm.pageTableView().entry(VA, PageTableLevel.PTE).orElseThrow().flags().contains(PteFlag.RW)).isFalse();
        assertThat(mm.fault(VA, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
        assertThat(mm.counters().anonPages()).isEqualTo(1);
    }

    @Test
    @DisplayName("move_pages reports -EFAULT for the zero page (move_pages(2), FOLL_DUMP); migrate_pages leaves it; it cannot be offlined")
    void theZeroPageNeverMigrates() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * K4, Protection.READ_WRITE, ANON);
        mm.fault(VA, Access.READ);
        mm.fault(VA + K4, Access.WRITE);
        long zero = mm.pageAt(VA);
        var stat = machine.migration().movePages(mm, new long[] {VA, VA + K4}, null, MigrationService.MPOL_MF_MOVE);
        assertThat(stat.status(0)).isEqualTo(-Errno.EFAULT);
        assertThat(stat.status(1)).isZero();
        var moved = machine.migration().movePages(mm, new long[] {VA, VA + K4}, new int[] {1, 1}, MigrationService.MPOL_MF_MOVE);
        assertThat(moved.status(0)).isEqualTo(-Errno.EFAULT);
        assertThat(moved.status(1)).isEqualTo(1);
        assertThat(machine.migration().migratePages(mm, new int[] {0}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL)).isZero();
        assertThat(mm.pageAt(VA)).isEqualTo(zero);
        assertThat(machine.migration().softOffline(zero)).isEqualTo(-Errno.EBUSY);
        long block = zero & ~511L;
        String before = org.vmcore.impl.Fixtures.state(machine);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> machine.migration().offlineRange(0, block, block + 512))
                .isInstanceOf(VmException.class).hasMessageContaining("zero page");
        assertThat(org.vmcore.impl.Fixtures.state(machine)).isEqualTo(before);
    }

    @Test
    @DisplayName("shmem and hugetlb reads get pages of their own, not the zero page")
    void sharedAndHugetlbReadsDoNotUseIt() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 4 * K4, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
        assertThat(mm.fault(VA, Access.READ)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(mm.counters().shmemPages()).isEqualTo(1);
        HugetlbFile file = machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M);
        long h = mm.mmap(file, 0, 0, 2 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE);
        assertThat(mm.fault(h, Access.READ)).isEqualTo(FaultResult.NEW_PAGE);
    }

    /** One line of the kernel's output: layout, minor faults, RssAnon and VmPTE in KiB, whether the reads shared a frame. */
    private record KernelLine(String layout, long minflt, long rssAnonKib, long pteKib, String samePfn) {
    }

    @Test
    @DisplayName("the layouts of docs/kernel-parity/zero_page.c give what the kernel on this machine reported")
    void theKernelOnThisMachineAgrees() {
        List<KernelLine> kernel = new ArrayList<>();
        for (String line : org.vmcore.impl.Fixtures.kernelOutput("zero_page.out")) {
            String[] f = line.split("\\s+");
            kernel.add(new KernelLine(f[0], Long.parseLong(f[1]), Long.parseLong(f[2]), Long.parseLong(f[3]), f[4]));
        }
        assertThat(kernel).extracting(KernelLine::layout).containsExactly("read", "write", "read_then_write");
        long[] at = {0x1000_0000_0000L, 0x1080_0000_0000L, 0x1100_0000_0000L};
        boolean[][] readsWrites = {{true, false}, {false, true}, {true, true}};
        AddressSpace mm = machine.createAddressSpace();
        Cpu cpu = machine.cpu(0);
        cpu.switchTo(mm);
        for (int l = 0; l < kernel.size(); l++) {
            KernelLine k = kernel.get(l);
            long p = mm.mmap(at[l], 256 * K4, Protection.READ_WRITE, ANON);
            MmCounters before = mm.counters();
            for (int i = 0; readsWrites[l][0] && i < 256; i++) {
                cpu.load(p + i * K4, 1);
            }
            for (int i = 0; readsWrites[l][1] && i < 256; i++) {
                cpu.store(p + i * K4, 1, 1);
            }
            MmCounters after = mm.counters();
            String what = k.layout() + ": vmcore against " + k;
            assertThat(after.minorFaults() - before.minorFaults()).as(what).isEqualTo(k.minflt());
            assertThat((after.anonPages() - before.anonPages()) * 4).as(what).isEqualTo(k.rssAnonKib());
            assertThat((after.pageTablePages() - before.pageTablePages()) * 4).as(what).isEqualTo(k.pteKib());
            assertThat(mm.pageAt(p) == mm.pageAt(p + K4) ? "yes" : "no").as(what).isEqualTo(k.samePfn());
            mm.munmap(p, 256 * K4);
        }
    }
}
