package org.vmcore.x86.mem;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.MemMap;
import org.vmcore.x86.internal.OffHeap;
import org.vmcore.x86.internal.PageTableFrames;
import org.vmcore.x86.internal.SharedSecrets;

/**
 * Simulated physical memory: NUMA nodes laid end to end from PFN 0, each with its own buddy
 * allocator; the frame descriptors; the frame contents.
 *
 * <p>Host memory grows with what is touched, not with the configured size: creating 1 TiB
 * reserves only the bookkeeping arrays (a few hundred KiB of heap) and no off-heap memory. A
 * node's first page table claims its page-table window (1/512 of the node, at most 16 MiB of
 * host memory), from which that node's page tables are taken first.
 *
 * <p>Thread-safe. {@link #close()} releases every off-heap byte at once; the memory must not
 * be used afterwards.
 */
public final class PhysicalMemory implements AutoCloseable {
    static {
        SharedSecrets.setPhysicalMemoryAccess(new SharedSecrets.PhysicalMemoryAccess() {
            @Override
            public MemMap memMap(PhysicalMemory memory) {
                return memory.descriptors.map();
            }

            @Override
            public DirectMap directMap(PhysicalMemory memory) {
                return memory.contents.pages();
            }

            @Override
            public PageTableFrames pageTableFrames(PhysicalMemory memory) {
                return memory.tables;
            }
        });
    }

    private final AllocationFaults faults = new AllocationFaults();
    /** Bytes per frame. */
    public static final long FRAME_BYTES = 4096;
    /** Largest physical address width x86-64 allows (MAXPHYADDR of 52 bits). */
    public static final int MAX_PHYS_BITS = 52;

    private final OffHeap offHeap = new OffHeap();
    private final List<NumaNode> nodes;
    private final BuddyAllocator[] allocators;
    private final FrameDescriptors descriptors;
    private final FrameContents contents;
    private final long frameCount;
    private final PageTableFrames tables;
    private final PerCpuPages pcp;
    private volatile boolean closed;

    /**
     * Memory with one node per argument, of the given sizes in bytes.
     *
     * @param nodeBytes the size of each node in bytes, node 0 first; each a positive multiple of 4096
     * @throws InvalidArgumentException if no node is given, a size is not a positive multiple of
     *                                  4 KiB, or the total exceeds 2^52 bytes
     */
    public PhysicalMemory(long... nodeBytes) {
        if (nodeBytes.length == 0) {
            throw new InvalidArgumentException("nodeBytes", "[]", "must name at least one node");
        }
        if (nodeBytes.length > Short.MAX_VALUE) {
            throw new InvalidArgumentException("nodeBytes.length", nodeBytes.length, "must be at most " + Short.MAX_VALUE);
        }
        List<NumaNode> list = new ArrayList<>();
        long next = 0;
        for (int i = 0; i < nodeBytes.length; i++) {
            long bytes = nodeBytes[i];
            if (bytes <= 0 || bytes % FRAME_BYTES != 0) {
                throw new InvalidArgumentException("nodeBytes[" + i + "]", bytes, "must be a positive multiple of 4096");
            }
            if ((bytes >>> 12) > (1L << (MAX_PHYS_BITS - 12)) - next) {
                throw new InvalidArgumentException("nodeBytes[" + i + "]", bytes,
                        "must keep total memory within 2^" + MAX_PHYS_BITS + " bytes");
            }
            list.add(new NumaNode(i, next, bytes >>> 12));
            next += bytes >>> 12;
        }
        this.nodes = List.copyOf(list);
        this.frameCount = next;
        MemMap map = new MemMap(offHeap, frameCount);
        DirectMap pages = new DirectMap(offHeap, frameCount);
        this.descriptors = new FrameDescriptors(map);
        this.contents = new FrameContents(pages);
        this.allocators = new BuddyAllocator[nodes.size()];
        for (NumaNode node : nodes) {
            allocators[node.id()] = new BuddyAllocator(node, map);
        }
        this.tables = new PageTableFrames(this, map, pages, offHeap);
        this.pcp = new PerCpuPages(allocators, map);
    }

    /**
     * The nodes, by id.
     *
     * @return an unmodifiable list, node 0 first
     */
    public List<NumaNode> nodes() {
        return nodes;
    }

    /**
     * Node {@code id}.
     *
     * @param id the node number, 0 to the node count minus 1
     * @return the node
     */
    public NumaNode node(int id) {
        checkNode(id);
        return nodes.get(id);
    }

    /**
     * The node that holds {@code pfn}.
     *
     * @param pfn a frame number of this memory
     * @return the node id
     */
    public int nodeOf(long pfn) {
        checkPfn(pfn);
        for (NumaNode node : nodes) {
            if (node.contains(pfn)) {
                return node.id();
            }
        }
        throw new IllegalStateException("unreachable: pfn inside memory but in no node");
    }

    /**
     * Total number of 4 KiB frames.
     *
     * @return the sum of the nodes' frames
     */
    public long frameCount() {
        return frameCount;
    }

    /**
     * Whether {@code pfn} names a frame of this memory.
     *
     * @param pfn a frame number
     * @return true when {@code 0 <= pfn < frameCount()}
     */
    public boolean isValidPfn(long pfn) {
        return pfn >= 0 && pfn < frameCount;
    }

    /**
     * The frame descriptors.
     *
     * @return the descriptors of every frame of this memory
     */
    public FrameDescriptors descriptors() {
        return descriptors;
    }

    /**
     * The frame contents.
     *
     * @return the bytes of every frame of this memory
     */
    public FrameContents contents() {
        return contents;
    }

    /**
     * The buddy allocator of node {@code id}, holding every free frame of the node: the per-CPU
     * page lists give theirs back first (drain_all_pages), since whoever asks for the allocator
     * inspects or isolates frames directly.
     *
     * @param id the node number
     * @return the node's allocator
     */
    public BuddyAllocator allocator(int id) {
        checkNode(id);
        pcp.drainAll();
        return allocators[id];
    }

    /**
     * Allocates 2^{@code order} frames on {@code node}; with {@code zero} the block reads as zero
     * (__GFP_ZERO), otherwise it keeps whatever a previous user left.
     *
     * @param node the node number to allocate from
     * @param order log2 of the block size in 4 KiB frames, 0 to {@link BuddyAllocator#MAX_ORDER}
     * @param zero whether the block must read as zero
     * @return the head pfn
     * @throws OutOfMemoryException if the node has no free block of that order
     */
    public long allocate(int node, int order, boolean zero) {
        long pfn = tryAllocate(node, order, zero);
        if (pfn < 0) {
            throw new OutOfMemoryException("node " + node + " has no free block of order " + order
                    + " (" + (allocators[node].freeFrames() + pcp.cached(node)) + " free frames)");
        }
        return pfn;
    }

    /**
     * As {@link #allocate} but returns -1 instead of throwing when the node is out of memory.
     *
     * @param node the node number to allocate from
     * @param order log2 of the block size in 4 KiB frames, 0 to {@link BuddyAllocator#MAX_ORDER}
     * @param zero whether the block must read as zero
     * @return the head PFN, or -1
     */
    public long tryAllocate(int node, int order, boolean zero) {
        ensureOpen();
        checkNode(node);
        if (faults.shouldFail(AllocationKind.FRAME)) {
            return -1;
        }
        long pfn;
        if (order == 0) {
            pfn = pcp.allocate(node); // the per-CPU list, refilled from the buddy allocator in batches
        } else {
            pfn = allocators[node].allocate(order);
            if (pfn < 0) {
                pcp.drainAll(); // a larger block may form from frames the lists held
                pfn = allocators[node].allocate(order);
            }
        }
        if (pfn >= 0 && zero) {
            contents.zero(pfn, 1L << order);
        }
        return pfn;
    }

    /**
     * Off-heap bytes held by all simulated memories of this process that are not closed yet.
     *
     * @return the byte count over every open {@code PhysicalMemory}
     */
    public static long liveOffHeapBytes() {
        return OffHeap.LIVE.get();
    }

    /**
     * Frames in use as page tables, shared ones once (the kernel's PageTables in /proc/meminfo).
     *
     * @return the number of frames
     */
    public long pageTableFrames() {
        return tables.inUse();
    }

    /**
     * Fault injection for this memory's allocations.
     *
     * @return the fault injector every allocation of this memory consults
     */
    public AllocationFaults faults() {
        return faults;
    }

    /**
     * Frees the block headed by {@code pfn} to its node's allocator.
     *
     * @param pfn the head frame number of an allocated block
     */
    public void free(long pfn) {
        ensureOpen();
        if (tables.freeToWindow(pfn)) {
            return;
        }
        int node = nodeOf(pfn);
        if (!pcp.free(pfn, node)) {
            allocators[node].free(pfn);
        }
    }

    /**
     * Free frames over all nodes.
     *
     * @return the number of free 4 KiB frames, page-table window frames included
     */
    public long freeFrames() {
        long free = 0;
        for (int node = 0; node < allocators.length; node++) {
            free += allocators[node].freeFrames() + pcp.cached(node);
        }
        return free + tables.freeWindowFrames();
    }

    /**
     * Off-heap bytes reserved for descriptors and contents.
     *
     * @return the byte count of this memory's off-heap segments
     */
    public long offHeapBytes() {
        return offHeap.reservedBytes();
    }

    /**
     * Whether {@link #close()} was called.
     *
     * @return true once the memory is closed
     */
    public boolean isClosed() {
        return closed;
    }

    /** Throws {@link ClosedException} once the memory is closed. */
    public void ensureOpen() {
        if (closed) {
            throw new ClosedException("physical memory");
        }
    }

    @Override
    public synchronized void close() {
        if (!closed) {
            closed = true;
            offHeap.close();
        }
    }

    private void checkNode(int id) {
        if (id < 0 || id >= nodes.size()) {
            throw new InvalidArgumentException("node", id, "must be between 0 and " + (nodes.size() - 1));
        }
    }

    private void checkPfn(long pfn) {
        if (!isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(frameCount));
        }
    }
}
