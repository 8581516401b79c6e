package org.vmcore.impl.base;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.pgtable.Walker;

/** Argument checks and factories that depend only on the machine's physical memory. */
public final class Nodes {
    private Nodes() {
    }

    /** Rejects a node number the machine does not have. */
    public static void check(int nodeCount, int node) {
        if (node < 0 || node >= nodeCount) {
            throw new InvalidArgumentException("node", node, "must be an existing node (0.." + (nodeCount - 1) + ")");
        }
    }

    /** A hardware walker for {@code memory}, with as many physical-address bits as it needs. */
    public static Walker newWalker(PhysicalMemory memory) {
        int bits = Math.max(46, 64 - Long.numberOfLeadingZeros(memory.frameCount() - 1) + 12);
        return new Walker(memory, Math.min(bits, PhysicalMemory.MAX_PHYS_BITS));
    }
}
