package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.concurrent.atomic.AtomicBoolean;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.FaultResult;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.ThpMode;
import org.vmcore.impl.Fixtures;

/**
 * Transparent huge pages from outside, beyond the kernel-parity layouts
 * ({@link ThpKernelParityTest}): contents through every change of mapping, copy-on-write with
 * both sides alive, failures (no 2 MiB block, no table to deposit, a notifier refusing a
 * collapse), khugepaged driven step by step, and the refusals. Each follows mm/huge_memory.c or
 * mm/khugepaged.c as named.
 */
class ThpTest {
    private static final long K4 = 4096;
    private static final long H = 2 * MIB;
    private static final long VA = 0x40_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    private Machine machine = machine(ThpMode.MADVISE);
    private final Cpu cpu = machine.cpu(0);

    private static Machine machine(ThpMode mode) {
        return Machine.builder().node(GIB).cpus(2).thp(mode).hugePages(0, PageSize.SIZE_2M, 4)
                .detectStaleTranslations(true).checkInvariantsAfterEveryOperation(true).build();
    }

    @AfterEach
    void close() {
        Fixtures.closeChecked(machine);
    }

    /** A 2 MiB-aligned private anonymous mapping of {@code length}, advised MADV_HUGEPAGE, with each 4 KiB page written. */
    private AddressSpace filledHuge(long length) {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, length, Protection.READ_WRITE, ANON);
        assertThat(mm.madvise(VA, length, Advice.HUGEPAGE)).isZero();
        cpu.switchTo(mm);
        for (long off = 0; off < length; off += K4) {
            cpu.store(VA + off, 8, off ^ 0x5a5a);
        }
        return mm;
    }

    private void assertContents(AddressSpace mm, long at, long length, long skipFrom, long skipTo) {
        cpu.switchTo(mm);
        for (long off = 0; off < length; off += K4) {
            if (off >= skipFrom && off < skipTo) {
                continue;
            }
            assertThat(cpu.load(at + off, 8)).as("page at +0x%x", off).isEqualTo(off ^ 0x5a5a);
        }
    }

    @Test
    @DisplayName("one fault maps 2 MiB: RSS 512 pages, AnonHugePages 512, thp_fault_alloc 1; every page reads back")
    void oneFaultMapsAHugePage() {
        AddressSpace mm = filledHuge(H);
        assertThat(mm.counters().minorFaults()).isEqualTo(1);
        assertThat(mm.counters().anonPages()).isEqualTo(512);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(machine.vmstat().get("thp_fault_alloc")).isEqualTo(1);
        assertThat(machine.stats().meminfo().get("AnonHugePages")).isEqualTo(2048);
        assertContents(mm, VA, H, 0, 0);
    }

    @Test
    @DisplayName("fork, then both write: the writer's PMD splits and one 4 KiB page is copied; the other side keeps its huge page and data")
    void copyOnWriteWithBothSidesAlive() {
        AddressSpace parent = filledHuge(H);
        AddressSpace child = parent.fork();
        assertThat(child.counters().anonHugePages()).isEqualTo(512);
        cpu.switchTo(child);
        cpu.store(VA + 5 * K4, 8, 77);
        assertThat(child.counters().anonHugePages()).as("the child's PMD was split").isZero();
        assertThat(parent.counters().anonHugePages()).as("the parent's stays").isEqualTo(512);
        assertContents(parent, VA, H, 0, 0);
        cpu.switchTo(parent);
        assertThat(parent.fault(VA + 9 * K4, Access.WRITE)).as("shared with the child's PTEs: split and copy")
                .isEqualTo(FaultResult.COW_COPY);
        cpu.store(VA + 9 * K4, 8, 99);
        cpu.switchTo(child);
        assertThat(cpu.load(VA + 5 * K4, 8)).isEqualTo(77);
        assertThat(cpu.load(VA + 9 * K4, 8)).as("the parent's write is not the child's").isEqualTo((9 * K4) ^ 0x5a5a);
        child.close();
        assertThat(machine.vmstat().get("thp_split_pmd")).isEqualTo(2);
    }

    @Test
    @DisplayName("a partial munmap splits the PMD; the rest keeps its data; exit gives every frame back")
    void partialMunmapThenExitFreesEverything() {
        long free = machine.freeFrames();
        AddressSpace mm = filledHuge(2 * H);
        mm.munmap(VA + H + 16 * K4, 8 * K4);
        assertThat(mm.counters().anonPages()).isEqualTo(1024 - 8);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertContents(mm, VA, 2 * H, H + 16 * K4, H + 24 * K4);
        assertThat(machine.vmstat().get("thp_deferred_split_page")).isEqualTo(1);
        mm.close();
        assertThat(machine.freeFrames()).as("both huge pages and every table back").isEqualTo(free);
    }

    @Test
    @DisplayName("mremap to an aligned place moves the PMD whole, to an unaligned one splits it; the data moves either way")
    void mremapKeepsTheData() {
        AddressSpace mm = filledHuge(H);
        long to = VA + 16 * H;
        assertThat(mm.mremap(VA, H, H, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, to)).isEqualTo(to);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertContents(mm, to, H, 0, 0);
        long odd = VA + 32 * H + K4;
        mm.mremap(to, H, H, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, odd);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertContents(mm, odd, H, 0, 0);
    }

    @Test
    @DisplayName("PROT_NONE over the whole huge page keeps it whole; access faults; RW again and the data is there")
    void protNoneWholeHugePage() {
        AddressSpace mm = filledHuge(H);
        mm.mprotect(VA, H, Protection.NONE);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThatThrownBy(() -> cpu.load(VA + K4, 8)).isInstanceOf(SegmentationFaultException.class);
        mm.mprotect(VA, H, Protection.READ_WRITE);
        assertContents(mm, VA, H, 0, 0);
        cpu.store(VA, 8, 0x5a5a);
        assertThat(machine.vmstat().get("thp_split_pmd")).isZero();
    }

    @Test
    @DisplayName("no free 2 MiB block: the fault falls back to a 4 KiB page and counts thp_fault_fallback (do_huge_pmd_anonymous_page)")
    void noHugeBlockFallsBack() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H, Protection.READ_WRITE, ANON);
        mm.madvise(VA, H, Advice.HUGEPAGE);
        machine.failNthAllocation(AllocationKind.FRAME, 1);
        assertThat(mm.fault(VA, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(mm.counters().anonPages()).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertThat(machine.vmstat().get("thp_fault_fallback")).isEqualTo(1);
    }

    @Test
    @DisplayName("no frame for the deposited table: the fault fails with nothing changed, and the next one succeeds")
    void noTableToDepositChangesNothing() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * H, Protection.READ_WRITE, ANON);
        mm.madvise(VA, 2 * H, Advice.HUGEPAGE);
        mm.fault(VA, Access.WRITE); // the PUD and PMD tables exist from here
        String before = Fixtures.state(machine);
        machine.failNthAllocation(AllocationKind.TABLE, 1);
        assertThatThrownBy(() -> mm.fault(VA + H, Access.WRITE)).isInstanceOf(OutOfMemoryException.class);
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        assertThat(mm.fault(VA + H, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(mm.counters().anonHugePages()).isEqualTo(1024);
    }

    @Test
    @DisplayName("MADV_NOHUGEPAGE under 'always' keeps 4 KiB pages; MADV_HUGEPAGE and NOHUGEPAGE on hugetlb are -EINVAL")
    void adviceRules() {
        machine.close();
        machine = machine(ThpMode.ALWAYS);
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * H, Protection.READ_WRITE, ANON);
        assertThat(mm.madvise(VA + H, H, Advice.NOHUGEPAGE)).isZero();
        assertThat(mm.vmas()).hasSize(2);
        assertThat(mm.madvise(VA + H, H, Advice.HUGEPAGE)).isZero();
        assertThat(mm.vmas()).as("VM_HUGEPAGE is not 'no advice': no merge, as vma_merge compares vm_flags").hasSize(2);
        assertThat(mm.madvise(VA, H, Advice.HUGEPAGE)).isZero();
        assertThat(mm.vmas()).as("equal advice: merged").hasSize(1);
        assertThat(mm.madvise(VA + H, H, Advice.NOHUGEPAGE)).isZero();
        mm.fault(VA, Access.WRITE);
        mm.fault(VA + H, Access.WRITE);
        assertThat(mm.counters().anonPages()).isEqualTo(513);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        var file = machine.hugetlbfs().create("f", 4 * H, PageSize.SIZE_2M);
        long hva = mm.mmap(file, 0, 0, 2 * H, Protection.READ_WRITE, MapFlags.MAP_SHARED);
        assertThat(mm.madvise(hva, 2 * H, Advice.HUGEPAGE)).isEqualTo(-Errno.EINVAL);
        assertThat(mm.madvise(hva, 2 * H, Advice.COLLAPSE)).isEqualTo(-Errno.EINVAL);
        assertThatThrownBy(() -> mm.madvise(VA, H, null)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> machine.khugepaged().scan(0)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("ranges");
    }

    @Test
    @DisplayName("MADV_COLLAPSE copies 512 pages into one huge page; a page held by a GUP reference makes it -EAGAIN (is_refcount_suitable)")
    void collapse() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            cpu.store(VA + off, 8, off ^ 0x5a5a);
        }
        try (PageReference pinned = mm.getUserPageFast(VA + 7 * K4, false)) {
            assertThat(pinned).isNotNull();
            assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).isEqualTo(-Errno.EAGAIN);
        }
        assertThat(mm.counters().anonHugePages()).isZero();
        long free = machine.freeFrames();
        assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).isZero();
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(machine.freeFrames()).as("512 pages out, 512 in; the PTE table became the deposit").isEqualTo(free);
        assertContents(mm, VA, H, 0, 0);
        assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).as("already huge").isZero();
    }

    @Test
    @DisplayName("a notifier refusing the collapse's range: the exception reaches the caller, pages and data as they were")
    void collapseRefusedByANotifier() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            cpu.store(VA + off, 8, off ^ 0x5a5a);
        }
        AtomicBoolean refuse = new AtomicBoolean(true);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
                if (refuse.get()) {
                    throw new IllegalStateException("device busy");
                }
            }
        });
        String before = Fixtures.state(machine);
        assertThatThrownBy(() -> mm.madvise(VA, H, Advice.COLLAPSE)).hasMessageContaining("device busy");
        assertThat(Fixtures.state(machine)).isEqualTo(before);
        refuse.set(false);
        assertThat(mm.madvise(VA, H, Advice.COLLAPSE)).isZero();
        assertContents(mm, VA, H, 0, 0);
    }

    @Test
    @DisplayName("khugepaged, one step at a time: it collapses an advised range of 4 KiB pages, passes an empty one, and wraps around")
    void khugepagedStepByStep() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * H, Protection.READ_WRITE, ANON);
        cpu.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            cpu.store(VA + off, 8, off ^ 0x5a5a); // 4 KiB pages: not advised yet
        }
        assertThat(machine.khugepaged().scan(8)).as("nothing advised").isZero();
        mm.madvise(VA, 2 * H, Advice.HUGEPAGE);
        assertThat(machine.khugepaged().scan(1)).isEqualTo(1);
        assertThat(machine.khugepaged().scan(1)).as("the second range is empty: passed by").isZero();
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(machine.vmstat().get("thp_collapse_alloc")).isEqualTo(1);
        assertContents(mm, VA, H, 0, 0);
        assertThat(machine.khugepaged().scan(4)).as("a new pass: the huge page is left as it is").isZero();
    }

    @Test
    @DisplayName("the huge zero page: reads map it with no RSS; a write in a forked child gets the child its own huge page")
    void hugeZeroPageAcrossFork() {
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H + K4, Protection.READ_WRITE, ANON);
        mm.madvise(VA, H + K4, Advice.HUGEPAGE);
        cpu.switchTo(mm);
        assertThat(cpu.load(VA + 3 * K4, 8)).isZero();
        assertThat(mm.counters().anonPages()).isZero();
        mm.fault(VA + H, Access.WRITE); // a 4 KiB page past the huge range: an anon_vma, so that fork copies the VMA
        AddressSpace child = mm.fork();
        cpu.switchTo(child);
        cpu.store(VA + 64, 8, 5);
        assertThat(child.counters().anonHugePages()).isEqualTo(512);
        assertThat(cpu.load(VA + 64, 8)).isEqualTo(5);
        assertThat(cpu.load(VA + H - 8, 8)).isZero();
        child.close();
        mm.close();
    }

    private AddressSpace hugeOnTwoNodes() {
        machine.close();
        machine = Machine.builder().node(GIB).node(GIB).cpus(2).thp(ThpMode.ALWAYS).detectStaleTranslations(true)
                .checkInvariantsAfterEveryOperation(true).build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, H, Protection.READ_WRITE, ANON);
        Cpu c = machine.cpu(0);
        c.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            c.store(VA + off, 8, off ^ 0x5a5a);
        }
        return mm;
    }

    private void assertContentsOn(AddressSpace mm, long skipFrom, long skipTo) {
        Cpu c = machine.cpu(0);
        c.switchTo(mm);
        for (long off = 0; off < H; off += K4) {
            if (off < skipFrom || off >= skipTo) {
                assertThat(c.load(VA + off, 8)).as("page at +0x%x", off).isEqualTo(off ^ 0x5a5a);
            }
        }
    }

    @Test
    @DisplayName("move_pages of a PMD-mapped huge page moves it whole with a PMD migration entry (set_pmd_migration_entry, remove_migration_pmd)")
    void movePagesMovesAHugePageWhole() {
        AddressSpace mm = hugeOnTwoNodes();
        var result = machine.migration().movePages(mm, new long[] {VA + 3 * K4, VA}, new int[] {1, 1}, MigrationService.MPOL_MF_MOVE);
        assertThat(result.status()).as("the second address names the folio already queued").containsExactly(1, -Errno.EBUSY);
        assertThat(machine.page(mm.pageAt(VA)).node()).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).isEqualTo(512);
        assertThat(machine.vmstat().get("thp_migration_success")).isEqualTo(1);
        assertThat(machine.vmstat().get("pgmigrate_success")).isEqualTo(512);
        assertContentsOn(mm, 0, 0);
    }

    @Test
    @DisplayName("a huge page mapped by a PMD in one process and by PTEs in another moves whole; MPOL_MF_MOVE refuses it (shared)")
    void aHugePageMappedByPmdAndPtesMovesWhole() {
        AddressSpace mm = hugeOnTwoNodes();
        AddressSpace child = mm.fork();
        machine.cpu(0).switchTo(child);
        machine.cpu(0).store(VA + 7 * K4, 8, 99); // the child splits its PMD and copies one page
        long old = mm.pageAt(VA);
        assertThat(machine.migration().movePages(child, new long[] {VA + 9 * K4}, new int[] {1}, MigrationService.MPOL_MF_MOVE)
                .status()).as("mapped by both: not this process's alone").containsExactly(-Errno.EACCES);
        var result = machine.migration().movePages(child, new long[] {VA + 9 * K4}, new int[] {1}, MigrationService.MPOL_MF_MOVE_ALL);
        assertThat(result.status()).containsExactly(1);
        assertThat(mm.pageAt(VA)).isNotEqualTo(old);
        assertThat(machine.page(mm.pageAt(VA)).node()).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).as("the parent's PMD maps the new page").isEqualTo(512);
        assertThat(machine.page(child.pageAt(VA + 9 * K4)).node()).as("the child's PTEs too").isEqualTo(1);
        assertContentsOn(mm, 0, 0);
        assertThat(Fixtures.peek(machine, child, VA + 7 * K4)).isEqualTo(99);
        child.close();
        assertThat(machine.migration().migratePages(mm, new int[] {1}, new int[] {0}, MigrationService.MPOL_MF_MOVE)).isZero();
        assertThat(machine.page(mm.pageAt(VA)).node()).isZero();
        assertContentsOn(mm, 0, 0);
    }

    @Test
    @DisplayName("a partial munmap while the huge page is unmapped for migration splits its PMD migration entry; the rest maps the new page")
    void partialMunmapDuringMigrationSplitsTheMigrationEntry() {
        AddressSpace mm = hugeOnTwoNodes();
        machine.migration().setObserver(e -> {
            if (e.phase() == org.vmcore.api.MigrationPhase.AFTER_UNMAP) {
                mm.munmap(VA + 64 * K4, 2 * K4);
            }
        });
        var result = machine.migration().movePages(mm, new long[] {VA}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
        machine.migration().setObserver(null);
        assertThat(result.status()).containsExactly(1);
        assertThat(mm.counters().anonHugePages()).as("now mapped by PTEs").isZero();
        assertThat(mm.counters().anonPages()).isEqualTo(510);
        assertThat(machine.page(mm.pageAt(VA + 100 * K4)).node()).isEqualTo(1);
        assertContentsOn(mm, 64 * K4, 66 * K4);
        mm.close();
    }

    @Test
    @DisplayName("split_huge_page of a huge page two processes map by PMD: 512 pages of their own in both, PMDs split, data kept")
    void splitHugePagesSplitsItEverywhere() {
        AddressSpace parent = filledHuge(H);
        AddressSpace child = parent.fork();
        long head = parent.pageAt(VA);
        assertThat(machine.migration().splitHugePages(parent, VA, VA + H)).isEqualTo(1);
        assertThat(parent.counters().anonHugePages()).isZero();
        assertThat(child.counters().anonHugePages()).isZero();
        assertThat(parent.counters().anonPages()).isEqualTo(512);
        assertThat(machine.vmstat().get("thp_split_page")).isEqualTo(1);
        assertThat(machine.vmstat().get("thp_split_pmd")).isEqualTo(2);
        var page = machine.page(head + 7);
        assertThat(page.size()).isEqualTo(PageSize.SIZE_4K);
        assertThat(page.pfn()).isEqualTo(head + 7);
        assertThat(page.mapcount()).as("mapped in both").isEqualTo(2);
        assertThat(page.flags()).doesNotContain(org.vmcore.api.PageFlag.THP);
        assertContents(parent, VA, H, 0, 0);
        assertContents(child, VA, H, 0, 0);
        cpu.switchTo(child);
        cpu.store(VA + 3 * K4, 8, 1); // a 4 KiB copy-on-write now
        assertContents(parent, VA, H, 0, 0);
        child.close();
    }

    @Test
    @DisplayName("the split gives back the pages a partial munmap left behind; a GUP reference stops it")
    void splitFreesUnmappedPagesUnlessPinned() {
        AddressSpace mm = filledHuge(H);
        mm.munmap(VA + 16 * K4, 8 * K4);
        try (PageReference pinned = mm.getUserPageFast(VA, false)) {
            assertThat(pinned).isNotNull();
            String before = Fixtures.state(machine);
            assertThat(machine.migration().splitHugePages(mm, VA, VA + H)).as("held by a pin").isZero();
            assertThat(Fixtures.state(machine)).isEqualTo(before);
        }
        long free = machine.freeFrames();
        assertThat(machine.migration().splitHugePages(mm, 0x1000, VA + 2 * H)).isEqualTo(1);
        assertThat(machine.freeFrames()).as("the 8 unmapped pages").isEqualTo(free + 8);
        assertContents(mm, VA, H, 16 * K4, 24 * K4);
        assertThatThrownBy(() -> machine.migration().splitHugePages(mm, VA + 1, VA + H)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> machine.migration().splitHugePages(mm, VA, VA)).isInstanceOf(InvalidArgumentException.class);
    }

    @Test
    @DisplayName("soft offline of a page of a huge page splits it first (try_to_split_thp_page), then offlines that page alone")
    void softOfflineSplitsTheHugePage() {
        AddressSpace mm = filledHuge(H);
        long head = mm.pageAt(VA);
        assertThat(machine.migration().softOffline(head + 5)).isZero();
        assertThat(machine.page(head + 5).flags()).contains(org.vmcore.api.PageFlag.HWPOISON);
        assertThat(mm.pageAt(VA + 5 * K4)).isNotEqualTo(head + 5);
        assertThat(mm.pageAt(VA + 6 * K4)).isEqualTo(head + 6);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertContents(mm, VA, H, 0, 0);
    }

    @Test
    @DisplayName("reclaim runs the deferred split shrinker first (a partly unmapped huge page gives back its unmapped pages), then splits the huge pages it meets and swaps their pages")
    void reclaimSplitsPartlyUnmappedHugePages() {
        machine.close();
        machine = Machine.builder().node(GIB).cpus(2).thp(ThpMode.MADVISE).swap(64 * MIB).checkInvariantsAfterEveryOperation(true)
                .build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * H, Protection.READ_WRITE, ANON);
        mm.madvise(VA, 2 * H, Advice.HUGEPAGE);
        Cpu c = machine.cpu(0);
        c.switchTo(mm);
        for (long off = 0; off < 2 * H; off += K4) {
            c.store(VA + off, 8, off ^ 0x5a5a);
        }
        mm.munmap(VA + 100 * K4, 10 * K4); // the first huge page is queued for the deferred split
        long free = machine.freeFrames();
        assertThat(machine.reclaim(0, 0)).as("only the shrinker").isZero();
        assertThat(machine.freeFrames()).as("the 10 unmapped pages came back").isEqualTo(free + 10);
        assertThat(machine.vmstat().get("thp_split_page")).isEqualTo(1);
        assertThat(mm.counters().anonHugePages()).as("the second huge page is whole").isEqualTo(512);
        assertThat(machine.reclaim(0, 16)).as("4 KiB pages of split huge pages go").isEqualTo(16);
        assertThat(mm.counters().swapPages()).isEqualTo(16);
        assertThat(machine.reclaim(0, 4096)).as("the rest: the whole huge page is split too").isEqualTo(2 * 512 - 10 - 16);
        assertThat(mm.counters().anonHugePages()).isZero();
        assertThat(mm.counters().anonPages()).isZero();
        c.switchTo(mm);
        for (long off = 0; off < 2 * H; off += K4) {
            if (off < 100 * K4 || off >= 110 * K4) {
                assertThat(c.load(VA + off, 8)).isEqualTo(off ^ 0x5a5a);
            }
        }
    }

    @Test
    @DisplayName("MADV_PAGEOUT of huge pages with swap: each is split (no THP swap) and its 512 pages are swapped out, as Linux 6.18 did (swap.c: thp_split_page 2, pswpout 1024, RssAnon 0)")
    void pageoutSplitsHugePagesAndSwapsTheirPages() {
        machine.close();
        machine = Machine.builder().node(GIB).cpus(2).thp(ThpMode.MADVISE).swap(64 * MIB).checkInvariantsAfterEveryOperation(true)
                .build();
        AddressSpace mm = machine.createAddressSpace();
        mm.mmap(VA, 2 * H, Protection.READ_WRITE, ANON);
        mm.madvise(VA, 2 * H, Advice.HUGEPAGE);
        Cpu c = machine.cpu(0);
        c.switchTo(mm);
        for (long off = 0; off < 2 * H; off += K4) {
            c.store(VA + off, 8, off ^ 0x5a5a);
        }
        assertThat(mm.madvise(VA, 2 * H, Advice.PAGEOUT)).isZero();
        assertThat(machine.vmstat().get("thp_split_page")).isEqualTo(2);
        assertThat(machine.vmstat().get("pswpout")).isEqualTo(1024);
        assertThat(mm.counters().anonPages()).isZero();
        assertThat(mm.counters().swapPages()).isEqualTo(1024);
        c.switchTo(mm);
        for (long off = 0; off < 2 * H; off += K4) {
            assertThat(c.load(VA + off, 8)).isEqualTo(off ^ 0x5a5a);
        }
    }
}
