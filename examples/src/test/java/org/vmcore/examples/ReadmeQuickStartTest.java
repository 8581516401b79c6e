package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Mapping;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.Page;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/** README's quick start, line for line, with what its comments promise asserted. */
class ReadmeQuickStartTest {
    @Test
    void theQuickStartDoesWhatItsCommentsSay() {
        try (Machine machine = Machine.builder()
                .node(4L << 30).node(4L << 30)
                .hugePages(0, PageSize.SIZE_2M, 1024)
                .hugePages(1, PageSize.SIZE_2M, 16)
                .cpus(2)
                .build()) {
            HugetlbFile file = machine.hugetlbfs().create("shm", 1L << 30, PageSize.SIZE_2M);
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            int flags = MapFlags.MAP_SHARED | MapFlags.MAP_FIXED;
            a.mmap(file, 0, 1L << 30, 1L << 30, Protection.READ_WRITE, flags);
            b.mmap(file, 0, 5L << 30, 1L << 30, Protection.READ_WRITE, flags);
            assertThat(a.fault(1L << 30, Access.WRITE).name()).isEqualTo("NEW_PAGE");
            assertThat(b.fault(5L << 30, Access.READ).name()).isEqualTo("SHARED_TABLE");
            Page page = machine.page(file.pageAt(0));
            assertThat(page.mapcount()).isEqualTo(1);
            assertThat(machine.rmap().mappings(page.pfn())).extracting(Mapping::address)
                    .containsExactlyInAnyOrder(1L << 30, 5L << 30);

            Cpu cpu = machine.cpu(0);
            cpu.switchTo(b);
            cpu.store(5L << 30, 8, 42);
            assertThat(a.translate(1L << 30)).isEqualTo(b.translate(5L << 30));
            MovePagesResult moved = machine.migration().movePages(a, new long[] {1L << 30}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE);
            assertThat(moved.status(0)).isEqualTo(1);
            assertThat(cpu.load(5L << 30, 8)).isEqualTo(42);
            assertThat(machine.page(b.pageAt(5L << 30)).node()).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
        }
    }
}
