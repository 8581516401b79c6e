package org.vmcore.examples;

import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.PageFaultCode;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;

/**
 * A tour of the x86-64 layer: a 1 TiB machine on two nodes that costs almost nothing on the
 * host, one page of each size mapped in real x86-64 tables, hardware walks that set A and D,
 * a fault, and the kernel-format dump of the tables.
 *
 * <p>Run: {@code ./run-example PageTableTour [--five-level]}
 */
public final class PageTableTour {
    private PageTableTour() {
    }

    public static void main(String[] args) {
        PagingMode mode = PagingMode.FOUR_LEVEL;
        for (String arg : args) {
            if (arg.equals("--five-level")) {
                mode = PagingMode.FIVE_LEVEL;
            } else {
                System.err.println("unknown option " + arg + " (known: --five-level)");
                System.exit(2);
            }
        }
        long start = System.nanoTime();
        try (PhysicalMemory memory = new PhysicalMemory(512L << 30, 512L << 30)) {
            System.out.printf("machine: 1 TiB on 2 nodes, created in %.2f ms, %d off-heap bytes reserved%n",
                    (System.nanoTime() - start) / 1e6, memory.offHeapBytes());

            PageTable table = new PageTable(memory, mode, 0);
            long small = memory.allocate(0, 0, true);
            long huge = memory.allocate(1, 9, true);
            long gigantic = memory.allocate(1, 18, true);
            long userRw = Pte.PRESENT | Pte.RW | Pte.USER | Pte.NX;
            table.map(0x0000_7f00_0000_1000L, small, PageSize.SIZE_4K, userRw);
            table.map(0x0000_7f00_4000_0000L, huge, PageSize.SIZE_2M, userRw);
            table.map(0x0000_7f40_0000_0000L, gigantic, PageSize.SIZE_1G, userRw);
            System.out.printf("mode: %s, page-table pages: %d (cr3=0x%x)%n", mode, table.tablePages(), table.cr3());

            Walker walker = new Walker(memory);
            WalkResult out = new WalkResult();
            long[] addresses = {0x0000_7f00_0000_1010L, 0x0000_7f00_4012_3456L, 0x0000_7f40_1234_5678L};
            for (long va : addresses) {
                walker.walk(table, va, PageFaultCode.USER | PageFaultCode.WRITE, out);
                memory.contents().write(out.physicalAddress(), 8, va);
                System.out.printf("store to va 0x%x -> pa 0x%x via %s leaf: %s%n",
                        va, out.physicalAddress(), out.pageSize().label(), Pte.describe(out.entry(), out.level()));
            }
            walker.walk(table, 0x0000_7f00_0000_2000L, PageFaultCode.USER, out);
            System.out.println("load from va 0x7f0000002000 -> " + out);
            System.out.printf("host memory now: %d off-heap bytes, %d frames materialised%n",
                    memory.offHeapBytes(), memory.contents().materialisedFrames());
            System.out.println();
            System.out.print(table.dump());
        }
    }
}
