package org.vmcore.x86.pgtable;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.x86.pgtable.PageFaultCode.FETCH;
import static org.vmcore.x86.pgtable.PageFaultCode.PROTECTION;
import static org.vmcore.x86.pgtable.PageFaultCode.RESERVED;
import static org.vmcore.x86.pgtable.PageFaultCode.USER;
import static org.vmcore.x86.pgtable.PageFaultCode.WRITE;

import java.util.EnumMap;
import java.util.Map;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.EnumSource;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;

class WalkerTest {
    private static final long USER_RW = Pte.PRESENT | Pte.RW | Pte.USER;

    private final PhysicalMemory memory = new PhysicalMemory(4L << 30);
    private final Walker walker = new Walker(memory);
    private final WalkResult out = new WalkResult();

    @AfterEach
    void close() {
        memory.close();
    }

    static Stream<Arguments> sizesAndModes() {
        return Stream.of(PagingMode.values())
                .flatMap(mode -> Stream.of(PageSize.values()).map(size -> Arguments.of(mode, size)));
    }

    @ParameterizedTest
    @MethodSource("sizesAndModes")
    void walksTranslateEverySizeInBothModesAndSetAccessedAndDirty(PagingMode mode, PageSize size) {
        PageTable table = new PageTable(memory, mode, 0);
        long pfn = memory.allocate(0, size.order(), true);
        long va = mode == PagingMode.FIVE_LEVEL ? (3L << 50) + (5L << 30) : 5L << 30;
        table.map(va, pfn, size, USER_RW);
        long offset = size.bytes() - 8;
        Map<Level, Boolean> hadAccessed = new EnumMap<>(Level.class);
        for (Level level = Level.root(mode); ; level = level.below()) {
            hadAccessed.put(level, (table.entry(va, level) & Pte.ACCESSED) != 0);
            if (level == Level.ofLeaf(size)) {
                break;
            }
        }
        assertThat(hadAccessed.get(Level.ofLeaf(size))).as("mapped without A").isFalse();

        assertThat(walker.walk(table, va + offset, USER, out)).as(out.toString()).isTrue();
        assertThat(out.physicalAddress()).isEqualTo((pfn << 12) + offset);
        assertThat(out.pageSize()).isEqualTo(size);
        assertThat(out.pagePfn()).isEqualTo(pfn);
        assertThat(out.level()).isEqualTo(Level.ofLeaf(size));
        long leaf = table.entry(va, Level.ofLeaf(size));
        assertThat(leaf & Pte.ACCESSED).as("read sets A").isNotZero();
        assertThat(leaf & Pte.DIRTY).as("read leaves D clear").isZero();
        for (Level level = Level.root(mode); level != Level.ofLeaf(size); level = level.below()) {
            assertThat(table.entry(va, level) & Pte.ACCESSED).as("A at %s", level).isNotZero();
        }

        hadAccessed.forEach((level, had) -> {
            assertThat(out.setAccessed(level)).as("the first walk set A at %s exactly where it was clear", level).isEqualTo(!had);
            assertThat(out.setDirty(level)).as("a read sets no D at %s", level).isFalse();
        });

        assertThat(walker.walk(table, va, USER | WRITE, out)).isTrue();
        assertThat(table.entry(va, Level.ofLeaf(size)) & Pte.DIRTY).as("write sets D").isNotZero();
        assertThat(out.entry() & Pte.DIRTY).isNotZero();
        assertThat(out.setDirty(Level.ofLeaf(size))).as("the write walk set D in the leaf").isTrue();
        assertThat(out.setAccessed(Level.ofLeaf(size))).as("A was set already").isFalse();
        assertThat(walker.walk(table, va, USER | WRITE, out)).isTrue();
        assertThat(out.setDirty(Level.ofLeaf(size))).as("D was set already").isFalse();
    }

    @Test
    void fiveLevelAddressesAreNonCanonicalUnderFourLevelPaging() {
        long va = 3L << 50;
        PageTable four = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        assertThat(walker.walk(four, va, USER, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(PageFaultCode.GENERAL_PROTECTION | USER);
        assertThat(walker.walk(four, 0x0000_8000_0000_0000L, 0, out)).isFalse();
        assertThat(out.faultCode() & PageFaultCode.GENERAL_PROTECTION).isNotZero();

        PageTable five = new PageTable(memory, PagingMode.FIVE_LEVEL, 0);
        assertThat(walker.walk(five, va, USER, out)).as("canonical under LA57, merely not present").isFalse();
        assertThat(out.faultCode()).isEqualTo(USER);
        assertThat(out.level()).isEqualTo(Level.PML5);
        assertThat(walker.walk(five, 1L << 56, USER, out)).isFalse();
        assertThat(out.faultCode() & PageFaultCode.GENERAL_PROTECTION).as("bit 56 set, 63..57 clear").isNotZero();
    }

    @Test
    void notPresentFaultsReportWhereTheWalkStopped() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        assertThat(walker.walk(table, 0x1000, USER | WRITE, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(USER | WRITE);
        assertThat(out.level()).isEqualTo(Level.PML4);

        table.map(0x20_0000, memory.allocate(0, 0, true), PageSize.SIZE_4K, USER_RW);
        assertThat(walker.walk(table, 0x20_1000, USER, out)).isFalse();
        assertThat(out.level()).isEqualTo(Level.PTE);
        assertThat(out.faultCode() & PROTECTION).isZero();
    }

    @Test
    void permissionsAreCheckedOverAllLevelsAndFailedWalksSetNoBits() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long ro = 0x1000, kernel = 0x2000, noexec = 0x3000;
        table.map(ro, memory.allocate(0, 0, true), PageSize.SIZE_4K, Pte.PRESENT | Pte.USER);
        table.map(kernel, memory.allocate(0, 0, true), PageSize.SIZE_4K, Pte.PRESENT | Pte.RW);
        table.map(noexec, memory.allocate(0, 0, true), PageSize.SIZE_4K, USER_RW | Pte.NX);

        assertThat(walker.walk(table, ro, USER | WRITE, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(PROTECTION | WRITE | USER);
        assertThat(table.entry(ro, Level.PTE) & Pte.ACCESSED).as("a failed walk sets no A").isZero();
        assertThat(walker.walk(table, ro, WRITE, out)).as("CR0.WP: supervisor writes obey RW").isFalse();
        assertThat(walker.walk(table, ro, USER, out)).isTrue();

        assertThat(walker.walk(table, kernel, USER, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(PROTECTION | USER);
        assertThat(walker.walk(table, kernel, WRITE, out)).as("supervisor may use it").isTrue();

        assertThat(walker.walk(table, noexec, USER | FETCH, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(PROTECTION | USER | FETCH);
        assertThat(walker.walk(table, ro, USER | FETCH, out)).isTrue();
    }

    @Test
    void effectiveBitsAndRwAndUserAndOrNxOverEveryLevelReadAndTheLevelsAbove() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long va = 7L << 30;
        table.map(va, memory.allocate(0, 0, true), PageSize.SIZE_4K, USER_RW);
        // Each walk twice: the first sets A (the full walk), the second finds it set (the fast one).
        for (int pass = 0; pass < 2; pass++) {
            assertThat(walker.walk(table, va, USER, out)).isTrue();
            assertThat(out.effectiveBits()).as("pass %d", pass).isEqualTo(Pte.RW | Pte.USER);
        }
        clearOrSet(table, va, Level.PMD, Pte.RW, 0);
        clearOrSet(table, va, Level.PUD, 0, Pte.NX);
        for (int pass = 0; pass < 2; pass++) {
            assertThat(walker.walk(table, va, USER, out)).isTrue();
            assertThat(out.effectiveBits()).as("RW clear in the PMD, NX in the PUD, pass %d", pass)
                    .isEqualTo(Pte.USER | Pte.NX);
        }
        clearOrSet(table, va, Level.PML4, Pte.USER, 0);
        assertThat(walker.walk(table, va, USER, out)).isFalse();
        assertThat(out.effectiveBits()).as("nothing after a failed walk").isZero();
        assertThat(walker.walk(table, va, 0, out)).isTrue();
        assertThat(out.effectiveBits()).isEqualTo(Pte.NX);

        // From the PMD table, as after a paging-structure-cache hit: the levels above count
        // through upperBits only.
        long pmdTable = out.tablePfn(Level.PMD);
        assertThat(walker.walkFrom(PagingMode.FOUR_LEVEL, va, USER, out, Level.PMD, pmdTable, Pte.RW | Pte.USER))
                .isTrue();
        assertThat(out.effectiveBits()).as("the PMD still clears RW").isEqualTo(Pte.USER);
        assertThat(walker.walkFrom(PagingMode.FOUR_LEVEL, va, USER, out, Level.PMD, pmdTable, Pte.USER | Pte.NX))
                .isTrue();
        assertThat(out.effectiveBits()).isEqualTo(Pte.USER | Pte.NX);
        clearOrSet(table, va, Level.PMD, 0, Pte.RW);
        assertThat(walker.walkFrom(PagingMode.FOUR_LEVEL, va, 0, out, Level.PMD, pmdTable, Pte.RW)).isTrue();
        assertThat(out.effectiveBits()).as("USER cleared above").isEqualTo(Pte.RW);
        // A paging-structure-cache value passed whole: its address bits are not permission bits.
        long cached = (pmdTable << 12) | Pte.PRESENT | Pte.ACCESSED | Pte.USER;
        assertThat(walker.walkFrom(PagingMode.FOUR_LEVEL, va, USER, out, Level.PMD, pmdTable, cached)).isTrue();
        assertThat(out.effectiveBits()).isEqualTo(Pte.USER);
        assertThat(out.tablePfn(Level.PMD)).isEqualTo(pmdTable);
        assertThat(out.tablePfn(Level.PUD)).as("not read").isEqualTo(-1);
    }

    @Test
    void badWalkArgumentsAreRejectedAndLeaveTheLastResult() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long va = 0x7000_0000_1000L;
        table.map(va, memory.allocate(0, 0, true), PageSize.SIZE_4K, USER_RW);
        assertThat(walker.walk(table, va, USER, out)).isTrue();
        String before = out.toString();
        long pmdTable = out.tablePfn(Level.PMD);
        assertThatThrownBy(() -> walker.walk(table, va, 1, out)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("access=1").hasMessageContaining("WRITE (2), USER (4) and FETCH (16)");
        assertThatThrownBy(() -> walker.walkFrom(PagingMode.FOUR_LEVEL, va, USER, out, Level.PML5, pmdTable, Pte.USER))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("startLevel=PML5");
        for (long bad : new long[] {-1, 1L << 40}) {
            assertThatThrownBy(() -> walker.walkFrom(PagingMode.FOUR_LEVEL, va, USER, out, Level.PMD, bad, Pte.USER))
                    .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("tablePfn=0x" + Long.toHexString(bad))
                    .hasMessageContaining("page frame number");
        }
        assertThat(out.toString()).isEqualTo(before);
        assertThat(out.tablePfn(Level.PMD)).isEqualTo(pmdTable);
    }

    private static void clearOrSet(PageTable table, long va, Level level, long clear, long set) {
        long slot = table.raw().slot(va, level);
        long e = table.raw().readSlot(slot);
        assertThat(table.raw().compareAndSetSlot(slot, e, (e & ~clear) | set)).isTrue();
    }

    @Test
    void protectionKeysAreCheckedAgainstPkruForUserDataAccesses() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        table.map(0x1000, memory.allocate(0, 0, true), PageSize.SIZE_4K, USER_RW | (3L << Pte.PKEY_SHIFT));
        walker.setPkru(1 << 7); // write-disable key 3
        assertThat(walker.walk(table, 0x1000, USER, out)).isTrue();
        assertThat(walker.walk(table, 0x1000, USER | WRITE, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(PROTECTION | WRITE | USER | PageFaultCode.PKEY);
        walker.setPkru(1 << 6); // access-disable key 3
        assertThat(walker.walk(table, 0x1000, USER, out)).isFalse();
        assertThat(walker.walk(table, 0x1000, USER | FETCH, out)).as("keys do not apply to fetches").isTrue();
        assertThat(walker.walk(table, 0x1000, 0, out)).as("nor to supervisor accesses").isTrue();
    }

    @Test
    void reservedBitsFaultWithRsvd() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long pfn = memory.allocate(0, 0, true);
        table.map(0x1000, pfn, PageSize.SIZE_4K, USER_RW);
        long slot = table.raw().slot(0x1000, Level.PTE);
        long good = table.raw().readSlot(slot);
        // a PFN bit above MAXPHYADDR (46)
        table.raw().compareAndSetSlot(slot, good, good | (1L << 50));
        assertThat(walker.walk(table, 0x1000, USER, out)).isFalse();
        assertThat(out.faultCode()).isEqualTo(USER | PROTECTION | RESERVED);
        assertThat(new Walker(memory, 52).walk(table, 0x1000, USER, out)).as("not reserved with MAXPHYADDR 52").isTrue();
        table.raw().compareAndSetSlot(slot, table.raw().readSlot(slot), good);

        // PS in a PML4 entry
        long pml4 = table.raw().slot(0x1000, Level.PML4);
        long e = table.raw().readSlot(pml4);
        table.raw().compareAndSetSlot(pml4, e, e | Pte.PSE);
        assertThat(walker.walk(table, 0x1000, USER, out)).isFalse();
        assertThat(out.faultCode() & RESERVED).isNotZero();
        assertThat(out.level()).isEqualTo(Level.PML4);
        table.raw().compareAndSetSlot(pml4, table.raw().readSlot(pml4), e);
        assertThat(walker.walk(table, 0x1000, USER, out)).isTrue();

        // low PFN bits of 2 MiB and 1 GiB leaves
        long twoMeg = memory.allocate(0, 9, true);
        table.map(0x4000_0000L, twoMeg, PageSize.SIZE_2M, USER_RW);
        long pmd = table.raw().slot(0x4000_0000L, Level.PMD);
        table.raw().compareAndSetSlot(pmd, table.raw().readSlot(pmd), table.raw().readSlot(pmd) | (1L << 13));
        assertThat(walker.walk(table, 0x4000_0000L, USER, out)).isFalse();
        assertThat(out.faultCode() & RESERVED).isNotZero();
        long oneGig = memory.allocate(0, 18, true);
        table.map(0x80_0000_0000L, oneGig, PageSize.SIZE_1G, USER_RW);
        long pud = table.raw().slot(0x80_0000_0000L, Level.PUD);
        table.raw().compareAndSetSlot(pud, table.raw().readSlot(pud), table.raw().readSlot(pud) | (1L << 20));
        assertThat(walker.walk(table, 0x80_0000_0000L, USER, out)).isFalse();
        assertThat(out.faultCode() & RESERVED).isNotZero();
        assertThat(out.level()).isEqualTo(Level.PUD);
    }

    @Test
    void protNoneAndSwapEntriesAreNotPresentToTheHardware() {
        PageTable table = new PageTable(memory, PagingMode.FOUR_LEVEL, 0);
        long pfn = memory.allocate(0, 0, true);
        table.map(0x1000, pfn, PageSize.SIZE_4K, Pte.PROTNONE | Pte.USER);
        assertThat(walker.walk(table, 0x1000, USER, out)).isFalse();
        assertThat(out.faultCode() & PROTECTION).isZero();
        table.raw().install(0x2000, Level.PTE, MigrationEntry.make(MigrationEntry.Kind.WRITE, pfn, true, true, 0));
        assertThat(walker.walk(table, 0x2000, USER | WRITE, out)).isFalse();
        assertThat(MigrationEntry.isMigration(out.entry())).isTrue();
        assertThat(MigrationEntry.pfn(out.entry())).isEqualTo(pfn);
    }

    @ParameterizedTest
    @EnumSource(PagingMode.class)
    void translateIsASoftwareWalkThatChangesNothing(PagingMode mode) {
        PageTable table = new PageTable(memory, mode, 0);
        long pfn = memory.allocate(0, 9, true);
        table.map(0x4000_0000L, pfn, PageSize.SIZE_2M, Pte.PRESENT | Pte.RW);
        String before = table.dump() + table.entry(0x4000_0000L, Level.PMD);
        assertThat(walker.translate(table.cr3(), mode, 0x4000_1234L, out)).isTrue();
        assertThat(out.physicalAddress()).isEqualTo((pfn << 12) + 0x1234);
        assertThat(table.entry(0x4000_0000L, Level.PMD) & Pte.ACCESSED).as("no A on the leaf").isZero();
        assertThat(table.dump() + table.entry(0x4000_0000L, Level.PMD)).isEqualTo(before);
        assertThat(walker.translate(table.cr3(), mode, 0x8000_0000L, out)).isFalse();
        assertThat(out.level()).isEqualTo(Level.PUD);
    }
}
