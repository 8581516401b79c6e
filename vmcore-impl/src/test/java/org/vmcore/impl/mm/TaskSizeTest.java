package org.vmcore.impl.mm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PagingMode;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/** The highest user address is TASK_SIZE_MAX (arch/x86 processor.h): 2^47 - 4096, or 2^56 - 4096 with LA57. */
class TaskSizeTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;

    @ParameterizedTest
    @EnumSource(PagingMode.class)
    void theLastPageBelowTheCanonicalBoundaryIsNeverMapped(PagingMode mode) {
        long taskSize = (1L << (mode.virtualAddressBits() - 1)) - 4096;
        assertThat(mode.taskSizeMax()).isEqualTo(taskSize);
        Machine machine = Machine.builder().node(GIB).pagingMode(mode).build();
        try {
            AddressSpace mm = machine.createAddressSpace();
            String before = Fixtures.state(machine);
            // get_unmapped_area: addr > TASK_SIZE - len is -ENOMEM, also for MAP_FIXED
            assertThatThrownBy(() -> mm.mmap(taskSize, 4096, Protection.READ, ANON | MapFlags.MAP_FIXED))
                    .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("0x" + Long.toHexString(taskSize));
            assertThatThrownBy(() -> mm.mmap(taskSize - 4096, 8192, Protection.READ, ANON | MapFlags.MAP_FIXED_NOREPLACE))
                    .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("TASK_SIZE_MAX");
            assertThat(Fixtures.state(machine)).isEqualTo(before);
            // a hint there is ignored: the mapping goes elsewhere
            long hinted = mm.mmap(taskSize, 4096, Protection.READ, ANON);
            assertThat(hinted).isLessThan(taskSize);
            mm.munmap(hinted, 4096);
            // the page below is the last one a mapping can use
            assertThat(mm.mmap(taskSize - 4096, 4096, Protection.READ_WRITE, ANON | MapFlags.MAP_FIXED)).isEqualTo(taskSize - 4096);
            mm.mprotect(taskSize - 4096, 4096, Protection.READ);
            mm.munmap(taskSize - 4096, 4096);
            assertThat(machine.checkInvariants()).isEmpty();
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }
}
