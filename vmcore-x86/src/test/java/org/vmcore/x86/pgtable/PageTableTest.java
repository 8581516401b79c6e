package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.function.Executable;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.VmException;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.internal.SharedSecrets;

class PageTableTest {
    private static final long USER_RW = Pte.PRESENT | Pte.RW | Pte.USER;
    private static final long GIB = 1L << 30;

    private final PhysicalMemory memory = new PhysicalMemory(4 * GIB);
    private final Walker walker = new Walker(memory);
    private final WalkResult out = new WalkResult();

    @AfterEach
    void close() {
        memory.close();
    }

    @Test
    void mapAllocatesTablesOnDemandAndUnmapReturnsTheEntryWithHardwareBits() {
        long free = memory.freeFrames();
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        assertThat(table.tablePages()).isEqualTo(1);
        long pfn = memory.allocate(0, 0, true);
        table.map(0x7f00_0000_1000L, pfn, PageSize.SIZE_4K, USER_RW);
        assertThat(table.tablePages()).as("PUD, PMD and PTE tables added").isEqualTo(4);
        table.map(0x7f00_0000_2000L, pfn, PageSize.SIZE_4K, USER_RW);
        assertThat(table.tablePages()).as("same PTE table").isEqualTo(4);

        assertThat(walker.walk(table, 0x7f00_0000_1008L, PageFaultCode.USER | PageFaultCode.WRITE, out)).isTrue();
        long old = table.unmap(0x7f00_0000_1000L, PageSize.SIZE_4K);
        assertThat(Pte.pfn(old)).isEqualTo(pfn);
        assertThat(old & (Pte.ACCESSED | Pte.DIRTY)).isEqualTo(Pte.ACCESSED | Pte.DIRTY);
        assertThat(walker.walk(table, 0x7f00_0000_1008L, PageFaultCode.USER, out)).isFalse();

        table.unmap(0x7f00_0000_2000L, PageSize.SIZE_4K);
        assertThat(table.freeEmptyTables(0, PagingMode.FOUR_LEVEL.userAddressLimit())).isEqualTo(3);
        assertThat(table.tablePages()).isEqualTo(1);
        memory.free(pfn);
        table.destroy();
        assertThat(memory.freeFrames()).isEqualTo(free);
    }

    @Test
    void freeEmptyTablesKeepsTablesThatStillMapSomething() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long pfn = memory.allocate(0, 0, true);
        table.map(0x1000, pfn, PageSize.SIZE_4K, USER_RW);
        table.map(0x40_0000, pfn, PageSize.SIZE_4K, USER_RW);
        table.unmap(0x1000, PageSize.SIZE_4K);
        assertThat(table.freeEmptyTables(0, 0x20_0000)).as("only the first PTE table is empty").isEqualTo(1);
        assertThat(table.tablePages()).isEqualTo(4);
        assertThat(walker.walk(table, 0x40_0000, PageFaultCode.USER, out)).isTrue();
    }

    @Test
    void hugeLeavesMapAndUnmapAtPmdAndPud() {
        PageTable table = new PageTable(memory, PagingMode.FIVE_LEVEL, 0);
        long two = memory.allocate(0, 9, true);
        long one = memory.allocate(0, 18, true);
        table.map(0x4020_0000L, two, PageSize.SIZE_2M, USER_RW);
        table.map(2 * GIB, one, PageSize.SIZE_1G, USER_RW);
        assertThat(Pte.pfn(table.entry(0x4020_0000L, Level.PMD), PageSize.SIZE_2M)).isEqualTo(two);
        assertThat(Pte.pfn(table.entry(2 * GIB, Level.PUD), PageSize.SIZE_1G)).isEqualTo(one);
        assertThat(table.entry(2 * GIB, Level.PMD)).as("no PMD below a 1G leaf").isZero();
        assertThat(table.raw().slot(2 * GIB + 4096, Level.PTE)).isEqualTo(-1);
        assertThat(Pte.pfn(table.unmap(2 * GIB, PageSize.SIZE_1G), PageSize.SIZE_1G)).isEqualTo(one);
        assertThat(Pte.pfn(table.unmap(0x4020_0000L, PageSize.SIZE_2M), PageSize.SIZE_2M)).isEqualTo(two);
    }

    @Test
    void protectReplacesProtectionBitsAndKeepsPfnAccessedDirty() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        for (PageSize size : PageSize.values()) {
            long va = 3 * GIB + (size == PageSize.SIZE_1G ? 0 : size.bytes() * 3);
            if (size == PageSize.SIZE_1G) {
                va = 64 * GIB;
            }
            long pfn = memory.allocate(0, size.order(), true);
            table.map(va, pfn, size, USER_RW | Pte.SOFT_DIRTY | (size == PageSize.SIZE_4K ? 0 : Pte.PAT_LARGE));
            assertThat(walker.walk(table, va, PageFaultCode.USER | PageFaultCode.WRITE, out)).isTrue();

            table.protect(va, size, Pte.PRESENT | Pte.USER | Pte.NX);
            long e = table.entry(va, Level.ofLeaf(size));
            assertThat(e & Pte.RW).isZero();
            assertThat(e & Pte.NX).isNotZero();
            assertThat(e & (Pte.ACCESSED | Pte.DIRTY | Pte.SOFT_DIRTY)).isEqualTo(Pte.ACCESSED | Pte.DIRTY | Pte.SOFT_DIRTY);
            assertThat(Pte.pfn(e, size)).isEqualTo(pfn);
            assertThat(walker.walk(table, va, PageFaultCode.USER | PageFaultCode.WRITE, out)).isFalse();

            table.protect(va, size, Pte.PROTNONE | Pte.USER);
            e = table.entry(va, Level.ofLeaf(size));
            assertThat(Pte.isInverted(e)).isTrue();
            assertThat(Pte.pfn(e, size)).as("%s PROT_NONE keeps the pfn", size).isEqualTo(pfn);
            assertThat(walker.walk(table, va, PageFaultCode.USER, out)).isFalse();

            table.protect(va, size, USER_RW);
            e = table.entry(va, Level.ofLeaf(size));
            assertThat(Pte.pfn(e, size)).isEqualTo(pfn);
            assertThat(size == PageSize.SIZE_4K || (e & Pte.PAT_LARGE) != 0).as("%s keeps PAT", size).isTrue();
            assertThat(walker.walk(table, va, PageFaultCode.USER | PageFaultCode.WRITE, out)).isTrue();
            assertThat(out.pagePfn()).isEqualTo(pfn);
        }
    }

    @Test
    void aPmdTableCanBeSharedByTwoPageTablesAndUnsharedAgain() {
        long free = memory.freeFrames();
        PageTable a = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        PageTable b = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long page = memory.allocate(0, 9, true);
        a.map(GIB + 0x20_0000, page, PageSize.SIZE_2M, USER_RW);
        long pmdTable = a.raw().slot(GIB, Level.PMD) >>> 12;

        SharedSecrets.memMap(memory).addPtShareCount(pmdTable, 1); // what huge_pmd_share does
        b.raw().populate(7 * GIB, Level.PUD, pmdTable);
        assertThat(b.tablePages()).as("root, its own PUD table and the shared PMD table").isEqualTo(3);
        assertThat(a.tablePages()).as("root, PUD and the PMD table it allocated").isEqualTo(3);
        assertThat(walker.walk(b, 7 * GIB + 0x20_0010, PageFaultCode.USER, out)).isTrue();
        assertThat(out.physicalAddress()).isEqualTo((page << 12) + 0x10);

        // b exits: the shared table survives and keeps mapping for a
        b.destroy();
        assertThat(memory.descriptors().ptShareCount(pmdTable)).isZero();
        assertThat(walker.walk(a, GIB + 0x20_0010, PageFaultCode.USER, out)).isTrue();

        PageTable c = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        SharedSecrets.memMap(memory).addPtShareCount(pmdTable, 1);
        c.raw().populate(GIB, Level.PUD, pmdTable);
        assertThat(c.freeEmptyTables(GIB, 2 * GIB)).as("a shared table is never freed").isZero();
        assertThat(c.tablePages()).isEqualTo(3);
        assertThat(c.raw().clearTable(GIB, Level.PUD)).isEqualTo(pmdTable); // huge_pmd_unshare's pud_clear
        assertThat(c.tablePages()).as("unsharing drops the table from c's count").isEqualTo(2);
        SharedSecrets.memMap(memory).addPtShareCount(pmdTable, -1);
        assertThat(walker.walk(c, GIB + 0x20_0000, PageFaultCode.USER, out)).isFalse();
        assertThat(walker.walk(a, GIB + 0x20_0000, PageFaultCode.USER, out)).isTrue();

        c.destroy();
        a.unmap(GIB + 0x20_0000, PageSize.SIZE_2M);
        a.destroy();
        memory.free(page);
        assertThat(memory.freeFrames()).isEqualTo(free);
    }

    @Test
    void badInputIsRejectedWithAClearMessageAndNothingChanges() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long pfn = memory.allocate(0, 9, true);
        table.map(0x20_0000, pfn, PageSize.SIZE_4K, USER_RW);
        table.map(0x4000_0000L, pfn, PageSize.SIZE_2M, USER_RW);
        long nonCanonical = 0x0000_8000_0000_0000L;

        expectRejected(table, () -> table.map(0x20_1000, pfn, PageSize.SIZE_2M, USER_RW), "va=0x201000", "aligned to 2M");
        expectRejected(table, () -> table.map(0x1234, pfn, PageSize.SIZE_4K, USER_RW), "va=0x1234", "aligned to 4K");
        expectRejected(table, () -> table.map(nonCanonical, pfn, PageSize.SIZE_4K, USER_RW), "va=0x800000000000", "canonical");
        expectRejected(table, () -> table.map(0x30_0000, 1L << 30, PageSize.SIZE_4K, USER_RW), "pfn=0x40000000", "inside memory");
        expectRejected(table, () -> table.map(0x30_0000, -1, PageSize.SIZE_4K, USER_RW), "pfn=0xffffffffffffffff", "inside memory");
        expectRejected(table, () -> table.map(0x8000_0000L, pfn + 1, PageSize.SIZE_2M, USER_RW), "pfn=", "aligned to 2M");
        expectRejected(table, () -> table.map(0x30_0000, pfn, PageSize.SIZE_4K, USER_RW | (1L << 52)), "flags=", "must not carry");
        expectRejected(table, () -> table.map(0x8000_0000L, pfn, PageSize.SIZE_2M, USER_RW | Pte.PSE), "flags=", "must not carry");
        expectRejected(table, () -> table.map(0x30_0000, pfn, PageSize.SIZE_4K, Pte.RW), "flags=0x2", "PRESENT or PROTNONE");
        expectRejected(table, () -> table.map(0x20_0000, pfn, PageSize.SIZE_4K, USER_RW), "va=0x200000", "mapped already");
        expectRejected(table, () -> table.map(0x20_0000, pfn, PageSize.SIZE_2M, USER_RW), "va=0x200000", "mapped already");
        expectRejected(table, () -> table.map(0x4000_1000L, pfn, PageSize.SIZE_4K, USER_RW), "va=0x40001000", "not a table");
        expectRejected(table, () -> table.unmap(0x30_0000, PageSize.SIZE_4K), "va=0x300000", "must be mapped");
        expectRejected(table, () -> table.unmap(0x0, PageSize.SIZE_2M), "va=0x0", "must be mapped");
        expectRejected(table, () -> table.protect(0x20_0000, PageSize.SIZE_4K, Pte.PRESENT | Pte.DIRTY), "protFlags=0x41", "only PRESENT");
        expectRejected(table, () -> table.protect(0x20_0000, PageSize.SIZE_4K, Pte.RW), "protFlags=0x2", "PRESENT or PROTNONE");
        expectRejected(table, () -> table.raw().install(0x30_0000, Level.PML4, 1), "level=PML4", "PUD, PMD or PTE");
        expectRejected(table, () -> table.raw().install(0x30_0000, Level.PTE, 0), "entry=0x0", "empty");
        expectRejected(table, () -> table.raw().install(0x8000_0000L, Level.PMD, Pte.table(pfn)), "entry=", "leaf");
        expectRejected(table, () -> table.raw().populate(0x8000_0000L, Level.PUD, pfn), "tablePfn=", "page-table frame");
        expectRejected(table, () -> table.raw().populate(0x8000_0000L, Level.PML4, pfn), "level=PML4", "below the root");
        expectRejected(table, () -> table.raw().slot(0x1000, Level.PML5), "level=PML5", "FOUR_LEVEL");
        expectRejected(table, () -> table.raw().clearTable(0x4000_0000L, Level.PMD), "va=0x40000000", "points to a table");
        expectRejected(table, () -> table.freeEmptyTables(0x1000, 0x1000), "end=0x1000", "above start");
        expectRejected(table, () -> table.dump(0x1000, nonCanonical + 4096), "end=", "canonical half");
    }

    @Test
    void runningOutOfFramesForTablesChangesNothing() {
        try (PhysicalMemory small = new PhysicalMemory(4 * 4096)) {
            PageTable table = new PageTable(small, PagingMode.FOUR_LEVEL, 0);
            long pfn = small.allocate(0, 0, true);
            // root and one page in use; 2 frames left, but the mapping needs PUD, PMD and PTE tables
            String before = table.dump();
            assertThatThrownBy(() -> table.map(0x1000, pfn, PageSize.SIZE_4K, USER_RW))
                    .isInstanceOf(OutOfMemoryException.class).hasMessageContaining("page table");
            assertThat(table.dump()).isEqualTo(before);
            assertThat(small.freeFrames()).as("the two tables it did get were given back").isEqualTo(2);
            assertThat(table.tablePages()).isEqualTo(1);
            small.free(pfn);
            table.map(0x1000, pfn, PageSize.SIZE_4K, USER_RW);
            assertThat(table.tablePages()).isEqualTo(4);
            assertThat(small.freeFrames()).isZero();
        }
    }

    @Test
    void destroyedTablesRefuseUse() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        table.destroy();
        assertThatThrownBy(() -> table.map(0, 0, PageSize.SIZE_4K, USER_RW)).isInstanceOf(org.vmcore.api.ClosedException.class);
        table.destroy();
    }

    private void expectRejected(PageTable table, Executable call, String value, String rule) {
        String dump = table.dump();
        long free = memory.freeFrames();
        long tables = table.tablePages();
        VmException thrown = org.junit.jupiter.api.Assertions.assertThrows(VmException.class, call);
        assertThat(thrown).isInstanceOf(InvalidArgumentException.class).hasMessageContaining(value).hasMessageContaining(rule);
        assertThat(table.dump()).as("tables unchanged after: %s", thrown.getMessage()).isEqualTo(dump);
        assertThat(memory.freeFrames()).as("frames unchanged after: %s", thrown.getMessage()).isEqualTo(free);
        assertThat(table.tablePages()).isEqualTo(tables);
    }
}
