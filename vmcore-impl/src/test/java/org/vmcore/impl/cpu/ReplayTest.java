package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.Random;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.TlbStats;
import org.vmcore.api.TraceOp;

/** Cpu.replay: a mixed trace in one call, equal to the same accesses made one by one. */
class ReplayTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long DATA = 0x10_0000_0000L;
    private static final long CODE = 0x20_0000_0000L;

    private Machine machine;
    private Cpu cpu;
    private AddressSpace mm;

    @BeforeEach
    void build() {
        machine = Machine.builder().node(GIB).cpus(1).checkInvariantsAfterEveryOperation(true).build();
        cpu = machine.cpu(0);
        mm = machine.createAddressSpace();
        mm.mmap(DATA, 32 * 4096, Protection.READ_WRITE, ANON);
        mm.mmap(CODE, 4 * 4096, Protection.READ_EXEC, ANON);
        cpu.switchTo(mm);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void aRandomMixedTraceReadsWhatTheSameAccessesOneByOneRead() {
        long seed = System.nanoTime();
        Random random = new Random(seed);
        int n = 5000;
        byte[] ops = new byte[n];
        long[] vas = new long[n];
        byte[] widths = new byte[n];
        long[] values = new long[n];
        for (int i = 0; i < n; i++) {
            ops[i] = (byte) random.nextInt(3);
            int w = 1 << random.nextInt(4);
            widths[i] = (byte) w;
            vas[i] = (ops[i] == TraceOp.FETCH ? CODE + random.nextInt(4 * 4096 - 8) : DATA + random.nextInt(32 * 4096 - 8));
            values[i] = random.nextLong();
        }
        long[] expected = new long[n];
        try (Machine twin = Machine.builder().node(GIB).cpus(1).build()) {
            AddressSpace t = twin.createAddressSpace();
            t.mmap(DATA, 32 * 4096, Protection.READ_WRITE, ANON);
            t.mmap(CODE, 4 * 4096, Protection.READ_EXEC, ANON);
            Cpu c = twin.cpu(0);
            c.switchTo(t);
            for (int i = 0; i < n; i++) {
                long mask = widths[i] == 8 ? -1L : (1L << (8 * widths[i])) - 1;
                if (ops[i] == TraceOp.STORE) {
                    c.store(vas[i], widths[i], values[i]);
                    expected[i] = values[i];
                } else {
                    expected[i] = c.load(vas[i], widths[i]) & mask;
                }
            }
        }
        cpu.replay(ops, vas, widths, values);
        assertThat(values).as("seed %d", seed).isEqualTo(expected);
    }

    @Test
    void aFetchFromDataWithoutExecFaultsAtItsIndexAfterTheAccessesBefore() {
        byte[] ops = {TraceOp.STORE, TraceOp.FETCH, TraceOp.FETCH, TraceOp.STORE};
        long[] vas = {DATA, CODE, DATA, DATA + 8};
        byte[] widths = {8, 4, 4, 8};
        long[] values = {5, 0, 0, 6};
        assertThatThrownBy(() -> cpu.replay(ops, vas, widths, values))
                .isInstanceOfSatisfying(SegmentationFaultException.class, e -> {
                    assertThat(e.batchIndex()).isEqualTo(2);
                    assertThat(e.access()).isEqualTo(Access.EXECUTE);
                    assertThat(e.cause()).isEqualTo(SegmentationFaultException.Cause.PROTECTION);
                    assertThat(e.getMessage()).contains("batch index 2");
                });
        assertThat(cpu.load(DATA, 8)).as("the store before took effect").isEqualTo(5);
        assertThat(cpu.load(DATA + 8, 8)).as("the store after did not").isZero();
    }

    @Test
    void aStoreToCodeFaultsAndAFetchOfAWritableDataPageIsRefusedByNx() {
        cpu.store(DATA, 8, 1); // mapped, writable, NX
        assertThatThrownBy(() -> cpu.replay(new byte[] {TraceOp.FETCH}, new long[] {DATA}, new byte[] {1}, new long[1]))
                .isInstanceOf(SegmentationFaultException.class);
        assertThatThrownBy(() -> cpu.replay(new byte[] {TraceOp.STORE}, new long[] {CODE}, new byte[] {1}, new long[1]))
                .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.access()).isEqualTo(Access.WRITE));
    }

    @Test
    void loadAllAndStoreAllNameTheIndexThatFaulted() {
        assertThatThrownBy(() -> cpu.loadAll(new long[] {DATA, DATA + 32 * 4096}, 8, new long[2]))
                .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.batchIndex()).isEqualTo(1));
        assertThatThrownBy(() -> cpu.storeAll(new long[] {CODE}, 8, new long[1]))
                .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.batchIndex()).isZero());
        assertThatThrownBy(() -> cpu.load(CODE - 4096, 8))
                .isInstanceOfSatisfying(SegmentationFaultException.class, e -> assertThat(e.batchIndex()).isEqualTo(-1));
    }

    @Test
    void badTracesAreRefusedBeforeAnyAccessRuns() {
        TlbStats before = cpu.stats();
        long[] one = {DATA};
        assertThatThrownBy(() -> cpu.replay(null, one, new byte[] {8}, new long[1])).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("ops");
        assertThatThrownBy(() -> cpu.replay(new byte[] {0}, one, null, new long[1])).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("widths");
        assertThatThrownBy(() -> cpu.replay(new byte[] {0, 0}, one, new byte[] {8}, new long[1]))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("ops.length=2");
        assertThatThrownBy(() -> cpu.replay(new byte[] {1, 7}, new long[] {DATA, DATA}, new byte[] {8, 8}, new long[2]))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("ops[1]=7");
        assertThatThrownBy(() -> cpu.replay(new byte[] {1, 0}, new long[] {DATA, DATA}, new byte[] {8, 3}, new long[2]))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("widths[1]=3");
        assertThat(cpu.stats().minus(before).walks()).as("nothing ran").isZero();
        assertThat(mm.translate(DATA)).as("the valid store before the bad width did not run").isNegative();
    }
}
