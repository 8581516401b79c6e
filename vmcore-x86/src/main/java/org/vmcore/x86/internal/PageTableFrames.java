package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import java.util.concurrent.atomic.AtomicLong;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * Where page-table frames come from and how many are in use (the kernel's
 * {@code pagetable_alloc} and the PageTables count of /proc/meminfo): a zeroed frame from the
 * node's {@link PageTableWindow} while it has room, else from the node's buddy allocator.
 *
 * <p>A node claims its window at its first page-table allocation, under this object's monitor:
 * a free, naturally aligned block none of whose frames has a host page yet, given one host
 * segment. The window stays claimed for the life of the memory. Thread-safe.
 */
public final class PageTableFrames {
    private final PhysicalMemory memory;
    private final MemMap descriptors;
    private final DirectMap pages;
    private final OffHeap offHeap;
    private final AtomicLong inUse = new AtomicLong();
    private final PageTableWindow[] windowByNode;
    private final boolean[] windowClaimed;
    // The windows claimed so far, replaced whole on a claim so walkers read it without a lock.
    private volatile PageTableWindow[] windows = new PageTableWindow[0];

    /**
     * No window claimed, no table frame in use.
     *
     * @param memory the memory the frames belong to
     * @param descriptors its frame descriptors
     * @param pages its frames' host pages
     * @param offHeap the arena window segments come from
     */
    public PageTableFrames(PhysicalMemory memory, MemMap descriptors, DirectMap pages, OffHeap offHeap) {
        this.memory = memory;
        this.descriptors = descriptors;
        this.pages = pages;
        this.offHeap = offHeap;
        this.windowByNode = new PageTableWindow[memory.nodes().size()];
        this.windowClaimed = new boolean[memory.nodes().size()];
    }

    /**
     * A zeroed frame for a page table, or -1 (counted apart for fault injection): from the node's
     * window while it has room, else from the buddy allocator. The frame is not yet marked as a
     * table; see {@link #account}.
     *
     * @param node the node the table belongs to
     * @return the frame, or -1 when the node is out of memory or a fault was injected
     * @throws InvalidArgumentException if the node does not exist
     */
    public long tryAllocate(int node) {
        memory.ensureOpen();
        memory.node(node); // validates the id
        if (memory.faults().shouldFail(AllocationKind.TABLE)) {
            return -1;
        }
        PageTableWindow window = windowFor(node);
        long pfn = window == null ? -1 : window.allocate();
        if (pfn >= 0) {
            descriptors.initAllocated(pfn, 0, node);
        } else {
            pfn = memory.allocator(node).allocate(0);
        }
        if (pfn >= 0) {
            pages.zero(pfn, 1);
        }
        return pfn;
    }

    /**
     * Marks a frame from {@link #tryAllocate} as a page table and counts it, or undoes that
     * before the frame is freed: PGTABLE, the host page a walk reads, the PageTables count.
     *
     * @param pfn the table's frame
     * @param table true when it becomes a table, false when it stops being one
     */
    public void account(long pfn, boolean table) {
        if (table) {
            descriptors.setFlags(pfn, FrameFlags.PGTABLE);
            pages.page(pfn); // a table is always materialised: walks read it
            inUse.incrementAndGet();
        } else {
            descriptors.clearFlags(pfn, FrameFlags.PGTABLE);
            inUse.decrementAndGet();
        }
    }

    /**
     * The memory the frames belong to.
     *
     * @return the memory given at construction
     */
    public PhysicalMemory memory() {
        return memory;
    }

    /**
     * Frames in use as page tables, shared ones once.
     *
     * @return the count
     */
    public long inUse() {
        return inUse.get();
    }

    /**
     * Frames of a node's page-table window: as many tables as map the whole node once with 4 KiB
     * pages (1/512 of it), rounded down to a power of two, at most 4096 (16 MiB of host memory);
     * none for a node under 16 MiB.
     *
     * @param nodeFrames the node's size in frames
     * @return the window's size in frames, 0 for none
     */
    public static long windowFrames(long nodeFrames) {
        long wanted = nodeFrames / 512;
        return wanted < 8 ? 0 : Math.min(Long.highestOneBit(wanted), 4096);
    }

    /** The node's window, claimed at the first call: a free aligned block none of whose frames has a page yet. */
    private synchronized PageTableWindow windowFor(int node) {
        if (windowClaimed[node]) {
            return windowByNode[node];
        }
        windowClaimed[node] = true;
        long frames = windowFrames(memory.node(node).frames());
        if (frames == 0) {
            return null;
        }
        int order = Long.numberOfTrailingZeros(frames);
        LongArrayList passedOver = new LongArrayList();
        try {
            for (int attempt = 0; attempt < 8; attempt++) {
                long head = memory.allocator(node).allocate(order);
                if (head < 0) {
                    return null; // no room: tables come from the buddy allocator
                }
                if (pages.firstMaterialised(head, frames) >= 0) {
                    passedOver.add(head); // a page of a frame must never change: look for untouched frames
                    continue;
                }
                MemorySegment segment;
                try {
                    segment = offHeap.allocate(frames * PhysicalMemory.FRAME_BYTES);
                } catch (OutOfMemoryError e) {
                    passedOver.add(head);
                    return null;
                }
                descriptors.clear(head); // its frames are free until tables take them
                pages.adopt(head, frames, segment);
                PageTableWindow window = new PageTableWindow(node, head, frames, segment);
                windowByNode[node] = window;
                PageTableWindow[] grown = Arrays.copyOf(windows, windows.length + 1);
                grown[grown.length - 1] = window;
                windows = grown;
                return window;
            }
            return null;
        } finally {
            passedOver.forEach(memory.allocator(node)::free);
        }
    }

    /**
     * The windows claimed so far (a walker reads tables in them by arithmetic). The array is
     * replaced whole on a claim, never changed in place: callers must not write it.
     *
     * @return one element per node that has claimed its window, in claim order
     */
    public PageTableWindow[] windows() {
        return windows;
    }

    /**
     * The window that holds {@code pfn}, or null.
     *
     * @param pfn a frame number
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
     * Free frames of every window (free memory, but only for page tables).
     *
     * @return the count
     */
    public long freeWindowFrames() {
        long free = 0;
        for (PageTableWindow window : windows) {
            free += window.freeFrames();
        }
        return free;
    }

    /**
     * Frees {@code pfn} to its window when it lies in one.
     *
     * @param pfn the frame to free
     * @return false when the frame lies in no window (the caller frees it to the buddy allocator)
     * @throws InvalidArgumentException if the frame is in a window but not allocated
     */
    public boolean freeToWindow(long pfn) {
        PageTableWindow window = windowOf(pfn);
        if (window == null) {
            return false;
        }
        synchronized (window) {
            if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0) {
                throw new InvalidArgumentException("pfn", pfn, "must head an allocated block (double free or tail frame)");
            }
            descriptors.clear(pfn);
            window.free(pfn);
        }
        return true;
    }
}
