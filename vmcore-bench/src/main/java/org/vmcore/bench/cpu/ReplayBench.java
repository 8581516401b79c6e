package org.vmcore.bench.cpu;

import java.util.Random;
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
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.TraceOp;

/**
 * {@code Cpu.replay} against {@code Cpu.loadAll} on the same 64 TLB-hitting accesses, with and
 * without an {@code AccessListener}; and a TLB-missing load with its walk recorded
 * ({@code loadRecorded}) against a plain one. The issue-17 targets are ratios within one run:
 * replayHit / loadAllHit at most 1.1, replayHitListener / loadAllHit at most 2,
 * loadRecordedWalk / loadWalk at most 1.5.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx3g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class ReplayBench {
    private static final int N = 64;

    /** 64 cached pages; a trace of loads over them, and a mixed one (loads and stores). */
    @State(Scope.Thread)
    public static class Hot extends TlbBench.Env {
        byte[] loads = new byte[N];
        byte[] mixed = new byte[N];
        byte[] widths = new byte[N];
        long sum;

        @Setup(Level.Trial)
        public void setUp() {
            setUp(N, false, 1);
            Random r = new Random(42);
            for (int i = 0; i < N; i++) {
                loads[i] = TraceOp.LOAD;
                mixed[i] = r.nextInt(4) == 0 ? TraceOp.STORE : TraceOp.LOAD;
                widths[i] = 8;
            }
        }
    }

    /** {@link Hot} with a listener that reads each outcome, as a timing model would. */
    @State(Scope.Thread)
    public static class Listened extends Hot {
        @Override
        @Setup(Level.Trial)
        public void setUp() {
            super.setUp();
            cpu.accessListener(this::heard);
        }

        private void heard(AccessOutcome o) {
            sum += o.physicalAddress() + o.translation().ordinal();
        }
    }

    /** 1 Mi pages in a random order: every load misses the TLB and walks. */
    @State(Scope.Thread)
    public static class Cold extends TlbBench.Env {
        @Setup(Level.Trial)
        public void setUp() {
            setUp(1 << 20, true, 1);
        }
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public long loadAllHit(Hot s) {
        s.cpu.loadAll(s.addresses, 8, s.values);
        return s.values[N - 1];
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public long replayHit(Hot s) {
        s.cpu.replay(s.loads, s.addresses, s.widths, s.values);
        return s.values[N - 1];
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public long replayHitMixed(Hot s) {
        s.cpu.replay(s.mixed, s.addresses, s.widths, s.values);
        return s.values[N - 1];
    }

    @Benchmark
    @OperationsPerInvocation(N)
    public long replayHitListener(Listened s) {
        s.cpu.replay(s.loads, s.addresses, s.widths, s.values);
        return s.sum;
    }

    @Benchmark
    public long loadWalk(Cold s) {
        long va = s.addresses[s.next];
        s.next = (s.next + 1) & ((1 << 20) - 1);
        return s.cpu.load(va, 8);
    }

    @Benchmark
    public long loadRecordedWalk(Cold s) {
        long va = s.addresses[s.next];
        s.next = (s.next + 1) & ((1 << 20) - 1);
        return s.cpu.loadRecorded(va, 8) + s.cpu.outcome().walkReferences();
    }
}
