package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;

class PtDumpTest {
    private static final String BLANK = " ".repeat(30);

    @Test
    void dumpShowsOneLinePerRunInTheKernelFormat() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 30)) {
            PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
            long pfn = memory.allocate(0, 9, true);
            table.map(0x40_0000, pfn, PageSize.SIZE_4K, Pte.PRESENT | Pte.RW | Pte.USER | Pte.NX);
            table.map(0x40_1000, pfn + 1, PageSize.SIZE_4K, Pte.PRESENT | Pte.RW | Pte.USER | Pte.NX | Pte.ACCESSED);
            table.map(0x4000_0000L, pfn, PageSize.SIZE_2M, Pte.PRESENT | Pte.RW | Pte.USER);

            assertThat(table.dump().split("\n")).containsExactly(
                    "---[ User Space ]---",
                    "0x0000000000000000-0x0000000000400000           4M " + BLANK + "pmd",
                    "0x0000000000400000-0x0000000000402000           8K USR RW                     NX pte",
                    "0x0000000000402000-0x0000000000600000        2040K " + BLANK + "pte",
                    "0x0000000000600000-0x0000000040000000        1018M " + BLANK + "pmd",
                    "0x0000000040000000-0x0000000040200000           2M USR RW         PSE         x  pmd",
                    "0x0000000040200000-0x0000000080000000        1022M " + BLANK + "pmd",
                    "0x0000000080000000-0x0000008000000000         510G " + BLANK + "pud",
                    "0x0000008000000000-0x0000800000000000      130560G " + BLANK + "pgd");
        }
    }

    @Test
    void fiveLevelDumpsNameTheP4dAndCoverTheLargerHalf() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 30)) {
            PageTable table = new PageTable(memory, PagingMode.FIVE_LEVEL, 0);
            long pfn = memory.allocate(0, 0, true);
            table.map(1L << 48, pfn, PageSize.SIZE_4K, Pte.PRESENT | Pte.USER | Pte.GLOBAL);
            String dump = table.dump();
            assertThat(dump).contains("0x0000000000000000-0x0001000000000000         256T " + BLANK + "pgd");
            assertThat(dump).contains("0x0001000000000000-0x0001000000001000           4K USR ro                 GLB x  pte");
            assertThat(dump).endsWith("-0x0100000000000000       65024T " + BLANK + "pgd\n");
            assertThat(dump).contains(BLANK + "p4d");
        }
    }
}
