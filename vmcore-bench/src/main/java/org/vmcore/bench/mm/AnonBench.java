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
 * Anonymous memory, per 4 KiB page, over a 16 MiB region (4096 pages): a demand-zero fault,
 * munmap of populated pages, madvise(MADV_DONTNEED) of populated pages, fork of a populated parent,
 * and mprotect of populated pages. Each
 * invocation handles the whole region; the setup and teardown around it are not timed.
 *
 * <p>Each benchmark has its own state class holding its machine: JMH 1.37 hands a helper
 * method's state parameter an instance of its own, so states do not depend on each other here.
 */
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.NANOSECONDS)
@Fork(value = 1, jvmArgsAppend = "-Xmx2g")
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
public class AnonBench {
    static final int PAGES = 4096;
    static final long LENGTH = PAGES * 4096L;
    static final long VA = 0x7000_0000_0000L;
    static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    /** A machine with one address space. */
    public abstract static class Env {
        Machine machine;
        AddressSpace mm;

        @Setup(Level.Trial)
        public void machine() {
            machine = Machine.builder().node(1L << 30).build();
            mm = machine.createAddressSpace();
        }

        @TearDown(Level.Trial)
        public void close() {
            machine.close();
        }
    }

    /** An unpopulated region before each invocation. */
    @State(Scope.Thread)
    public static class Empty extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON);
        }

        @TearDown(Level.Invocation)
        public void unmap() {
            mm.munmap(VA, LENGTH);
        }
    }

    /** A populated region before each invocation. */
    @State(Scope.Thread)
    public static class Populated extends Env {
        @Setup(Level.Invocation)
        public void map() {
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        }
    }

    /** A populated parent for the trial; the child of each invocation exits untimed. */
    @State(Scope.Thread)
    public static class Parent extends Env {
        AddressSpace child;

        @Setup(Level.Trial)
        public void populate() {
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        }

        @TearDown(Level.Invocation)
        public void exitChild() {
            if (child != null) {
                child.close();
                child = null;
            }
        }
    }

    /** A region for the trial (mapped by the first invocation's setup), written whole again before each invocation. */
    @State(Scope.Thread)
    public static class Dropped extends Env {
        boolean mapped;

        @Setup(Level.Invocation)
        public void populate() {
            if (!mapped) { // here, not in a trial setup of its own: JMH does not order it after machine()
                mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON);
                mapped = true;
            }
            for (long va = VA; va < VA + LENGTH; va += 4096) {
                mm.fault(va, Access.WRITE);
            }
        }
    }

    /** A populated region for the trial, flipped between rw- and r--. */
    @State(Scope.Thread)
    public static class Flipped extends Env {
        boolean readOnly;

        @Setup(Level.Trial)
        public void populate() {
            mm.mmap(VA, LENGTH, Protection.READ_WRITE, ANON | MapFlags.MAP_POPULATE);
        }
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public void anonFault(Empty s) {
        for (long va = VA; va < VA + LENGTH; va += 4096) {
            s.mm.fault(va, Access.WRITE);
        }
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public void munmap(Populated s) {
        s.mm.munmap(VA, LENGTH);
    }

    /** madvise(MADV_DONTNEED) of populated pages: the pages go, the VMA and page tables stay (issue 20: ≤ munmap per page). */
    @Benchmark
    @OperationsPerInvocation(PAGES)
    public int madviseDontneed(Dropped s) {
        return s.mm.madvise(VA, LENGTH, Advice.DONTNEED);
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public void fork(Parent s) {
        s.child = s.mm.fork();
    }

    @Benchmark
    @OperationsPerInvocation(PAGES)
    public void mprotect(Flipped s) {
        s.readOnly = !s.readOnly;
        s.mm.mprotect(VA, LENGTH, s.readOnly ? Protection.READ : Protection.READ_WRITE);
    }
}
