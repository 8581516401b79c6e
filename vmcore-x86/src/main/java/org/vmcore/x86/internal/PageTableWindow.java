package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;

/**
 * A node's page-table window: a naturally aligned block of frames that page tables of that node
 * are taken from first, whose bytes are one contiguous host segment.
 *
 * <p>Why: a hardware walk reads one entry per level, and a table's bytes are normally found
 * through a frame-to-page lookup that costs more than the read itself. Inside a window the
 * table's bytes sit at {@code (pfn - base) * 4096} of one segment, so the walker reaches them
 * with arithmetic, as a C radix walk does. The kernel groups its unmovable allocations, page
 * tables among them, into pageblocks of their own in much the same spirit.
 *
 * <p>A node claims its window at its first page-table allocation and keeps it for the life of
 * the memory. Free frames of the window count as free memory; they are handed out only to page
 * tables. When the window is full, tables come from the buddy allocator as before. Thread-safe.
 */
public final class PageTableWindow {
    private final int node;
    private final long base;
    private final long frames;
    private final MemorySegment memory;
    private final LongArrayList free;

    /**
     * A window whose frames are all free.
     *
     * @param node the node whose tables it holds
     * @param base its first frame, aligned to {@code frames}
     * @param frames its size, a power of two
     * @param memory the host segment of its {@code frames * 4096} bytes
     */
    public PageTableWindow(int node, long base, long frames, MemorySegment memory) {
        this.node = node;
        this.base = base;
        this.frames = frames;
        this.memory = memory;
        this.free = new LongArrayList((int) frames);
        for (long pfn = base + frames - 1; pfn >= base; pfn--) { // the lowest frame pops first
            free.add(pfn);
        }
    }

    /**
     * The node whose tables this window holds.
     *
     * @return the NUMA node id
     */
    public int node() {
        return node;
    }

    /**
     * The first PFN of the window.
     *
     * @return the PFN of the window's first frame
     */
    public long base() {
        return base;
    }

    /**
     * The number of frames in the window.
     *
     * @return the window's size in 4 KiB frames
     */
    public long frames() {
        return frames;
    }

    /**
     * The bytes of every frame of the window: frame {@code base + i} at offset {@code i * 4096}.
     *
     * @return the host segment of {@code frames() * 4096} bytes
     */
    public MemorySegment memory() {
        return memory;
    }

    /**
     * Whether {@code pfn} lies in the window.
     *
     * @param pfn a frame number
     * @return true when {@code base() <= pfn < base() + frames()}
     */
    public boolean contains(long pfn) {
        return pfn - base >= 0 && pfn - base < frames;
    }

    /**
     * Free frames of the window.
     *
     * @return the number of frames of the window not holding a page table
     */
    public synchronized long freeFrames() {
        return free.size();
    }

    /**
     * A free frame of the window.
     *
     * @return the frame, or -1 when the window is full
     */
    public synchronized long allocate() {
        return free.isEmpty() ? -1 : free.removeAtIndex(free.size() - 1);
    }

    /**
     * Gives a frame of the window back.
     *
     * @param pfn a frame of the window that {@link #allocate} handed out
     */
    public synchronized void free(long pfn) {
        free.add(pfn);
    }

    @Override
    public String toString() {
        return "page-table window of node " + node + ": pfn 0x" + Long.toHexString(base) + "+" + frames;
    }
}
