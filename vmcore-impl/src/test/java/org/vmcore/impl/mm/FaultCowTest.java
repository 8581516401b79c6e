package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.Fixtures.peek;
import static org.vmcore.impl.Fixtures.poke;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.impl.Fixtures;

class FaultCowTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final long VA = 0x4000_0000L;

    private Machine machine;
    private AddressSpace parent;

    /** Every test runs with the invariant checker on, except the one that plants a migration entry by hand. */
    @org.junit.jupiter.api.BeforeEach
    void build(org.junit.jupiter.api.TestInfo test) {
        boolean plants = test.getTestMethod().orElseThrow().getName().equals("aFaultOnAMigrationEntryWaits");
        machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 32).checkInvariantsAfterEveryOperation(!plants)
                .build();
        parent = machine.createAddressSpace();
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void demandZeroFaultMapsAZeroedPageOnce() {
        parent.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED);
        assertThat(parent.translate(VA)).isEqualTo(-1);
        assertThat(parent.fault(VA + 0x123, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(parent.fault(VA, Access.READ)).isEqualTo(FaultResult.ALREADY_MAPPED);
        assertThat(peek(machine, parent, VA)).isZero();
        var page = machine.page(parent.pageAt(VA));
        assertThat(page.mapcount()).isEqualTo(1);
        assertThat(page.refcount()).isEqualTo(1);
        assertThat(page.anonymous()).isTrue();
        assertThat(page.index()).isEqualTo(VA >>> 12);
        assertThat(parent.counters().anonPages()).isEqualTo(1);
        assertThat(parent.counters().pageTablePages()).as("PML4, PUD, PMD and PTE tables").isEqualTo(4);
    }

    @Test
    void segmentationFaultsNameTheAddressAndTheCause() {
        parent.mmap(VA, 4096, Protection.READ, ANON | MapFlags.MAP_FIXED);
        assertThatThrownBy(() -> parent.fault(VA + 4096, Access.READ)).isInstanceOfSatisfying(SegmentationFaultException.class,
                e -> {
                    assertThat(e.address()).isEqualTo(VA + 4096);
                    assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.NO_VMA);
                }).hasMessageContaining("0x40001000");
        assertThatThrownBy(() -> parent.fault(VA, Access.WRITE)).isInstanceOfSatisfying(SegmentationFaultException.class,
                e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.PROTECTION));
        assertThatThrownBy(() -> parent.fault(VA, Access.EXECUTE)).isInstanceOf(SegmentationFaultException.class);
        assertThatThrownBy(() -> parent.fault(0x0000_8000_0000_0000L, Access.READ)).isInstanceOfSatisfying(SegmentationFaultException.class,
                e -> assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.NON_CANONICAL));
        assertThat(parent.counters().anonPages()).isZero();
    }

    @Test
    void forkMakesPrivatePagesCopyOnWriteInBoth() {
        parent.mmap(VA, 4 * 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        poke(machine, parent, VA, 111);
        long pfn = parent.pageAt(VA);
        AddressSpace child = parent.fork();
        assertThat(child.pageAt(VA)).as("the child maps the same page").isEqualTo(pfn);
        assertThat(machine.page(pfn).mapcount()).isEqualTo(2);
        assertThat(machine.page(pfn).refcount()).isEqualTo(2);
        assertThat(child.counters().anonPages()).isEqualTo(4);

        assertThat(child.fault(VA, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
        assertThat(child.pageAt(VA)).isNotEqualTo(pfn);
        assertThat(peek(machine, child, VA)).as("the copy holds the parent's data").isEqualTo(111);
        poke(machine, child, VA, 222);
        assertThat(peek(machine, parent, VA)).as("the parent does not see the child's store").isEqualTo(111);
        assertThat(machine.page(pfn).mapcount()).isEqualTo(1);

        assertThat(parent.fault(VA, Access.WRITE)).as("the last mapper writes in place").isEqualTo(FaultResult.COW_REUSE);
        assertThat(parent.pageAt(VA)).isEqualTo(pfn);
        assertThat(parent.fault(VA + 4096, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
        child.close();
        assertThat(parent.fault(VA + 2 * 4096, Access.WRITE)).as("after the child exits the page is exclusive").isEqualTo(FaultResult.COW_REUSE);
    }

    @Test
    void sharedAnonymousMemoryStaysSharedAcrossFork() {
        long va = parent.mmap(0, 4 * 4096, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
        poke(machine, parent, va, 5);
        AddressSpace child = parent.fork();
        assertThat(child.translate(va)).as("shared mappings are not copied at fork").isEqualTo(-1);
        assertThat(child.fault(va, Access.WRITE)).isEqualTo(FaultResult.PAGE_CACHE);
        poke(machine, child, va, 6);
        assertThat(peek(machine, parent, va)).isEqualTo(6);
        long pfn = parent.pageAt(va);
        assertThat(machine.page(pfn).mapcount()).isEqualTo(2);
        assertThat(machine.page(pfn).refcount()).as("two mappings and the shmem page cache").isEqualTo(3);
        assertThat(child.counters().shmemPages()).isEqualTo(1);
        long free = machine.freeFrames();
        parent.close();
        child.close();
        assertThat(machine.freeFrames()).as("the shmem object dies with its last mapping").isGreaterThan(free + 3);
    }

    @Test
    void sharedHugetlbPagesComeFromThePageCacheAndPrivateOnesCopyOnWrite() {
        HugetlbFile file = machine.hugetlbfs().create("data", 8 * MIB, PageSize.SIZE_2M);
        long shared = parent.mmap(file, 0, 0, 8 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("a shared mapping reserves its pages").isEqualTo(4);
        assertThat(parent.fault(shared + 0x1234, Access.WRITE)).isEqualTo(FaultResult.NEW_PAGE);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).isEqualTo(3);
        poke(machine, parent, shared + 0x1234, 77);
        long pfn = file.pageAt(0);
        assertThat(parent.pageAt(shared)).isEqualTo(pfn);
        assertThat(machine.page(pfn).refcount()).as("page cache + one mapping").isEqualTo(2);

        long priv = parent.mmap(file, 0, 0, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("a private mapping reserves every page").isEqualTo(5);
        assertThat(parent.fault(priv, Access.READ)).isEqualTo(FaultResult.PAGE_CACHE);
        assertThat(peek(machine, parent, priv + 0x1234)).isEqualTo(77);
        assertThat(parent.fault(priv, Access.WRITE)).isEqualTo(FaultResult.COW_COPY);
        poke(machine, parent, priv + 0x1234, 78);
        assertThat(peek(machine, parent, shared + 0x1234)).as("the file does not see private stores").isEqualTo(77);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("the COW consumed a reservation").isEqualTo(4);
        assertThat(parent.counters().hugetlbBytes()).isEqualTo(4 * MIB);
        parent.munmap(priv, 4 * MIB);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).reserved()).as("the unused private reservation is returned").isEqualTo(3);
        assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free()).isEqualTo(31);
    }

    @Test
    void aFaultOnAMigrationEntryWaits() {
        parent.mmap(VA, 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        var table = ((org.vmcore.impl.mm.SimAddressSpace) parent).pageTable();
        long pfn = parent.pageAt(VA);
        table.unmap(VA, PageSize.SIZE_4K);
        table.install(VA, org.vmcore.x86.pgtable.Level.PTE,
                org.vmcore.x86.pgtable.MigrationEntry.make(org.vmcore.x86.pgtable.MigrationEntry.Kind.WRITE, pfn, true, true, 0));
        assertThat(parent.fault(VA, Access.READ)).isEqualTo(FaultResult.MIGRATION_WAIT);
    }
}
