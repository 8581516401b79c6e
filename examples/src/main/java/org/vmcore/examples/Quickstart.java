package org.vmcore.examples;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/**
 * vmcore embedded in ten lines: a machine, an address space, an mmap, a store and a load
 * through a CPU, and the translation behind them.
 *
 * <p>Run: {@code ./run-example Quickstart}
 */
public final class Quickstart {
    private Quickstart() {
    }

    public static void main(String[] args) {
        try (Machine machine = Machine.builder().node(1L << 30).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, 1 << 20, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(va + 8, 8, 42);
            System.out.printf("store 42 at 0x%x, load gives %d%n", va + 8, cpu.load(va + 8, 8));
            System.out.printf("0x%x translates to physical 0x%x on node %d%n", va + 8, mm.translate(va + 8),
                    machine.page(mm.pageAt(va)).node());
            System.out.println(mm.counters());
            System.out.println(cpu.stats());
        }
    }
}
