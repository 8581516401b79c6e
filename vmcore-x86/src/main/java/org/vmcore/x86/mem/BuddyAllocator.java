package org.vmcore.x86.mem;

import java.util.Arrays;
import org.eclipse.collections.impl.list.mutable.primitive.LongArrayList;
import org.eclipse.collections.impl.map.mutable.primitive.LongIntHashMap;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.internal.MemMap;

/**
 * The buddy allocator of one NUMA node, orders 0 to {@link #MAX_ORDER} (4 KiB to 1 GiB).
 *
 * <p>Each order keeps its free blocks in a stack (the last freed block is the next one
 * handed out, like the kernel's hot end of a free list) plus a position map, so that a buddy
 * can be found and removed in constant time when blocks coalesce. Free lists live on the heap
 * and hold only block heads, so a node that was never touched costs a few entries, not one
 * per frame. At start the node is cut into the largest naturally aligned blocks, and blocks
 * are handed out lowest address first.
 *
 * <p>All methods are serialised on the allocator, like the kernel's zone lock.
 */
public final class BuddyAllocator {
    /** Largest order: 2^18 frames, one 1 GiB block. */
    public static final int MAX_ORDER = 18;

    private final NumaNode node;
    private final MemMap descriptors;
    private final LongArrayList[] freeLists = new LongArrayList[MAX_ORDER + 1];
    private final LongIntHashMap[] positions = new LongIntHashMap[MAX_ORDER + 1];
    private long freeFrames;

    BuddyAllocator(NumaNode node, MemMap descriptors) {
        this.node = node;
        this.descriptors = descriptors;
        for (int order = 0; order <= MAX_ORDER; order++) {
            freeLists[order] = new LongArrayList();
            positions[order] = new LongIntHashMap();
        }
        // Cut the node into maximal aligned blocks; push them highest first so the lowest pops first.
        LongArrayList heads = new LongArrayList();
        LongArrayList orders = new LongArrayList();
        long pfn = node.startPfn();
        while (pfn < node.endPfn()) {
            int order = Math.min(MAX_ORDER, pfn == 0 ? MAX_ORDER : Long.numberOfTrailingZeros(pfn));
            while (pfn + (1L << order) > node.endPfn()) {
                order--;
            }
            heads.add(pfn);
            orders.add(order);
            pfn += 1L << order;
        }
        for (int i = heads.size() - 1; i >= 0; i--) {
            push(heads.get(i), (int) orders.get(i));
        }
    }

    /**
     * The node this allocator serves.
     *
     * @return the node whose frames this allocator hands out
     */
    public NumaNode node() {
        return node;
    }

    /**
     * Allocates a naturally aligned block of 2^{@code order} frames, or returns -1 when the node
     * has no free block that large. The head frame's descriptor gets refcount 1, the order, the
     * node and {@link FrameFlags#ALLOCATED} (plus {@link FrameFlags#HEAD} above order 0).
     *
     * @param order log2 of the block size in 4 KiB frames, 0 to {@link #MAX_ORDER}
     * @return the head PFN of the block, or -1 when no free block is large enough
     */
    public synchronized long allocate(int order) {
        checkOrder(order);
        int from = order;
        while (from <= MAX_ORDER && freeLists[from].isEmpty()) {
            from++;
        }
        if (from > MAX_ORDER) {
            return -1;
        }
        long pfn = pop(from);
        while (from > order) { // split: keep the lower half, free the upper half
            from--;
            push(pfn + (1L << from), from);
        }
        descriptors.initAllocated(pfn, order, node.id());
        return pfn;
    }

    /**
     * Frees the block headed by {@code pfn} and merges it with free buddies.
     *
     * @param pfn the head PFN of a block this allocator handed out
     * @throws InvalidArgumentException if {@code pfn} is not the head of an allocated block of this node
     */
    public synchronized void free(long pfn) {
        if (!node.contains(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must belong to node " + node.id());
        }
        if ((descriptors.flags(pfn) & FrameFlags.ALLOCATED) == 0) {
            throw new InvalidArgumentException("pfn", pfn, "must head an allocated block (double free or tail frame)");
        }
        int order = descriptors.order(pfn);
        descriptors.clear(pfn);
        merge(pfn, order);
    }

    /**
     * Takes up to {@code n} free frames out for a per-CPU page list (rmqueue_bulk), splitting
     * blocks as {@link #allocate} does; their descriptors stay free until the list hands them out.
     * They no longer count as this allocator's free frames.
     *
     * @param into where the frames go, in the order {@code allocate(0)} would have returned them
     * @param n how many frames to take, at most {@code into.length}
     * @return how many frames were taken (fewer when the node runs out)
     */
    public synchronized int takeFrames(long[] into, int n) {
        int taken = 0;
        while (taken < n) {
            int from = 0;
            while (from <= MAX_ORDER && freeLists[from].isEmpty()) {
                from++;
            }
            if (from > MAX_ORDER) {
                break;
            }
            long pfn = pop(from);
            while (from > 0) {
                from--;
                push(pfn + (1L << from), from);
            }
            into[taken++] = pfn;
        }
        return taken;
    }

    /**
     * Gives back free frames a per-CPU page list held (free_pcppages_bulk), merging each with its
     * free buddies as {@link #free} does. Their descriptors are already free.
     *
     * @param pfns the frames, in {@code pfns[from..to)}
     * @param from the first index
     * @param to one past the last index
     */
    public synchronized void returnFrames(long[] pfns, int from, int to) {
        for (int i = from; i < to; i++) {
            merge(pfns[i], 0);
        }
    }

    private void merge(long pfn, int order) {
        while (order < MAX_ORDER) {
            long buddy = pfn ^ (1L << order);
            if (!positions[order].containsKey(buddy)) {
                break;
            }
            remove(buddy, order);
            pfn = Math.min(pfn, buddy);
            order++;
        }
        push(pfn, order);
    }

    /**
     * Takes every free frame of {@code [start, end)} out of the allocator for good (memory
     * offline): free blocks inside the range are removed, blocks straddling its edges are split
     * and their outside parts stay free. The removed blocks are marked allocated and
     * {@link FrameFlags#RESERVED}, so they are never handed out or freed again.
     *
     * @param start the first PFN of the range, inside this node
     * @param end one past the last PFN of the range, at most the node's end and above {@code start}
     * @return the number of frames taken
     */
    public synchronized long isolateRange(long start, long end) {
        if (start < node.startPfn() || end > node.endPfn() || start >= end) {
            throw new InvalidArgumentException("start", start, "must start a non-empty range inside node " + node.id());
        }
        long taken = 0;
        for (int order = MAX_ORDER; order >= 0; order--) {
            for (long head : freeLists[order].toArray()) {
                long blockEnd = head + (1L << order);
                if (blockEnd <= start || head >= end) {
                    continue;
                }
                remove(head, order);
                taken += carve(head, order, start, end);
            }
        }
        return taken;
    }

    private long carve(long head, int order, long start, long end) {
        long blockEnd = head + (1L << order);
        if (blockEnd <= start || head >= end) {
            push(head, order);
            return 0;
        }
        if (head >= start && blockEnd <= end) {
            descriptors.initAllocated(head, order, node.id());
            descriptors.setFlags(head, FrameFlags.RESERVED);
            return 1L << order;
        }
        return carve(head, order - 1, start, end) + carve(head + (1L << (order - 1)), order - 1, start, end);
    }

    /**
     * Free frames in the node.
     *
     * @return the number of free 4 KiB frames
     */
    public synchronized long freeFrames() {
        return freeFrames;
    }

    /**
     * Free blocks of exactly {@code order}.
     *
     * @param order the block order, 0 to {@link #MAX_ORDER}
     * @return the number of free blocks of that order
     */
    public synchronized int freeBlocks(int order) {
        checkOrder(order);
        return freeLists[order].size();
    }

    /**
     * The heads of the free blocks of {@code order}, sorted ascending.
     *
     * @param order the block order, 0 to {@link #MAX_ORDER}
     * @return a new array of the head PFNs of the free blocks of that order
     */
    public synchronized long[] freeBlockHeads(int order) {
        checkOrder(order);
        long[] heads = freeLists[order].toArray();
        Arrays.sort(heads);
        return heads;
    }

    /**
     * Whether a block of {@code order} could be allocated now.
     *
     * @param order the block order, 0 to {@link #MAX_ORDER}
     * @return true when a free block of that order or larger exists
     */
    public synchronized boolean canAllocate(int order) {
        checkOrder(order);
        for (int o = order; o <= MAX_ORDER; o++) {
            if (!freeLists[o].isEmpty()) {
                return true;
            }
        }
        return false;
    }

    /**
     * Whether {@code pfn} lies inside a free block.
     *
     * @param pfn a frame number
     * @return true when the frame is part of a free block
     */
    public synchronized boolean isFree(long pfn) {
        for (int order = 0; order <= MAX_ORDER; order++) {
            if (positions[order].containsKey(pfn & -(1L << order))) {
                return true;
            }
        }
        return false;
    }

    private void push(long pfn, int order) {
        positions[order].put(pfn, freeLists[order].size());
        freeLists[order].add(pfn);
        freeFrames += 1L << order;
    }

    private long pop(int order) {
        LongArrayList list = freeLists[order];
        long pfn = list.removeAtIndex(list.size() - 1);
        positions[order].remove(pfn);
        freeFrames -= 1L << order;
        return pfn;
    }

    private void remove(long pfn, int order) {
        LongArrayList list = freeLists[order];
        int at = positions[order].removeKeyIfAbsent(pfn, -1);
        long last = list.removeAtIndex(list.size() - 1);
        if (last != pfn) { // move the last block into the hole
            list.set(at, last);
            positions[order].put(last, at);
        }
        freeFrames -= 1L << order;
    }

    private static void checkOrder(int order) {
        if (order < 0 || order > MAX_ORDER) {
            throw new InvalidArgumentException("order", order, "must be between 0 and " + MAX_ORDER);
        }
    }
}
