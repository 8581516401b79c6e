package org.vmcore.examples;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;

/**
 * A device TLB kept coherent with a process through MMU notifiers: the process writes through
 * its CPU, the device reads through its own cached translations, and every change to the
 * process's page tables (copy-on-write after fork, mprotect, munmap) reaches the device with the
 * kernel's ranges. A second, broken device ignores the notifiers and is caught using stale
 * translations.
 *
 * <p>Run: {@code ./run-example SecondaryMmu}
 */
public final class SecondaryMmu {
    private static final long VA = 0x7f00_0000_0000L;

    private SecondaryMmu() {
    }

    public static void main(String[] args) {
        try (Machine machine = Machine.builder().node(1L << 30).cpus(2).detectStaleTranslations(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(VA, 4 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            DeviceTlb good = new DeviceTlb(machine, mm, "devtlb", true);
            DeviceTlb broken = new DeviceTlb(machine, mm, "broken-devtlb", false);

            cpu.store(VA, 8, 1);
            System.out.printf("cpu0 stores 1; devices read %d and %d%n", good.read(VA), broken.read(VA));

            AddressSpace child = mm.fork(); // write-protects the parent's page
            cpu.store(VA, 8, 2);             // copy-on-write: the parent gets a new page
            System.out.printf("after fork and a COW store of 2: devtlb reads %d, broken-devtlb reads %d%n",
                    good.read(VA), broken.read(VA));

            mm.mprotect(VA + 4096, 4096, Protection.READ);
            mm.munmap(VA + 2 * 4096, 2 * 4096);
            child.close();

            System.out.println();
            System.out.println("notifier calls the coherent device received:");
            good.received().forEach(line -> System.out.println("  " + line));
            System.out.println();
            System.out.printf("devtlb: %d hits, %d misses, %d stale uses%n", good.hits(), good.misses(), good.staleUses());
            System.out.printf("broken-devtlb: %d hits, %d misses, %d stale uses%n", broken.hits(), broken.misses(),
                    broken.staleUses());
            System.out.println("stale-translation detector:");
            machine.staleAccesses().forEach(s -> System.out.println("  " + s));
            System.out.println("(" + PageSize.SIZE_4K.label() + " pages; the broken device kept reading the page the parent"
                    + " no longer maps)");
        }
    }
}
