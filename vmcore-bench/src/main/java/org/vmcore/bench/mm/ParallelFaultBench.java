package org.vmcore.bench.mm;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
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
import org.openjdk.jmh.annotations.Threads;
import org.openjdk.jmh.annotations.Warmup;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.Protection;

/**
 * Throughput of anonymous 4 KiB demand-zero write faults on one thread and on two threads (issue
 * 19: two threads on two address spaces at least 1.7 times one thread on 2 cores). Each thread
 * faults its own address space of one shared machine, so the threads share only the machine:
 * its buddy allocator, page-table frame allocator and counters. Each invocation faults the whole
 * 16 MiB region (4096 pages) of {@link AnonBench}; the mmap before it and the munmap after it
 * are per-thread invocation helpers and not timed, as in {@link AnonBench#anonFault}. The score
 * is faults per microsecond, summed over the threads; one thread's score is the inverse of
 * {@code AnonBench.anonFault}'s time per fault.
 *
 * <p>With invocation helpers JMH times each invocation by itself, so each thread's score counts
 * only the time it spends faulting, while the other thread may be mapping or unmapping; that
 * munmap frees frames to the same allocators, so the faults still compete with it.
 *
 * <p>The {@code faults*} methods fault through {@link AddressSpace#fault}, as the kernel's
 * handler is entered; the {@code cpuFaults*} methods store 8 bytes to each page through CPU
 * {@code i} running thread {@code i}'s address space, so each fault also pays a TLB miss and the
 * walks before and after it.
 */
@BenchmarkMode(Mode.Throughput)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class ParallelFaultBench {
    static final int PAGES = AnonBench.PAGES;
    static final long LENGTH = AnonBench.LENGTH;
    static final long VA = AnonBench.VA;
    static final int ANON = AnonBench.ANON;
    /** CPUs of the machine: one per thread of the widest benchmark. */
    static final int CPUS = 2;

    /** The machine that every thread's address space belongs to. */
    @State(Scope.Benchmark)
    public static class Shared {
        Machine machine;
        /** Hands each thread its own CPU number. */
        final AtomicInteger nextCpu = new AtomicInteger();

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(1L << 30).cpus(CPUS).build();
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    /** The thread's own address space, with an unpopulated region before each invocation. */
    @State(Scope.Thread)
    public static class Space {
        AddressSpace mm;

        @Setup(Level.Trial)
        public void createAddressSpace(Shared shared) {
            mm = shared.machine.createAddressSpace();
            created(shared);
        }

        /** What a subclass does once the address space exists; one setup, so no helper order to rely on. */
        void created(Shared shared) {
        }

        @Setup(Level.Invocation)
        public void map() {
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON);
        }

        @TearDown(Level.Invocation)
        public void unmap() {
            mm.munmap(VA, LENGTH);
        }
    }

    /** The thread's own address space, run by a CPU of its own. */
    @State(Scope.Thread)
    public static class CpuSpace extends Space {
        Cpu cpu;

        @Override
        void created(Shared shared) {
            cpu = shared.machine.cpu(shared.nextCpu.getAndIncrement());
            cpu.switchTo(mm);
        }
    }

    @Benchmark
    @Threads(1)
    @OperationsPerInvocation(PAGES)
    public void faults1Thread(Space s) {
        fault(s);
    }

    @Benchmark
    @Threads(2)
    @OperationsPerInvocation(PAGES)
    public void faults2Threads(Space s) {
        fault(s);
    }

    @Benchmark
    @Threads(1)
    @OperationsPerInvocation(PAGES)
    public void cpuFaults1Thread(CpuSpace s) {
        store(s);
    }

    @Benchmark
    @Threads(2)
    @OperationsPerInvocation(PAGES)
    public void cpuFaults2Threads(CpuSpace s) {
        store(s);
    }

    private static void fault(Space s) {
        for (long va = VA; va < VA + LENGTH; va += 4096) {
            s.mm.fault(va, Access.WRITE);
        }
    }

    private static void store(CpuSpace s) {
        for (long va = VA; va < VA + LENGTH; va += 4096) {
            s.cpu.store(va, 8, va);
        }
    }
}
