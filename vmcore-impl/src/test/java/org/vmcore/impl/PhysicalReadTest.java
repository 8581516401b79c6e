package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageFlag;
import org.vmcore.api.Protection;

/** Bulk physical reads and CR3: what a device or a simulator's own walker reads. */
class PhysicalReadTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    @Test
    void bulkReadsCrossFramesAndMatchTheCpusBytes() {
        long seed = 17;
        System.out.println("seed " + seed);
        Random random = new Random(seed);
        try (Machine machine = Machine.builder().build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 2 * 4096, Protection.READ_WRITE, ANON);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            byte[] written = new byte[2 * 4096];
            random.nextBytes(written);
            cpu.write(VA, written, 0, written.length);
            long pa0 = mm.translate(VA + 4000);
            long pa1 = mm.translate(VA + 4096);
            byte[] expected = new byte[200];
            System.arraycopy(written, 4000, expected, 0, 96);
            System.arraycopy(written, 4096, expected, 96, 104);
            byte[] got = new byte[210];
            if (pa1 == pa0 + 96) { // the two frames are adjacent: one read crosses them
                machine.readPhysical(pa0, got, 5, 200);
                assertThat(Arrays.copyOfRange(got, 5, 205)).isEqualTo(expected);
            }
            machine.readPhysical(pa0, got, 0, 96);
            machine.readPhysical(pa1, got, 96, 104);
            assertThat(Arrays.copyOf(got, 200)).isEqualTo(expected);

            ByteBuffer heap = ByteBuffer.allocate(300).position(10).limit(110);
            machine.readPhysical(pa1, heap);
            assertThat(heap.position()).isEqualTo(110);
            assertThat(Arrays.copyOfRange(heap.array(), 10, 110)).isEqualTo(Arrays.copyOfRange(written, 4096, 4196));
            ByteBuffer direct = ByteBuffer.allocateDirect(4096);
            machine.readPhysical(pa1 & ~0xFFFL, direct);
            assertThat(direct.hasRemaining()).isFalse();
            byte[] fromDirect = new byte[4096];
            direct.flip().get(fromDirect);
            assertThat(fromDirect).isEqualTo(Arrays.copyOfRange(written, 4096, 8192));
            long untouched = (machine.config().nodeBytes().getFirst() >> 12) - 1;
            byte[] zeros = new byte[64];
            Arrays.fill(zeros, (byte) 7);
            machine.readPhysical(untouched << 12, zeros, 0, 64);
            assertThat(zeros).as("a frame never written reads as zeros").containsOnly(0);
        }
    }

    @Test
    void badBulkReadsChangeNothing() {
        try (Machine machine = Machine.builder().node(GIB).build()) {
            byte[] dst = new byte[8];
            Arrays.fill(dst, (byte) 1);
            assertThatThrownBy(() -> machine.readPhysical(GIB - 4, dst, 0, 8)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("pa=0x3ffffffc").hasMessageContaining("inside memory");
            assertThatThrownBy(() -> machine.readPhysical(0, dst, 4, 5)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("length=5");
            assertThatThrownBy(() -> machine.readPhysical(0, dst, -1, 1)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("offset=-1");
            assertThat(dst).containsOnly(1);
            ByteBuffer readOnly = ByteBuffer.allocate(8).asReadOnlyBuffer();
            assertThatThrownBy(() -> machine.readPhysical(0, readOnly)).isInstanceOf(InvalidArgumentException.class)
                    .hasMessageContaining("writable");
            ByteBuffer tooLong = ByteBuffer.allocate(16);
            assertThatThrownBy(() -> machine.readPhysical(GIB - 8, tooLong)).isInstanceOf(InvalidArgumentException.class);
            assertThat(tooLong.position()).isZero();
        }
    }

    @Test
    void cr3IsTheRootTableAndACpuLoadsItWithThePcid() {
        try (Machine machine = Machine.builder().build()) {
            AddressSpace a = machine.createAddressSpace();
            AddressSpace b = machine.createAddressSpace();
            assertThat(a.cr3() & 0xFFF).isZero();
            assertThat(a.cr3()).isNotEqualTo(b.cr3());
            assertThat(a.pcid()).isNotEqualTo(b.pcid());
            assertThat(machine.page(a.cr3() >>> 12).flags()).contains(PageFlag.PGTABLE);
            a.mmap(VA, 4096, Protection.READ_WRITE, ANON);
            long pml4e = machine.readPhysical(a.cr3() + 8 * ((VA >>> 39) & 511), 8);
            assertThat(pml4e & 1).as("the root entry for VA is present").isEqualTo(1);
            assertThat(machine.readPhysical(b.cr3() + 8 * ((VA >>> 39) & 511), 8)).isZero();
            long cr3 = a.cr3();
            a.close();
            assertThatThrownBy(a::cr3).isInstanceOf(ClosedException.class);
            assertThat(machine.page(cr3 >>> 12).flags()).as("the root table is freed at exit").containsExactly(PageFlag.BUDDY);
        }
    }
}
