package org.vmcore.x86.mem;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.OutOfMemoryException;

/**
 * Simulated physical memory: NUMA nodes laid end to end from PFN 0, each with its own buddy
 * allocator; the frame descriptors; the frame contents.
 *
 * <p>Host memory grows with what is touched, not with the configured size: creating 1 TiB
 * reserves only the bookkeeping arrays (a few hundred KiB of heap) and no off-heap memory. A
 * node's first page table claims its {@link PageTableWindow} (1/512 of the node, at most 16 MiB
 * of host memory).
 *
 * <p>Thread-safe. {@link #close()} releases every off-heap byte at once; the memory must not
 * be used afterwards.
 */
public final class PhysicalMemory implements AutoCloseable {
    private final AllocationFaults faults = new AllocationFaults();
    private final AtomicLong pageTableFrames = new AtomicLong();
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
    private final PageTableWindow[] windowByNode;
    private final boolean[] windowClaimed;
    // The windows claimed so far, replaced whole on a claim so walkers read it without a lock.
    private volatile PageTableWindow[] windows = new PageTableWindow[0];
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
        this.descriptors = new FrameDescriptors(offHeap, frameCount);
        this.contents = new FrameContents(offHeap, frameCount);
        this.allocators = new BuddyAllocator[nodes.size()];
        this.windowByNode = new PageTableWindow[nodes.size()];
        this.windowClaimed = new boolean[nodes.size()];
        for (NumaNode node : nodes) {
            allocators[node.id()] = new BuddyAllocator(node, descriptors);
        }
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
     * The buddy allocator of node {@code id}.
     *
     * @param id the node number
     * @return the node's allocator
     */
    public BuddyAllocator allocator(int id) {
        checkNode(id);
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
                    + " (" + allocators[node].freeFrames() + " free frames)");
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
        return tryAllocate(node, order, zero, AllocationKind.FRAME);
    }

    /**
     * A zeroed frame for a page table, or -1 (counted apart for fault injection): from the node's
     * {@link PageTableWindow} while it has room, else from the buddy allocator.
     *
     * @param node the node number the table belongs to
     * @return the page frame number of the table, or -1 when the node is out of memory or a fault was injected
     */
    public long tryAllocateTable(int node) {
        return tryAllocate(node, 0, true, AllocationKind.TABLE);
    }

    private long tryAllocate(int node, int order, boolean zero, AllocationKind kind) {
        ensureOpen();
        checkNode(node);
        if (faults.shouldFail(kind)) {
            return -1;
        }
        long pfn = kind == AllocationKind.TABLE ? fromWindow(node) : -1;
        if (pfn < 0) {
            pfn = allocators[node].allocate(order);
        }
        if (pfn >= 0 && zero) {
            contents.zero(pfn, 1L << order);
        }
        return pfn;
    }

    /** A frame of the node's page-table window, allocated as the buddy allocator would, or -1. */
    private long fromWindow(int node) {
        PageTableWindow window = windowFor(node);
        long pfn = window == null ? -1 : window.allocate();
        if (pfn >= 0) {
            descriptors.initAllocated(pfn, 0, node);
        }
        return pfn;
    }

    /**
     * Frames of a node's page-table window: as many tables as map the whole node once with 4 KiB
     * pages (1/512 of it), rounded down to a power of two, at most 4096 (16 MiB of host memory);
     * none for a node under 16 MiB.
     */
    static long windowFrames(long nodeFrames) {
        long wanted = nodeFrames / 512;
        return wanted < 8 ? 0 : Math.min(Long.highestOneBit(wanted), 4096);
    }

    /** The node's window, claimed at the first call: a free aligned block none of whose frames has a page yet. */
    private synchronized PageTableWindow windowFor(int node) {
        if (windowClaimed[node]) {
            return windowByNode[node];
        }
        windowClaimed[node] = true;
        long frames = windowFrames(nodes.get(node).frames());
        if (frames == 0) {
            return null;
        }
        int order = Long.numberOfTrailingZeros(frames);
        LongArrayList passedOver = new LongArrayList();
        try {
            for (int attempt = 0; attempt < 8; attempt++) {
                long head = allocators[node].allocate(order);
                if (head < 0) {
                    return null; // no room: tables come from the buddy allocator
                }
                if (contents.firstMaterialised(head, frames) >= 0) {
                    passedOver.add(head); // a page of a frame must never change: look for untouched frames
                    continue;
                }
                MemorySegment memory;
                try {
                    memory = offHeap.allocate(frames * FRAME_BYTES);
                } catch (OutOfMemoryError e) {
                    passedOver.add(head);
                    return null;
                }
                descriptors.clear(head); // its frames are free until tables take them
                contents.adopt(head, frames, memory);
                PageTableWindow window = new PageTableWindow(node, head, frames, memory);
                windowByNode[node] = window;
                PageTableWindow[] grown = Arrays.copyOf(windows, windows.length + 1);
                grown[grown.length - 1] = window;
                windows = grown;
                return window;
            }
            return null;
        } finally {
            passedOver.forEach(allocators[node]::free);
        }
    }

    /**
     * The page-table windows claimed so far (a walker reads tables in them by arithmetic).
     *
     * @return a snapshot array, one element per node that has claimed its window
     */
    public PageTableWindow[] tableWindows() {
        return windows;
    }

    /**
     * The window that holds {@code pfn}, or null.
     *
     * @param pfn a frame number of this memory
     * @return the window containing the frame, or null when none does
     */
    public PageTableWindow windowOf(long pfn) {
        for (PageTableWindow window : windows) {
            if (window.contains(pfn)) {
                return window;
            }
        }
        return null;
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
     * @return the live counter, in frames
     */
    public AtomicLong pageTableFrames() {
        return pageTableFrames;
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
        PageTableWindow window = windowOf(pfn);
        if (window == null) {
            allocators[nodeOf(pfn)].free(pfn);
            return;
        }
        synchronized (window) {
            if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0) {
                throw new InvalidArgumentException("pfn", pfn, "must head an allocated block (double free or tail frame)");
            }
            descriptors.clear(pfn);
            window.free(pfn);
        }
    }

    /**
     * Free frames over all nodes.
     *
     * @return the number of free 4 KiB frames, page-table window frames included
     */
    public long freeFrames() {
        long free = 0;
        for (BuddyAllocator allocator : allocators) {
            free += allocator.freeFrames();
        }
        for (PageTableWindow window : windows) {
            free += window.freeFrames();
        }
        return free;
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
