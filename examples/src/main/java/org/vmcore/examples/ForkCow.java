package org.vmcore.examples;

import java.util.Set;
import java.util.TreeSet;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/**
 * A fork tree and copy-on-write, seen through rmap: a parent writes a page, forks twice, a child
 * forks again, and each write breaks the sharing for the writer alone. After each step the
 * report lists which processes map which physical page and the pages' mapcounts.
 *
 * <p>Run: {@code ./run-example ForkCow}
 */
public final class ForkCow {
    private ForkCow() {
    }

    public static void main(String[] args) {
        try (Machine machine = Machine.builder().node(1L << 30).build()) {
            Cpu cpu = machine.cpu(0);
            AddressSpace parent = machine.createAddressSpace();
            long va = parent.mmap(0, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            write(cpu, parent, va, 1);
            report(machine, "parent wrote 1", parent, va);
            AddressSpace a = parent.fork();
            AddressSpace b = parent.fork();
            AddressSpace grandchild = a.fork();
            report(machine, "after three forks (parent -> a -> grandchild, parent -> b)", parent, va);
            write(cpu, a, va, 2);
            report(machine, "a wrote 2: a gets its own copy", parent, va);
            write(cpu, parent, va, 3);
            report(machine, "parent wrote 3: a copy too (b and the grandchild still share the original)", parent, va);
            b.close();
            write(cpu, grandchild, va, 4);
            report(machine, "b exited, the grandchild wrote 4: it was the last mapper, so it wrote in place", parent, va);
            for (AddressSpace mm : new AddressSpace[] {parent, a, grandchild}) {
                cpu.switchTo(mm);
                System.out.printf("%s reads %d%n", mm, cpu.load(va, 8));
            }
        }
    }

    private static void write(Cpu cpu, AddressSpace mm, long va, long value) {
        cpu.switchTo(mm);
        cpu.store(va, 8, value);
    }

    private static void report(Machine machine, String step, AddressSpace any, long va) {
        System.out.println("== " + step);
        Set<Long> pages = new TreeSet<>();
        for (AddressSpace mm : machine.addressSpaces()) {
            long pfn = mm.pageAt(va);
            if (pfn >= 0) {
                pages.add(pfn);
            }
        }
        for (long pfn : pages) {
            var page = machine.page(pfn);
            System.out.printf("  pfn 0x%x mapcount %d mapped by %s%n", pfn, page.mapcount(), machine.rmap().mappings(pfn));
        }
    }
}
