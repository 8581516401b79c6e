package org.vmcore.bench.mm;

import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Level;
import org.openjdk.jmh.annotations.Measurement;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OperationsPerInvocation;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;
import org.openjdk.jmh.annotations.TearDown;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/**
 * Swap, per 4 KiB page, over 4096 written pages: swap-out by MADV_PAGEOUT (add_to_swap,
 * try_to_unmap, the write to the slot) and swap-in by fault (do_swap_page: the read from the
 * slot, the mapping). Each invocation handles the whole region; the other half of the round trip
 * is the untimed setup.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class SwapBench {
    static final int PAGES = 4096;
    static final long LENGTH = PAGES * 4096L;
    static final long VA = 0x7000_0000_0000L;

    /** A machine with a swap device and one address space whose region is written once. */
    public abstract static class Env {
        Machine machine;
        AddressSpace mm;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(1L << 30).swap((PAGES + 1) * 4096L).build();
            mm = machine.createAddressSpace();
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            for (long va = VA; va < VA + LENGTH; va += 4096) {
                mm.fault(va, Access.WRITE);
                machine.writePhysical(mm.translate(va), 8, va); // contents to copy: a never-written page costs no I/O
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }

        void swapIn() {
            for (long va = VA; va < VA + LENGTH; va += 4096) {
                mm.fault(va, Access.WRITE);
            }
        }
    }

    /** Resident before each invocation. */
    @State(Scope.Thread)
    public static class Resident extends Env {
        @Setup(Level.Invocation)
        public void in() {
            swapIn();
        }
    }

    /** Swapped out before each invocation. */
    @State(Scope.Thread)
    public static class Out extends Env {
        @Setup(Level.Invocation)
        public void out() {
            mm.madvise(VA, LENGTH, Advice.PAGEOUT);
        }
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public int swapOut(Resident s) {
        return s.mm.madvise(VA, LENGTH, Advice.PAGEOUT);
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public void swapIn(Out s) {
        s.swapIn();
    }
}
