package org.example.simulator;

import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Protection;

/** A consumer of the published vmcore artifacts: args[0] says where vmcore must have been loaded from. */
public final class Main {
    private Main() {
    }

    public static void main(String[] args) {
        String expected = args[0];
        String loadedFrom = Machine.class.getModule().isNamed() ? "module-path" : "class-path";
        if (!loadedFrom.equals(expected)) {
            throw new AssertionError("vmcore-api was loaded from the " + loadedFrom + ", expected the " + expected);
        }
        try (Machine machine = Machine.builder().node(1L << 30).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long va = mm.mmap(0, 1 << 20, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.store(va, 8, 42);
            long loaded = cpu.load(va, 8);
            if (loaded != 42) {
                throw new AssertionError("load gave " + loaded);
            }
            System.out.println("consumer on the " + loadedFrom + ": " + machine.getClass().getName()
                    + " stored and loaded 42 at 0x" + Long.toHexString(va));
        }
    }
}
