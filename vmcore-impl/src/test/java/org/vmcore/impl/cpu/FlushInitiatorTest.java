package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.Map;
import java.util.function.Supplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/**
 * Which CPU initiates a shootdown: flush_tlb_mm_range flushes the local CPU itself
 * (nr_tlb_local_flush_one/all) and sends IPIs to the other CPUs of mm_cpumask
 * (nr_tlb_remote_flush on the sender, nr_tlb_remote_flush_received on each target).
 */
class FlushInitiatorTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;

    private Machine machine;
    private Cpu cpu0;
    private Cpu cpu1;
    private AddressSpace mm;

    /** The mm is active on both CPUs, each caching all eight pages; this thread last drove cpu1. */
    @BeforeEach
    void build() {
        machine = Machine.builder().node(GIB).cpus(2).checkInvariantsAfterEveryOperation(true).build();
        cpu0 = machine.cpu(0);
        cpu1 = machine.cpu(1);
        mm = machine.createAddressSpace();
        mm.mmap(VA, 8 * 4096, Protection.READ_WRITE, ANON);
        cpu0.switchTo(mm);
        cpu1.switchTo(mm);
        for (int i = 0; i < 8; i++) {
            cpu0.store(VA + i * 4096L, 8, i);
            cpu1.load(VA + i * 4096L, 8);
        }
        cpu1.switchTo(mm); // the stores faulted on cpu0; this makes cpu1 the thread's CPU again
    }

    @AfterEach
    void close() {
        assertThat(machine.checkInvariants()).isEmpty();
        machine.close();
        assertThat(machine.offHeapBytes()).isZero();
    }

    /** The flush counters of one munmap of page {@code page}: local and remote per CPU, and vmstat. */
    private record Counts(long sent0, long received0, long sent1, long received1, long localOne, long remote,
                          long remoteReceived) {
    }

    private Counts munmapCounts(Runnable munmap) {
        long s0 = cpu0.stats().shootdownsSent();
        long r0 = cpu0.stats().shootdownsReceived();
        long s1 = cpu1.stats().shootdownsSent();
        long r1 = cpu1.stats().shootdownsReceived();
        Map<String, Long> before = machine.vmstat();
        munmap.run();
        Map<String, Long> after = machine.vmstat();
        return new Counts(cpu0.stats().shootdownsSent() - s0, cpu0.stats().shootdownsReceived() - r0,
                cpu1.stats().shootdownsSent() - s1, cpu1.stats().shootdownsReceived() - r1,
                after.get("nr_tlb_local_flush_one") - before.get("nr_tlb_local_flush_one"),
                after.get("nr_tlb_remote_flush") - before.get("nr_tlb_remote_flush"),
                after.get("nr_tlb_remote_flush_received") - before.get("nr_tlb_remote_flush_received"));
    }

    private void unmapPage(int page) {
        mm.munmap(VA + page * 4096L, 4096);
    }

    /** One page flush initiated by cpu0: local on cpu0, one IPI to cpu1. */
    private static final Counts BY_CPU0 = new Counts(1, 0, 0, 1, 1, 1, 1);
    /** One page flush initiated by cpu1: local on cpu1, one IPI to cpu0. */
    private static final Counts BY_CPU1 = new Counts(0, 1, 1, 0, 1, 1, 1);

    @Test
    @DisplayName("cpu.run(munmap) makes that CPU the initiator (flush_tlb_mm_range: local flush, IPIs to the others)")
    void munmapRunAsACpuIsLocalThereAndRemoteElsewhere() {
        assertThat(munmapCounts(() -> cpu0.run(() -> unmapPage(0)))).isEqualTo(BY_CPU0);
        assertThat(munmapCounts(() -> cpu1.run(() -> unmapPage(1)))).isEqualTo(BY_CPU1);
        assertThat(cpu0.tlbHolds(mm, VA)).isFalse();
        assertThat(cpu1.tlbHolds(mm, VA)).isFalse();
        assertThat(cpu0.tlbHolds(mm, VA + 4096)).isFalse();
        assertThat(cpu1.tlbHolds(mm, VA + 4096)).isFalse();
    }

    @Test
    @DisplayName("without run, the initiator stays the CPU this thread last drove (here cpu1)")
    void theDefaultInitiatorIsTheLastDrivenCpu() {
        assertThat(munmapCounts(() -> unmapPage(0))).isEqualTo(BY_CPU1);
        cpu0.run(() -> unmapPage(1));
        assertThat(munmapCounts(() -> unmapPage(2))).as("run restored the default").isEqualTo(BY_CPU1);
    }

    @Test
    void callReturnsTheResultAndRunsAsTheCpu() {
        Counts counts = munmapCounts(() -> assertThat(cpu0.call(() -> {
            unmapPage(0);
            return 42;
        })).isEqualTo(42));
        assertThat(counts).isEqualTo(BY_CPU0);
    }

    @Test
    void nestedRunsTheInnerCpuWinsAndTheOuterIsRestored() {
        Counts[] inner = new Counts[1];
        Counts[] afterInner = new Counts[1];
        cpu0.run(() -> {
            inner[0] = munmapCounts(() -> cpu1.run(() -> unmapPage(0)));
            afterInner[0] = munmapCounts(() -> unmapPage(1));
        });
        assertThat(inner[0]).as("the inner run's CPU initiates").isEqualTo(BY_CPU1);
        assertThat(afterInner[0]).as("the outer run's CPU again after the inner run").isEqualTo(BY_CPU0);
        assertThat(munmapCounts(() -> unmapPage(2))).as("the thread's own default after both").isEqualTo(BY_CPU1);
    }

    @Test
    void anExceptionFromTheActionPropagatesAndRestoresThePreviousInitiator() {
        IllegalStateException boom = new IllegalStateException("boom");
        Counts[] inside = new Counts[1];
        assertThatThrownBy(() -> cpu0.run(() -> {
            inside[0] = munmapCounts(() -> unmapPage(0));
            throw boom;
        })).isSameAs(boom);
        assertThat(inside[0]).isEqualTo(BY_CPU0);
        assertThat(munmapCounts(() -> unmapPage(1))).isEqualTo(BY_CPU1);
        assertThatThrownBy(() -> cpu0.run(() -> mm.munmap(VA + 1, 4096))).as("the engine's own error, too")
                .isInstanceOf(InvalidArgumentException.class);
        assertThatThrownBy(() -> cpu0.call(() -> {
            throw boom;
        })).isSameAs(boom);
        assertThat(munmapCounts(() -> unmapPage(2))).isEqualTo(BY_CPU1);
    }

    @Test
    void aNullActionIsRejectedAndChangesNothing() {
        assertThatThrownBy(() -> cpu0.run(null)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("action");
        assertThatThrownBy(() -> cpu0.call((Supplier<Object>) null)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("action");
        assertThat(munmapCounts(() -> unmapPage(0))).isEqualTo(BY_CPU1);
    }
}
