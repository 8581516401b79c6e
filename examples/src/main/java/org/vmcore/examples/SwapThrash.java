package org.vmcore.examples;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Advice;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmCounters;
import org.vmcore.api.Protection;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;

/**
 * A process whose working set is larger than the memory it may keep: the program plays a
 * memory cgroup's limit, calling {@link Machine#reclaim} whenever the process's RSS goes past
 * {@code limit} pages (as memory.high makes the kernel reclaim on the way), and the process
 * sweeps its pages over and over. With a working set under the limit nothing is swapped after
 * the first sweep; above it, every sweep pays a major fault per page (pswpin, maj_flt) and the
 * CPU cycles the cost model gives a swap-in. Then MADV_COLD marks the half it no longer needs,
 * and the next reclaims take that half first: the hot half stays resident.
 *
 * <p>Run: {@code ./run-example SwapThrash}
 */
public final class SwapThrash {
    private static final long PAGE = 4096;

    private SwapThrash() {
    }

    /** What one run measured. */
    record Result(long majorFaults, long pswpin, long pswpout, long cycles) {
    }

    public static void main(String[] args) {
        run(192, 256, 3, false);
        run(320, 256, 3, false);
        run(320, 256, 3, true);
    }

    /**
     * Sweeps {@code pages} pages {@code sweeps} times under a limit of {@code limit} resident
     * pages; with {@code coldHalf}, the second half is advised MADV_COLD after the first sweep
     * and only the first half is swept after that.
     */
    static Result run(int pages, int limit, int sweeps, boolean coldHalf) {
        try (Machine machine = Machine.builder().node(1L << 30).swap(4L << 20).build()) {
            Cpu cpu = machine.cpu(0);
            cpu.costModel(CostTable.DEFAULT);
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, pages * PAGE, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            cpu.switchTo(mm);
            VmstatSnapshot start = machine.vmstatSnapshot();
            int touched = pages;
            for (int sweep = 0; sweep < sweeps; sweep++) {
                for (int i = 0; i < touched; i++) {
                    long v = cpu.load(va + i * PAGE, 8);
                    cpu.store(va + i * PAGE, 8, v + 1);
                    MmCounters c = mm.counters();
                    if (c.anonPages() > limit) {
                        machine.reclaim(0, c.anonPages() - limit + limit / 8); // memory.high: back under, with some room
                    }
                }
                if (coldHalf && sweep == 0) {
                    mm.madvise(va + pages / 2 * PAGE, pages / 2 * PAGE, Advice.COLD);
                    touched = pages / 2;
                }
            }
            VmstatSnapshot d = machine.vmstatSnapshot().minus(start);
            MmCounters c = mm.counters();
            long cycles = cpu.cycles();
            for (int i = 0; i < touched; i++) { // every write is there, swapped out or not
                if (cpu.load(va + i * PAGE, 8) != sweeps) {
                    throw new AssertionError("page " + i + " lost a write");
                }
            }
            System.out.printf("%d pages, limit %d, %d sweeps%s: RSS %d, VmSwap %d, maj_flt %d, pswpin %d, pswpout %d, %d Mcycles%n",
                    pages, limit, sweeps, coldHalf ? ", second half MADV_COLD after the first sweep" : "", c.anonPages(),
                    c.swapPages(), c.majorFaults(), d.get(VmstatCounter.PSWPIN), d.get(VmstatCounter.PSWPOUT),
                    cycles / 1_000_000);
            return new Result(c.majorFaults(), d.get(VmstatCounter.PSWPIN), d.get(VmstatCounter.PSWPOUT), cycles);
        }
    }
}
