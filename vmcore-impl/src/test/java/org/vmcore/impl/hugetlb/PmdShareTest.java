package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.Fixtures.peek;
import static org.vmcore.impl.Fixtures.poke;

import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.junit.jupiter.params.provider.ValueSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/** PMD-table sharing of hugetlb mappings, checked against the counts Linux reports. */
@SuppressWarnings("try") // a lock hold is used only for its scope
class PmdShareTest {
    private static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;

    private final Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 1100)
            .hugePages(0, PageSize.SIZE_1G, 1).checkInvariantsAfterEveryOperation(true).build();
    private final HugetlbFile file = machine.hugetlbfs().create("shm", 2 * GIB, PageSize.SIZE_2M);

    @AfterEach
    void close() {
        machine.close();
    }

    private static long pmdTable(AddressSpace mm, long va) {
        long pud = ((SimAddressSpace) mm).pageTable().entry(va & -GIB, Level.PUD);
        return Pte.isPresent(pud) ? Pte.pfn(pud) : -1;
    }

    private int shareCount(long tablePfn) {
        return ((SimMachine) machine).memory().descriptors().ptShareCount(tablePfn);
    }

    @Test
    void aSecondProcessMappingAnAlignedWindowHoldsNoPmdTableOfItsOwn() {
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, 5 * GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        assertThat(a.fault(GIB + 0x40_0000, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        poke(machine, a, GIB + 0x40_0010, 42);

        long freeBefore = machine.freeFrames();
        assertThat(b.fault(5 * GIB + 0x40_0000, Access.READ)).isEqualTo(FaultResult.SHARED_TABLE);
        assertThat(freeBefore - machine.freeFrames()).as("b allocated only its PUD table").isEqualTo(1);
        assertThat(peek(machine, b, 5 * GIB + 0x40_0010)).isEqualTo(42);

        long table = pmdTable(a, GIB);
        assertThat(pmdTable(b, 5 * GIB)).isEqualTo(table);
        assertThat(shareCount(table)).isEqualTo(1);
        long page = file.pageAt(2);
        assertThat(machine.page(page).mapcount()).as("one PMD entry maps it, however many processes use it").isEqualTo(1);
        assertThat(machine.page(page).refcount()).as("page cache + one mapping").isEqualTo(2);
        // What /proc reports: nr_pmds counts the shared table in both; HugetlbPages only in the faulting mm.
        assertThat(a.counters().pmdTables()).isEqualTo(1);
        assertThat(b.counters().pmdTables()).isEqualTo(1);
        assertThat(a.counters().pageTablePages()).isEqualTo(3);
        assertThat(b.counters().pageTablePages()).isEqualTo(3);
        assertThat(a.counters().hugetlbBytes()).isEqualTo(2 * MIB);
        assertThat(b.counters().hugetlbBytes()).isZero();

        // A page faulted by b lands in the shared table and becomes visible to a without a fault.
        assertThat(b.fault(5 * GIB + 0x80_0000, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(a.pageAt(GIB + 0x80_0000)).isEqualTo(file.pageAt(4));
        assertThat(a.fault(GIB + 0x80_0000, Access.WRITE)).isEqualTo(FaultResult.ALREADY_MAPPED);
    }

    @ParameterizedTest(name = "{0} sharers")
    @ValueSource(ints = {1, 2, 3, 8, 17, 64})
    void shareCountsAndMapcountsForManySharers(int sharers) {
        List<AddressSpace> mms = new ArrayList<>();
        long framesBefore = machine.freeFrames();
        for (int i = 0; i < sharers; i++) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
            mm.fault(GIB + (i % 512) * 2 * MIB, Access.WRITE);
            mms.add(mm);
        }
        long table = pmdTable(mms.getFirst(), GIB);
        for (AddressSpace mm : mms) {
            assertThat(pmdTable(mm, GIB)).isEqualTo(table);
            assertThat(mm.counters().pmdTables()).isEqualTo(1);
        }
        assertThat(shareCount(table)).isEqualTo(sharers - 1);
        int faulted = Math.min(sharers, 512);
        for (int i = 0; i < faulted; i++) {
            assertThat(machine.page(file.pageAt(i)).mapcount()).isEqualTo(1);
        }
        // Each mm has a root and a PUD table; one PMD table serves all of them.
        assertThat(framesBefore - machine.freeFrames()).isEqualTo(2L * sharers + 1);
        // Exits in creation order: the table survives until the last one goes.
        for (int i = 0; i < sharers; i++) {
            mms.get(i).close();
            if (i < sharers - 1) {
                assertThat(shareCount(table)).isEqualTo(sharers - 2 - i);
                assertThat(mms.getLast().pageAt(GIB)).isEqualTo(file.pageAt(0));
            }
        }
        assertThat(machine.freeFrames()).as("every table came back").isEqualTo(framesBefore);
        assertThat(file.cachedPages()).as("the page cache keeps the pages").isEqualTo(faulted);
    }

    /** Layouts of a second mapping and whether its fault shares the first one's table. */
    static Stream<Arguments> eligibility() {
        int shared = SHARED_FIXED;
        FaultResult share = FaultResult.SHARED_TABLE;
        return Stream.of(
                Arguments.of("aligned 1 GiB shared window", 0L, 5 * GIB, GIB, Protection.READ_WRITE, shared, true, share),
                // MAP_LOCKED populates at mmap: the table is shared by then
                Arguments.of("mlocked sharer", 0L, 5 * GIB, GIB, Protection.READ_WRITE, shared | MapFlags.MAP_LOCKED, true,
                        FaultResult.ALREADY_MAPPED),
                Arguments.of("under 1 GiB", 0L, 5 * GIB, GIB - 2 * MIB, Protection.READ_WRITE, shared, false, FaultResult.PAGE_CACHE),
                Arguments.of("misaligned start", 0L, 5 * GIB + 2 * MIB, GIB, Protection.READ_WRITE, shared, false,
                        FaultResult.PAGE_CACHE),
                // file page 2 at 5 GiB + 2 MiB: another 2 MiB slot of the window than a's mapping of it
                Arguments.of("other file offset", 2 * MIB, 5 * GIB, GIB, Protection.READ_WRITE, shared, false, FaultResult.NEW_PAGE),
                Arguments.of("private mapping", 0L, 5 * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED, false,
                        FaultResult.PAGE_CACHE),
                Arguments.of("different protection", 0L, 5 * GIB, GIB, Protection.READ, shared, false, FaultResult.PAGE_CACHE));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("eligibility")
    void sharingEligibility(String name, long offset, long address, long length, Protection prot, int flags, boolean shares,
                            FaultResult expected) {
        AddressSpace a = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        a.fault(GIB + 0x20_0000, Access.WRITE);
        AddressSpace b = machine.createAddressSpace();
        b.mmap(file, offset, address, length, prot, flags);
        long va = address + 0x20_0000;
        FaultResult result = b.fault(va, Access.READ);
        long table = pmdTable(a, GIB);
        assertThat(pmdTable(b, va) == table).as("b uses a's table").isEqualTo(shares);
        assertThat(shareCount(table)).isEqualTo(shares ? 1 : 0);
        assertThat(result).isEqualTo(expected);
        assertThat(b.counters().pmdTables()).isEqualTo(1);
    }

    @Test
    void gigantic1GiBPagesNeverSharePmdTables() {
        HugetlbFile giant = machine.hugetlbfs().create("giant", GIB, PageSize.SIZE_1G);
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(giant, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(giant, 0, 3 * GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        assertThat(a.fault(GIB, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(b.fault(3 * GIB, Access.WRITE)).isEqualTo(FaultResult.PAGE_CACHE);
        assertThat(a.counters().pmdTables()).isZero();
        assertThat(b.counters().pmdTables()).isZero();
        assertThat(machine.page(giant.pageAt(0)).mapcount()).as("two PUD leaves map it").isEqualTo(2);
    }

    @Test
    void forkDoesNotCopySharedHugetlbAndTheChildSharesOnFault() {
        AddressSpace a = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        AddressSpace child = a.fork();
        assertThat(child.translate(GIB)).isEqualTo(-1);
        assertThat(child.counters().pmdTables()).isZero();
        assertThat(child.fault(GIB + 0x1000, Access.READ)).isEqualTo(FaultResult.SHARED_TABLE);
        assertThat(shareCount(pmdTable(a, GIB))).isEqualTo(1);
        assertThat(machine.page(file.pageAt(0)).mapcount()).isEqualTo(1);
    }

    @Test
    void splittingASharedWindowUnsharesItFirst() {
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        b.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.fault(GIB, Access.READ);
        long table = pmdTable(a, GIB);
        assertThat(shareCount(table)).isEqualTo(1);

        b.mprotect(GIB + 4 * MIB, 2 * MIB, Protection.READ); // a split at a 2 MiB, not 1 GiB, boundary
        assertThat(shareCount(table)).isZero();
        assertThat(pmdTable(b, GIB)).as("b's PUD entry was cleared").isEqualTo(-1);
        assertThat(b.counters().pmdTables()).isZero();
        assertThat(a.pageAt(GIB + 4 * MIB)).as("a keeps every entry").isEqualTo(file.pageAt(2));
        assertThat(machine.page(file.pageAt(2)).mapcount()).isEqualTo(1);

        assertThat(b.fault(GIB, Access.READ)).as("b's VMAs no longer cover the window: a private table")
                .isEqualTo(FaultResult.PAGE_CACHE);
        assertThat(pmdTable(b, GIB)).isNotEqualTo(table);
        assertThat(machine.page(file.pageAt(0)).mapcount()).isEqualTo(2);
    }

    @Test
    void munmapOfTheWholeWindowByOneSharerUnsharesAndLeavesTheOthersMapped() {
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED | MapFlags.MAP_POPULATE);
        b.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.fault(GIB, Access.READ);
        long table = pmdTable(a, GIB);
        long free = machine.freeFrames();
        b.munmap(GIB, GIB);
        assertThat(shareCount(table)).isZero();
        assertThat(b.counters().pmdTables()).isZero();
        assertThat(machine.freeFrames() - free).as("b's PUD table is freed, the shared one is not").isEqualTo(1);
        for (long i = 0; i < 512; i++) {
            assertThat(a.pageAt(GIB + i * 2 * MIB)).isEqualTo(file.pageAt(i));
            assertThat(machine.page(file.pageAt(i)).mapcount()).isEqualTo(1);
        }
        a.munmap(GIB, GIB);
        assertThat(machine.page(file.pageAt(0)).mapcount()).isZero();
        assertThat(machine.page(file.pageAt(0)).refcount()).as("the page cache's reference").isEqualTo(1);
        assertThat(a.counters().pageTablePages()).as("the last user frees the PMD and PUD tables").isEqualTo(1);
    }

    @Test
    void hugePmdUnshareReturnsWhetherItUnshared() {
        AddressSpace a = machine.createAddressSpace();
        AddressSpace b = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        b.mmap(file, 0, 3 * GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        a.fault(GIB + 6 * MIB, Access.WRITE);
        var vmaA = ((SimAddressSpace) a).vma(GIB);
        var vmaB = ((SimAddressSpace) b).vma(3 * GIB);
        String before = a.dumpPageTables();
        try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
            assertThat(PmdSharing.hugePmdUnshare(vmaA, GIB + 6 * MIB)).as("not shared: nothing to do").isFalse();
        }
        assertThat(a.dumpPageTables()).isEqualTo(before);
        b.fault(3 * GIB, Access.READ);
        String dumpA = a.dumpPageTables();
        long table = pmdTable(a, GIB);
        try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
            assertThat(PmdSharing.hugePmdUnshare(vmaB, 3 * GIB + 6 * MIB)).isTrue();
        }
        assertThat(shareCount(table)).isZero();
        assertThat(b.counters().pmdTables()).isZero();
        assertThat(pmdTable(b, 3 * GIB)).isEqualTo(-1);
        assertThat(a.dumpPageTables()).as("entries unchanged").isEqualTo(dumpA);
        assertThat(machine.page(file.pageAt(3)).mapcount()).as("mapcount unchanged").isEqualTo(1);
        try (MachineLock.Held locked = ((SimMachine) machine).lock().exclusive()) {
            assertThat(PmdSharing.hugePmdUnshare(vmaA, GIB)).as("the last user gets false").isFalse();
        }
    }
}
