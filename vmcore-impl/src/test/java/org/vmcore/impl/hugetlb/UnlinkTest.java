package org.vmcore.impl.hugetlb;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;
import org.vmcore.impl.Fixtures.SharedWindow;

/**
 * Unlinking a hugetlbfs file, as Linux does it: the inode lives while a VMA maps it
 * (vm_file holds it), then hugetlbfs_evict_inode runs remove_inode_hugepages, which frees the
 * page-cache pages and, through hugetlb_unreserve_pages, the reservations the inode's resv_map
 * still holds. A shared mapping's reservations belong to the inode and outlive its munmap
 * (hugetlb_vm_op_close releases only private ones), as libhugetlbfs's counters.c checks.
 */
class UnlinkTest {
    private static final int SHARED = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;

    private static HugetlbPoolState pool(Machine machine) {
        return machine.hugetlbfs().pool(0, PageSize.SIZE_2M);
    }

    @Test
    void anUnmappedFileGivesItsPagesAndReservationsBackAtOnce() {
        try (Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 16).checkInvariantsAfterEveryOperation(true)
                .build()) {
            HugetlbFs fs = machine.hugetlbfs();
            HugetlbFile file = fs.create("f", 8 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, GIB, 8 * MIB, Protection.READ_WRITE, SHARED);
            assertThat(pool(machine).reserved()).isEqualTo(4);
            mm.fault(GIB, Access.WRITE);
            mm.munmap(GIB, 8 * MIB);
            assertThat(file.cachedPages()).as("the page cache outlives the mapping").isEqualTo(1);
            assertThat(pool(machine).free()).isEqualTo(15);
            assertThat(pool(machine).reserved()).as("the inode's resv_map keeps the 3 pages never faulted").isEqualTo(3);

            assertThat(fs.unlink("f")).isSameAs(file);

            assertThat(file.isUnlinked()).isTrue();
            assertThat(fs.files()).isEmpty();
            assertThat(file.cachedPages()).isZero();
            assertThat(pool(machine)).isEqualTo(new HugetlbPoolState(0, PageSize.SIZE_2M, 16, 16, 0, 0));
            HugetlbFile again = fs.create("f", 2 * MIB, PageSize.SIZE_2M);
            assertThat(again).as("the name makes a new file").isNotSameAs(file);
            assertThat(again.isUnlinked()).isFalse();
            assertThat(again.cachedPages()).isZero();
            assertThat(fs.files()).containsExactly(again);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Test
    void aMappedFileKeepsItsPagesUntilTheLastMappingGoes() {
        try (Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 600).checkInvariantsAfterEveryOperation(true)
                .build()) {
            SharedWindow w = Fixtures.sharedWindow(machine, GIB, 5 * GIB, false);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(w.a());
            cpu.store(GIB + 8, 8, 0x1234);
            cpu.switchTo(w.b());
            assertThat(cpu.load(5 * GIB + 8, 8)).isEqualTo(0x1234); // b shares a's PMD table
            long reserved = pool(machine).reserved();
            long free = pool(machine).free();

            machine.hugetlbfs().unlink("shm");

            assertThat(w.file().cachedPages()).isEqualTo(1);
            assertThat(pool(machine).free()).as("still mapped: nothing goes back").isEqualTo(free);
            assertThat(pool(machine).reserved()).isEqualTo(reserved);
            cpu.store(5 * GIB + 2 * MIB, 8, 7);                    // faults still fill the unlinked file
            cpu.switchTo(w.a());
            assertThat(cpu.load(GIB + 2 * MIB, 8)).isEqualTo(7);
            w.a().munmap(GIB, GIB);
            assertThat(w.file().cachedPages()).as("b still maps it").isEqualTo(2);
            w.b().close();
            assertThat(w.file().cachedPages()).isZero();
            assertThat(pool(machine)).as("every page and reservation back").isEqualTo(new HugetlbPoolState(0, PageSize.SIZE_2M,
                    600, 600, 0, 0));
            assertThat(w.file().pageAt(0)).isEqualTo(-1);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Test
    void aPrivateMappingsCopiesAndReservationGoWithIt() {
        try (Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 8).checkInvariantsAfterEveryOperation(true)
                .build()) {
            HugetlbFile file = machine.hugetlbfs().create("p", 4 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, GIB, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_FIXED);
            mm.fault(GIB, Access.WRITE);            // a private copy
            machine.hugetlbfs().unlink("p");
            assertThat(pool(machine).free()).isEqualTo(7);
            mm.munmap(GIB, 4 * MIB);
            assertThat(pool(machine)).isEqualTo(new HugetlbPoolState(0, PageSize.SIZE_2M, 8, 8, 0, 0));
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }

    @Test
    void anUnlinkedFileCannotBeMappedTruncatedOrUnlinkedAgain() {
        try (Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 8).build()) {
            HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
            AddressSpace mm = machine.createAddressSpace();
            machine.hugetlbfs().unlink("f");
            String state = Fixtures.state(machine);
            assertThatThrownBy(() -> mm.mmap(file, 0, GIB, 4 * MIB, Protection.READ, SHARED)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("not unlinked");
            assertThatThrownBy(() -> file.truncate(0)).isInstanceOf(InvalidArgumentException.class).hasMessageContaining("unlinked");
            assertThatThrownBy(() -> machine.hugetlbfs().unlink("f")).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("name=f").hasMessageContaining("existing file");
            assertThat(Fixtures.state(machine)).isEqualTo(state);
            assertThat(file.toString()).contains("(deleted)");
        }
    }
}
