package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.HugetlbPoolState;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.Protection;
import org.vmcore.api.Regression;

class MachineTest {
    @Test
    void builderFindsTheImplementationThroughServiceLoaderAndKeepsTheConfig() {
        try (Machine machine = Machine.builder().node(2 * GIB).node(4 * GIB).cpus(4).pagingMode(PagingMode.FIVE_LEVEL)
                .hugePages(0, PageSize.SIZE_2M, 16).hugePages(1, PageSize.SIZE_1G, 2).build()) {
            assertThat(machine).isInstanceOf(SimMachine.class);
            assertThat(machine.config().nodeBytes()).containsExactly(2 * GIB, 4 * GIB);
            assertThat(machine.config().cpus()).isEqualTo(4);
            assertThat(machine.config().regressions()).as("no regression unless asked").isEmpty();
            assertThat(machine.has(Regression.PRE_017B1660)).isFalse();
            assertThat(machine.hugetlbfs().pool(0, PageSize.SIZE_2M)).isEqualTo(new HugetlbPoolState(0, PageSize.SIZE_2M, 16, 16, 0, 0));
            assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_1G)).isEqualTo(new HugetlbPoolState(1, PageSize.SIZE_1G, 2, 2, 0, 0));
            assertThat(machine.hugetlbfs().pool(1, PageSize.SIZE_2M).total()).isZero();
            long pagesInPools = 16 * 512 + 2 * 262144;
            assertThat(machine.freeFrames()).as("and the shared zero page").isEqualTo((6 * GIB >>> 12) - pagesInPools - 1);
        }
    }

    @Test
    void regressionsAreRecorded() {
        try (Machine machine = Machine.builder().enable(Regression.PRE_017B1660).build()) {
            assertThat(machine.has(Regression.PRE_017B1660)).isTrue();
        }
    }

    @Test
    void builderRejectsBadInputWithTheRule() {
        assertThatThrownBy(() -> Machine.builder().node(GIB + 1)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("nodeBytes=").hasMessageContaining("multiple of 1 GiB");
        assertThatThrownBy(() -> Machine.builder().node(0)).isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> Machine.builder().cpus(0)).hasMessageContaining("cpus=0");
        assertThatThrownBy(() -> Machine.builder().hugePages(0, PageSize.SIZE_2M, 1)).hasMessageContaining("node=0")
                .hasMessageContaining("added before");
        assertThatThrownBy(() -> Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_4K, 1)).hasMessageContaining("SIZE_2M or SIZE_1G");
        assertThatThrownBy(() -> Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, -1)).hasMessageContaining("negative");
        assertThatThrownBy(() -> Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_1G, 2).build())
                .isInstanceOf(OutOfMemoryException.class).hasMessageContaining("node 0");
        assertThatThrownBy(() -> Machine.builder().pagingMode(null)).hasMessageContaining("pagingMode");
        assertThatThrownBy(() -> Machine.builder().enable(null)).hasMessageContaining("regression");
    }

    @Test
    void closingFreesEveryOffHeapByteAndMakesEverythingUnusable() {
        Machine machine = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 8).build();
        AddressSpace mm = machine.createAddressSpace();
        long va = mm.mmap(0, 4 * MIB, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_POPULATE);
        Fixtures.populatedFile(machine, mm, "f", 4 * MIB);
        assertThat(machine.offHeapBytes()).isPositive();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
        assertThatThrownBy(() -> mm.fault(va, Access.READ)).isInstanceOf(ClosedException.class);
        assertThatThrownBy(machine::createAddressSpace).isInstanceOf(ClosedException.class);
        machine.close(); // idempotent
    }

    @Test
    void createAddressSpaceChecksTheNode() {
        try (Machine machine = Machine.builder().node(GIB).build()) {
            long free = machine.freeFrames();
            assertThatThrownBy(() -> machine.createAddressSpace(1)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("node=1");
            assertThat(machine.addressSpaces()).isEmpty();
            assertThat(machine.freeFrames()).isEqualTo(free);
        }
    }
}
