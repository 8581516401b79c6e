package org.vmcore.impl.mm;

import java.util.function.LongFunction;

import org.vmcore.api.MachineConfig;
import org.vmcore.api.PageReference;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.MigratingThread;
import org.vmcore.impl.base.OperationHook;
import org.vmcore.impl.hugetlb.HugetlbFsImpl;
import org.vmcore.impl.hugetlb.HugetlbPools;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.MigrationEntryRefs;
import org.vmcore.impl.swap.Reclaim;
import org.vmcore.impl.swap.SwapCache;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * Everything an address space may touch outside itself, handed down by the machine: the list is
 * the contract. Nothing here leads back to the machine.
 *
 * @param lock the machine lock and its open state
 * @param config paging mode, CPU count and the like
 * @param memory physical memory: frames, descriptors, allocators
 * @param registry new anon_vmas and shmem address_spaces, and forgetting them
 * @param pools the hugetlb pools (reservations, huge-page allocation)
 * @param hugetlbfs the mount, to check that a file mapped is one of its own and to evict an unlinked one
 * @param shootdown TLB flushes
 * @param callbackFailures what user callbacks threw during the current operation
 * @param hook the end of every public operation
 * @param migrating whether this thread is inside a migration (the fault path must not wait on itself)
 * @param migrationRefs frees a page once its last migration entry goes
 * @param lifecycle registers a forked child and forgets an exited address space
 * @param tryGetPage a PFN walker's speculative reference (GUP-fast takes its references there)
 * @param zeroPfn the shared zero page ({@link ZeroPage})
 * @param reclaimCounts pglazyfree and pglazyfreed
 * @param thp the transparent-huge-page mode, events and huge zero page
 * @param swapCache the swap device's slots and cache (swap-in, swap_duplicate, swap_free)
 * @param reclaim reclaim of isolated pages, for MADV_PAGEOUT
 */
public record MmContext(MachineLock lock, MachineConfig config, PhysicalMemory memory, MappingRegistry registry,
                        HugetlbPools pools, HugetlbFsImpl hugetlbfs, TlbShootdown shootdown,
                        CallbackFailures callbackFailures, OperationHook hook, MigratingThread migrating,
                        MigrationEntryRefs migrationRefs, MmLifecycle lifecycle, LongFunction<PageReference> tryGetPage,
                        long zeroPfn, ReclaimCounts reclaimCounts, Thp thp, SwapCache swapCache, Reclaim reclaim) {

    /** Creating and forgetting address spaces: the machine's PCID allocator and list behind them. */
    public interface MmLifecycle {
        /** A new address space (a child of fork), registered like any other. */
        SimAddressSpace newChild(int homeNode);

        /** Called by an address space when it exits, after its PCID was flushed everywhere. */
        void exited(SimAddressSpace mm);

        /**
         * Whether a close of {@code mm} asked for now must wait: the engine's thread is inside a
         * user callback with an operation half done below it; the machine then closes {@code mm}
         * when that operation ends.
         */
        boolean deferClose(SimAddressSpace mm);
    }
}
