package org.vmcore.bench.cpu;

import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Fork;
import org.openjdk.jmh.annotations.Group;
import org.openjdk.jmh.annotations.GroupThreads;
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
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/**
 * CPU accesses and TLB flushes: a load that hits the TLB (64 pages, all cached), alone and in a
 * batch of 64 ({@code Cpu.loadAll}, {@code Cpu.storeAll}), a load that
 * misses and walks (random pages of 1 Mi mapped 4 KiB pages, far more than the TLB holds), a
 * range flush of 32 pages, and a shootdown to a CPU driven by another thread that keeps loading.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx3g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class TlbBench {
    static final long VA = 0x7000_0000_0000L;
    static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE;

    /** A machine, one address space and CPU 0 running it. */
    public abstract static class Env {
        Machine machine;
        AddressSpace mm;
        Cpu cpu;
        long[] addresses;
        long[] values;
        int next;

        void setUp(int pages, boolean random, int cpus) {
            machine = Machine.builder().node(8L << 30).cpus(cpus).build();
            mm = machine.createAddressSpace();
            mm.mmap(VA, pages * 4096L, Protection.READ_WRITE, ANON);
            cpu = machine.cpu(0);
            cpu.switchTo(mm);
            addresses = new long[pages];
            values = new long[pages];
            for (int i = 0; i < pages; i++) {
                addresses[i] = VA + i * 4096L + 8;
            }
            if (random) {
                Random r = new Random(42);
                for (int i = pages - 1; i > 0; i--) {
                    int j = r.nextInt(i + 1);
                    long t = addresses[i];
                    addresses[i] = addresses[j];
                    addresses[j] = t;
                }
            }
            for (long va : addresses) {
                cpu.store(va, 8, va); // pages that hold data, as a simulated program's do
            }
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    /** 64 pages, all in the TLB. */
    @State(Scope.Thread)
    public static class Hot extends Env {
        @Setup(Level.Trial)
        public void setUp() {
            setUp(64, false, 1);
        }
    }

    /** 1 Mi pages in a random order. */
    @State(Scope.Thread)
    public static class Cold extends Env {
        @Setup(Level.Trial)
        public void setUp() {
            setUp(1 << 20, true, 1);
        }
    }

    @Benchmark
    public long loadTlbHit(Hot s) {
        long va = s.addresses[s.next];
        s.next = (s.next + 1) & 63;
        return s.cpu.load(va, 8);
    }

    /** 64 TLB-hit loads in one {@code loadAll} call: the handshake is paid once per batch; time per load. */
    @Benchmark
    @OperationsPerInvocation(64)
    public long loadTlbHitBatch(Hot s) {
        s.cpu.loadAll(s.addresses, 8, s.values);
        return s.values[63];
    }

    /** 64 TLB-hit stores in one {@code storeAll} call; time per store. */
    @Benchmark
    @OperationsPerInvocation(64)
    public void storeTlbHitBatch(Hot s) {
        s.cpu.storeAll(s.addresses, 8, s.values);
    }

    @Benchmark
    public long loadTlbMissWalk(Cold s) {
        long va = s.addresses[s.next];
        s.next = (s.next + 1) & ((1 << 20) - 1);
        return s.cpu.load(va, 8);
    }

    @Benchmark
    public void flushRange32Pages(Hot s) {
        s.mm.flushTlb(VA, VA + 32 * 4096L, 12);
    }

    /** CPU 1 runs the address space on its own thread; the other thread flushes one page. */
    @State(Scope.Group)
    public static class Pair extends Env {
        Cpu remote;

        @Setup(Level.Trial)
        public void setUp() {
            setUp(64, false, 2);
            remote = machine.cpu(1);
        }
    }

    @Benchmark
    @Group("shootdown")
    @GroupThreads(1)
    public void shootdownOnePage(Pair s) {
        s.mm.flushTlb(VA, VA + 4096, 12);
    }

    @Benchmark
    @Group("shootdown")
    @GroupThreads(1)
    public long remoteCpuLoads(Pair s) {
        if (s.remote.current() != s.mm) {
            s.remote.switchTo(s.mm);
        }
        return s.remote.load(VA + 8, 8);
    }
}
