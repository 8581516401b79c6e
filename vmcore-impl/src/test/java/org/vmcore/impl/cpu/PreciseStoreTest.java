package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.function.BiConsumer;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.impl.Fixtures;

/**
 * x86 stores are precise: a store that crosses into a page it may not write faults before any
 * byte lands (SDM vol. 3, 6.5: a fault is reported before the instruction changes state).
 */
class PreciseStoreTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;
    private static final long OLD = 0x1122_3344_5566_7788L;

    static Stream<Arguments> crossingStores() {
        return Stream.of(
                Arguments.of("store", (BiConsumer<Cpu, Long>) (cpu, va) -> cpu.store(va, 8, -1L)),
                Arguments.of("storeAll", (BiConsumer<Cpu, Long>) (cpu, va) -> cpu.storeAll(new long[] {va}, 8, new long[] {-1L})),
                Arguments.of("write", (BiConsumer<Cpu, Long>) (cpu, va) -> cpu.write(va, new byte[] {-1, -1, -1, -1, -1, -1, -1, -1}, 0, 8)),
                Arguments.of("write of 3 pages", (BiConsumer<Cpu, Long>) (cpu, va) -> cpu.write(va - 8192, new byte[8200], 0, 8200)));
    }

    @ParameterizedTest(name = "{0} into a read-only page")
    @MethodSource("crossingStores")
    void aStoreIntoAReadOnlyPageWritesNothing(String name, BiConsumer<Cpu, Long> store) {
        crossing(store, true);
    }

    @ParameterizedTest(name = "{0} into an unmapped page")
    @MethodSource("crossingStores")
    void aStoreIntoAnUnmappedPageWritesNothing(String name, BiConsumer<Cpu, Long> store) {
        crossing(store, false);
    }

    private static void crossing(BiConsumer<Cpu, Long> store, boolean readOnlyNext) {
        Machine machine = Machine.builder().node(GIB).build();
        try {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 3 * 4096, Protection.READ_WRITE, ANON);
            if (readOnlyNext) {
                mm.mmap(VA + 3 * 4096, 4096, Protection.READ, ANON);
            }
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            long last = VA + 3 * 4096 - 8; // the last 8 bytes of the writable range
            cpu.store(last, 8, OLD);
            cpu.store(VA + 4096, 8, OLD);
            long crossing = last + 4; // 4 bytes in the writable page, 4 in the next
            assertThatThrownBy(() -> store.accept(cpu, crossing)).isInstanceOf(SegmentationFaultException.class);
            assertThat(cpu.load(last, 8)).as("no byte of the faulting store landed").isEqualTo(OLD);
            assertThat(cpu.load(VA + 4096, 8)).as("no earlier page of the copy was written").isEqualTo(OLD);
            assertThat(machine.checkInvariants()).isEmpty();
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }

    @ParameterizedTest(name = "{0} into a page not yet faulted in")
    @MethodSource("crossingStores")
    void aStoreIntoAPageNotYetPresentFaultsItInAndWritesEverything(String name, BiConsumer<Cpu, Long> store) {
        Machine machine = Machine.builder().node(GIB).build();
        try {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            long last = VA + 3 * 4096 - 8;
            cpu.store(last, 8, OLD);
            store.accept(cpu, last + 4);
            long written = name.equals("write of 3 pages") ? 0 : 0xFFFF_FFFFL; // that one writes zeros from two pages below
            assertThat(cpu.load(last, 4)).isEqualTo(written == 0 ? 0 : OLD & 0xFFFF_FFFFL);
            assertThat(cpu.load(last + 4, 4)).isEqualTo(written);
            assertThat(cpu.load(last + 8, 4)).isEqualTo(written);
            assertThat(machine.checkInvariants()).isEmpty();
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }
}
