package org.vmcore.x86.mem;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import org.junit.jupiter.api.Test;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.internal.SharedSecrets;

class FrameContentsTest {

    @Test
    void framesReadZeroWithoutHostMemoryUntilWritten() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 30)) {
            FrameContents contents = memory.contents();
            assertThat(contents.read(0x1234_5678L, 8)).isZero();
            byte[] buffer = new byte[10_000];
            java.util.Arrays.fill(buffer, (byte) 7);
            contents.readBytes(0x3000_0000L - 5000, buffer, 0, buffer.length);
            assertThat(buffer).containsOnly(0);
            assertThat(contents.materialisedFrames()).isZero();
            assertThat(memory.offHeapBytes()).isZero();

            contents.write(0x1234_5678L, 4, 0xDEAD_BEEFL);
            assertThat(contents.materialisedFrames()).isEqualTo(1);
            assertThat(contents.isMaterialised(0x12345)).isTrue();
            assertThat(contents.read(0x1234_5678L, 4)).isEqualTo(0xDEAD_BEEFL);
            assertThat(contents.read(0x1234_5678L, 1)).isEqualTo(0xEF);
            assertThat(contents.read(0x1234_5679L, 2)).isEqualTo(0xADBE);
        }
    }

    @Test
    void valuesCrossingAFrameBoundaryAreSplitLittleEndian() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 20)) {
            FrameContents contents = memory.contents();
            contents.write(0x1FFC, 8, 0x1122_3344_5566_7788L);
            assertThat(contents.read(0x1FFC, 8)).isEqualTo(0x1122_3344_5566_7788L);
            assertThat(contents.read(0x2000, 4)).isEqualTo(0x1122_3344L);
            assertThat(contents.read(0x1FFC, 4)).isEqualTo(0x5566_7788L);
            assertThat(contents.materialisedFrames()).isEqualTo(2);
        }
    }

    @Test
    void zeroClearsFramesInPlaceAndKeepsTheirPages() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 20)) {
            FrameContents contents = memory.contents();
            byte[] data = new byte[3 * 4096];
            java.util.Arrays.fill(data, (byte) 0x5A);
            contents.writeBytes(0x10_000, data, 0, data.length);
            java.lang.foreign.MemorySegment page = SharedSecrets.directMap(memory).pageOrNull(0x11);
            long reserved = memory.offHeapBytes();
            contents.zero(0x0f, 5); // includes two frames never written
            assertThat(contents.read(0x10_008, 8)).isZero();
            assertThat(contents.read(0x12_ff8, 8)).isZero();
            assertThat(SharedSecrets.directMap(memory).pageOrNull(0x11)).as("a frame keeps its host page").isSameAs(page);
            assertThat(contents.isMaterialised(0x0f)).as("zeroing does not materialise").isFalse();
            assertThat(contents.materialisedFrames()).isEqualTo(3);
            assertThat(memory.offHeapBytes()).isEqualTo(reserved);
        }
    }

    @Test
    void copyCarriesTouchedFramesAndLeavesUntouchedOnesZero() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 20)) {
            FrameContents contents = memory.contents();
            contents.write(0x0_0010, 8, 42);
            contents.write(0x8_0000 + 0x1010, 8, 99); // destination frame 1 holds junk
            contents.copy(0, 0x80, 2);
            assertThat(contents.read(0x8_0010, 8)).isEqualTo(42);
            assertThat(contents.read(0x8_1010, 8)).as("an untouched source frame copies as zero").isZero();
            assertThat(contents.isMaterialised(0x80)).isTrue();
        }
    }

    @Test
    void allocationWithZeroDiscardsAndWithoutKeepsOldContents() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 20)) {
            long pfn = memory.allocate(0, 0, true);
            memory.contents().write(pfn << 12, 8, 77);
            memory.free(pfn);
            assertThat(memory.contents().read(pfn << 12, 8)).as("a freed frame keeps its bytes").isEqualTo(77);
            long again = memory.allocate(0, 0, false);
            assertThat(again).isEqualTo(pfn);
            assertThat(memory.contents().read(pfn << 12, 8)).isEqualTo(77);
            memory.free(again);
            long zeroed = memory.allocate(0, 0, true);
            assertThat(memory.contents().read(zeroed << 12, 8)).isZero();
        }
    }

    @Test
    void badWidthsAndAddressesAreRejected() {
        try (PhysicalMemory memory = new PhysicalMemory(1L << 20)) {
            FrameContents contents = memory.contents();
            assertThatThrownBy(() -> contents.read(0, 3)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("width=3");
            assertThatThrownBy(() -> contents.write(0, 16, 0)).isInstanceOf(InvalidArgumentException.class);
            assertThatThrownBy(() -> contents.read(1L << 20, 8)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("pfn=0x100");
            assertThatThrownBy(() -> contents.read(-8, 8)).isInstanceOf(InvalidArgumentException.class);
            assertThat(contents.materialisedFrames()).isZero();
        }
    }
}
