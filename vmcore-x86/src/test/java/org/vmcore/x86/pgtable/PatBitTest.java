package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;

/** The PAT bit: bit 7 of a 4 KiB PTE, bit 12 of a 2 MiB or 1 GiB leaf (arch/x86 pgtable_types.h). */
class PatBitTest {
    private static final long GIB = 1L << 30;
    private static final long USER_RW = Pte.PRESENT | Pte.RW | Pte.USER;
    private static final long CACHING_4K = Pte.PWT | Pte.PCD | Pte.PAT;
    private static final long CACHING_HUGE = Pte.PWT | Pte.PCD | Pte.PAT_LARGE;

    private final PhysicalMemory memory = new PhysicalMemory(4 * GIB);

    @AfterEach
    void close() {
        memory.close();
    }

    @Test
    @DisplayName("pte_modify keeps PWT, PCD and PAT (_PAGE_CHG_MASK) of a 4 KiB PTE, through PROT_NONE and back")
    void protectKeepsThePatBitOfA4kEntry() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long pfn = memory.allocate(0, 0, true);
        table.map(0x1000, pfn, PageSize.SIZE_4K, USER_RW | CACHING_4K);
        table.protect(0x1000, PageSize.SIZE_4K, Pte.PRESENT | Pte.USER);
        long ro = table.entry(0x1000, Level.PTE);
        assertThat(ro & CACHING_4K).as(Pte.describe(ro, Level.PTE)).isEqualTo(CACHING_4K);
        assertThat(ro & Pte.RW).isZero();
        table.protect(0x1000, PageSize.SIZE_4K, Pte.PROTNONE);
        table.protect(0x1000, PageSize.SIZE_4K, USER_RW);
        long rw = table.entry(0x1000, Level.PTE);
        assertThat(rw & CACHING_4K).as(Pte.describe(rw, Level.PTE)).isEqualTo(CACHING_4K);
        assertThat(Pte.pfn(rw)).isEqualTo(pfn);
        table.unmap(0x1000, PageSize.SIZE_4K);
        memory.free(pfn);
        table.destroy();
    }

    @Test
    @DisplayName("pmd_modify/pud_modify keep PAT_LARGE (bit 12, _HPAGE_CHG_MASK) of 2 MiB and 1 GiB leaves")
    void protectKeepsThePatBitOfHugeLeaves() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long two = memory.allocate(0, 9, true);
        long one = memory.allocate(0, 18, true);
        table.map(0x4020_0000L, two, PageSize.SIZE_2M, USER_RW | CACHING_HUGE);
        table.map(2 * GIB, one, PageSize.SIZE_1G, USER_RW | CACHING_HUGE);
        for (long flags : new long[] {Pte.PROTNONE, Pte.PRESENT | Pte.USER}) {
            table.protect(0x4020_0000L, PageSize.SIZE_2M, flags);
            table.protect(2 * GIB, PageSize.SIZE_1G, flags);
            long pmd = table.entry(0x4020_0000L, Level.PMD);
            long pud = table.entry(2 * GIB, Level.PUD);
            assertThat(pmd & (CACHING_HUGE | Pte.PSE)).as(Pte.describe(pmd, Level.PMD)).isEqualTo(CACHING_HUGE | Pte.PSE);
            assertThat(pud & (CACHING_HUGE | Pte.PSE)).as(Pte.describe(pud, Level.PUD)).isEqualTo(CACHING_HUGE | Pte.PSE);
            assertThat(Pte.pfn(pmd, PageSize.SIZE_2M)).isEqualTo(two);
            assertThat(Pte.pfn(pud, PageSize.SIZE_1G)).isEqualTo(one);
        }
        table.unmap(0x4020_0000L, PageSize.SIZE_2M);
        table.unmap(2 * GIB, PageSize.SIZE_1G);
        memory.free(two);
        memory.free(one);
        table.destroy();
    }

    @Test
    @DisplayName("describe names bit 7 PAT in a 4 KiB PTE, PS in a PMD or PUD, and bit 12 PAT in a huge leaf")
    void describeNamesBitSevenByLevel() {
        long pte = Pte.leaf(0x12345, PageSize.SIZE_4K, USER_RW | Pte.PAT);
        assertThat(Pte.describe(pte, Level.PTE)).contains(" PAT").doesNotContain(" PS").endsWith("pfn=0x12345");
        long pmd = Pte.leaf(0x12200, PageSize.SIZE_2M, USER_RW | Pte.PAT_LARGE);
        assertThat(Pte.describe(pmd, Level.PMD)).contains(" PS").contains(" PAT").endsWith("pfn=0x12200");
        long pud = Pte.leaf(0x40000, PageSize.SIZE_1G, USER_RW);
        assertThat(Pte.describe(pud, Level.PUD)).contains(" PS").doesNotContain("PAT").endsWith("pfn=0x40000");
        assertThat(Pte.describe(Pte.table(0x777), Level.PMD)).doesNotContain(" PS").doesNotContain("PAT").endsWith("pfn=0x777");
    }
}
