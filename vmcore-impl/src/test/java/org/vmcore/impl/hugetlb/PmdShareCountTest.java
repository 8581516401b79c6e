package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.Fixtures.poke;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The PMD table's share count apart from its refcount (59d9094df3d7), and what goes wrong with
 * {@link Regression#PRE_59D9094D}: A and B share A's PMD table for a 1 GiB hugetlbfs window; B
 * unmaps its window, so A is the table's last user; a PFN walker holds a speculative reference
 * on the table page while A unmaps the window too.
 */
class PmdShareCountTest {
    private static final int SHARED_FIXED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
    private static final int PAGES = 4;
    private static final long POOL = 600;

    private Machine machine;
    private HugetlbFile file;
    private AddressSpace a;
    private long table;

    @AfterEach
    void close() {
        machine.close();
    }

    /** Given: A's window holds PAGES huge pages, B shared A's table and unmapped its window again. */
    private void givenTheLastUserOfATableThatWasShared(boolean regression) {
        Machine.Builder b = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, POOL);
        if (regression) {
            b.enable(Regression.PRE_59D9094D);
        }
        machine = b.build();
        file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        a = machine.createAddressSpace();
        AddressSpace other = machine.createAddressSpace();
        a.mmap(file, 0, GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        other.mmap(file, 0, 5 * GIB, GIB, Protection.READ_WRITE, SHARED_FIXED);
        for (int i = 0; i < PAGES; i++) {
            a.fault(GIB + i * 2 * MIB, Access.WRITE);
            poke(machine, a, GIB + i * 2 * MIB, i + 1);
        }
        assertThat(other.fault(5 * GIB, Access.READ)).isEqualTo(FaultResult.SHARED_TABLE);
        table = pmdTable(a, GIB);
        assertThat(pmdTable(other, 5 * GIB)).isEqualTo(table);
        other.munmap(5 * GIB, GIB);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    private static long pmdTable(AddressSpace mm, long va) {
        long pud = ((SimAddressSpace) mm).pageTable().entry(va & -GIB, Level.PUD);
        return Pte.isPresent(pud) ? Pte.pfn(pud) : -1;
    }

    private long freeHugePages() {
        return machine.hugetlbfs().pool(0, PageSize.SIZE_2M).free();
    }

    @Test
    void sharingAndUnsharingInTheRefcountIsCleanWithoutAnyOtherReference() {
        givenTheLastUserOfATableThatWasShared(true);
        assertThat(machine.page(table).refcount()).as("the owner's reference; B's share reference is gone").isEqualTo(1);

        a.munmap(GIB, GIB);

        assertThat(machine.page(table).flags()).as("the table was freed").containsExactly(PageFlag.BUDDY);
        assertThat(machine.page(file.pageAt(0)).mapcount()).isZero();
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    void withTheFixASpeculativeReferenceOnTheTableChangesNothing() {
        givenTheLastUserOfATableThatWasShared(false);
        try (PageReference ref = machine.tryGetPage(table)) {
            assertThat(ref.pfn()).isEqualTo(table);
            assertThat(machine.checkInvariants()).as("a transient reference is no sharer").isEmpty();

            a.munmap(GIB, GIB);

            assertThat(pmdTable(a, GIB)).isEqualTo(-1);
            assertThat(machine.page(table).flags()).as("no longer a table; the walker's reference keeps the frame")
                    .doesNotContain(PageFlag.PGTABLE, PageFlag.BUDDY);
            for (int i = 0; i < PAGES; i++) {
                assertThat(machine.page(file.pageAt(i)).mapcount()).as("huge page %d unmapped", i).isZero();
            }
            assertThat(machine.checkInvariants()).isEmpty();
        }
        assertThat(machine.page(table).flags()).as("the walker's put_page freed the frame").containsExactly(PageFlag.BUDDY);
        file.truncate(0);
        assertThat(freeHugePages()).as("every huge page is back in the pool").isEqualTo(POOL);
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    void withoutTheFixTheCheckerSeesTheReferenceCountedAsASharer() {
        givenTheLastUserOfATableThatWasShared(true);
        try (PageReference ref = machine.tryGetPage(table)) {
            assertThat(ref.pfn()).isEqualTo(table);
            assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v)
                    .startsWith("share count: PMD table pfn 0x" + Long.toHexString(table) + " has share count 1 but 1 PUD entries"));
        }
        assertThat(machine.checkInvariants()).isEmpty();
    }

    @Test
    void withoutTheFixTheLastUsersUnmapOnlyUnhooksTheTableAndItsHugePagesLeak() {
        givenTheLastUserOfATableThatWasShared(true);
        try (PageReference ref = machine.tryGetPage(table)) {
            assertThat(ref.pfn()).isEqualTo(table);
            a.munmap(GIB, GIB); // huge_pmd_unshare sees refcount 2: "shared", clears A's PUD entry only

            assertThat(pmdTable(a, GIB)).isEqualTo(-1);
            assertThat(machine.page(table).flags()).as("still a table, reached by no address space").contains(PageFlag.PGTABLE);
            for (int i = 0; i < PAGES; i++) {
                assertThat(machine.page(file.pageAt(i)).mapcount()).as("the orphaned table still maps huge page %d", i).isEqualTo(1);
            }
            assertThat(machine.checkInvariants())
                    .anySatisfy(v -> assertThat(v).startsWith("leaked page table: "))
                    .anySatisfy(v -> assertThat(v).startsWith("page cache: unmapped cached pfn 0x" + Long.toHexString(file.pageAt(0))));
        }
        assertThat(machine.page(table).refcount()).as("the walker dropped the last reference").isZero();
        assertThat(machine.page(table).flags()).as("a table freed by put_page is a bad page: leaked").contains(PageFlag.PGTABLE);
        file.truncate(0);
        assertThat(freeHugePages()).as("the huge pages the orphaned table maps never come back").isEqualTo(POOL - PAGES);
        assertThat(machine.checkInvariants()).anySatisfy(v -> assertThat(v).startsWith("leaked page table: "));
    }
}
