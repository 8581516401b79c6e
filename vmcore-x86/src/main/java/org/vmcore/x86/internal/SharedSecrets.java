package org.vmcore.x86.internal;

import org.vmcore.x86.mem.PhysicalMemory;
import org.vmcore.x86.tlb.Tlb;

/**
 * How the generic mm reaches the internal parts of the public x86 objects, after the JDK's
 * {@code jdk.internal.access.SharedSecrets}: each public class registers an accessor from its
 * static initializer, and this package is exported only to {@code org.vmcore.impl}, so users of
 * the raw layer cannot call it.
 *
 * <p>An accessor is used when an object is wired up, never per access: the parts it returns
 * (the descriptor array, the frames' host pages, the L1 DTLB) are final classes whose methods
 * the caller keeps and calls directly. A caller always holds an instance of the public class,
 * so that class's initializer has run and the accessor is set.
 */
public final class SharedSecrets {
    private static volatile PhysicalMemoryAccess physicalMemoryAccess;
    private static volatile TlbAccess tlbAccess;

    private SharedSecrets() {
    }

    /** The internal parts of a {@link PhysicalMemory}. */
    public interface PhysicalMemoryAccess {
        /**
         * The descriptor array with its mutators.
         *
         * @param memory the memory
         * @return the array behind {@link PhysicalMemory#descriptors()}
         */
        MemMap memMap(PhysicalMemory memory);

        /**
         * The frames' host pages.
         *
         * @param memory the memory
         * @return the pages behind {@link PhysicalMemory#contents()}
         */
        DirectMap directMap(PhysicalMemory memory);

        /**
         * The page-table frame allocator and its windows.
         *
         * @param memory the memory
         * @return the allocator of the memory's page-table frames
         */
        PageTableFrames pageTableFrames(PhysicalMemory memory);
    }

    /** The internal parts of a {@link Tlb}. */
    @FunctionalInterface
    public interface TlbAccess {
        /**
         * The L1 DTLB with its host pages.
         *
         * @param tlb the TLB
         * @return the L1 in front of its 4 KiB array
         */
        L1Dtlb l1Dtlb(Tlb tlb);
    }

    /**
     * Registers the accessor; called once, by {@link PhysicalMemory}'s static initializer.
     *
     * @param access the accessor
     * @throws IllegalStateException if one is registered already
     */
    public static void setPhysicalMemoryAccess(PhysicalMemoryAccess access) {
        if (physicalMemoryAccess != null) {
            throw new IllegalStateException("PhysicalMemoryAccess is registered already");
        }
        physicalMemoryAccess = access;
    }

    /**
     * Registers the accessor; called once, by {@link Tlb}'s static initializer.
     *
     * @param access the accessor
     * @throws IllegalStateException if one is registered already
     */
    public static void setTlbAccess(TlbAccess access) {
        if (tlbAccess != null) {
            throw new IllegalStateException("TlbAccess is registered already");
        }
        tlbAccess = access;
    }

    /**
     * The descriptor array of {@code memory}, with the mutators the generic mm uses.
     *
     * @param memory the memory
     * @return its descriptor array
     */
    public static MemMap memMap(PhysicalMemory memory) {
        return physicalMemoryAccess.memMap(memory);
    }

    /**
     * The host pages of {@code memory}'s frames.
     *
     * @param memory the memory
     * @return its direct map
     */
    public static DirectMap directMap(PhysicalMemory memory) {
        return physicalMemoryAccess.directMap(memory);
    }

    /**
     * The page-table frame allocator of {@code memory}.
     *
     * @param memory the memory
     * @return its page-table frames
     */
    public static PageTableFrames pageTableFrames(PhysicalMemory memory) {
        return physicalMemoryAccess.pageTableFrames(memory);
    }

    /**
     * The L1 DTLB of {@code tlb}.
     *
     * @param tlb the TLB
     * @return its L1 DTLB
     */
    public static L1Dtlb l1Dtlb(Tlb tlb) {
        return tlbAccess.l1Dtlb(tlb);
    }
}
