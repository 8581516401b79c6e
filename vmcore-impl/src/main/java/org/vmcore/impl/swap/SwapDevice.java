package org.vmcore.impl.swap;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.LongConsumer;
import org.eclipse.collections.impl.stack.mutable.primitive.LongArrayStack;
import org.vmcore.x86.internal.DirectMap;
import org.vmcore.x86.internal.OffHeap;

/**
 * The one swap device of a machine (swap_info_struct, mm/swapfile.c): {@code slots} 4 KiB slots,
 * slot 0 the header and never handed out, each slot with its swap_map word and its contents.
 *
 * <p>The swap_map word of a slot is its swap count (the swap entries in page tables that name
 * it) plus {@link #HAS_CACHE} while a page of the swap cache stands for it, as Linux keeps
 * SWAP_HAS_CACHE; a slot is free when its word is 0. The words live off-heap in chunks
 * allocated on first use, the contents in a lazily materialised {@link DirectMap} (a slot never
 * written reads as zero and costs no host memory), both from the device's own arena.
 *
 * <p>Locking: the device's monitor (the swap_info and cluster locks) guards the words, the free
 * list and the swap cache built on it ({@link SwapCache}); it is a leaf lock, taken under
 * page-table locks, and nothing is called out while it is held.
 */
public final class SwapDevice implements AutoCloseable {
    /** SWAP_HAS_CACHE: a swap-cache page stands for the slot. */
    static final int HAS_CACHE = 1 << 30;
    /** The swap-count bits of a swap_map word. */
    static final int COUNT_MASK = HAS_CACHE - 1;

    private static final int CHUNK_SHIFT = 16;
    private static final int CHUNK_SLOTS = 1 << CHUNK_SHIFT;

    private final long slots;
    private final OffHeap offHeap = new OffHeap();
    private final MemorySegment[] mapChunks;
    private final DirectMap contents;
    private final LongArrayStack freed = new LongArrayStack(); // slots given back, reused first
    private long highWater = 1; // slots below were handed out once; slot 0 is the header
    private long inuse;
    private final AtomicLong pswpin = new AtomicLong();
    private final AtomicLong pswpout = new AtomicLong();

    /** A device of {@code bytes} (a multiple of 4 KiB; 0 for none). */
    public SwapDevice(long bytes) {
        this.slots = bytes >>> 12;
        this.mapChunks = new MemorySegment[(int) ((slots + CHUNK_SLOTS - 1) >>> CHUNK_SHIFT)];
        this.contents = new DirectMap(offHeap, Math.max(1, slots));
    }

    /** Pages the device holds (SwapTotal / 4 KiB): every slot but the header. */
    public long totalPages() {
        return Math.max(0, slots - 1);
    }

    /** Pages free (SwapFree / 4 KiB). */
    public synchronized long freePages() {
        return totalPages() - inuse;
    }

    /** vm_swap_full: more than half the slots are in use (then swap-ins free their slots at once). */
    synchronized boolean vmSwapFull() {
        return inuse * 2 > totalPages();
    }

    /** pswpin. */
    public long pswpin() {
        return pswpin.get();
    }

    /** pswpout. */
    public long pswpout() {
        return pswpout.get();
    }

    /** Whether {@code slot} is a slot of this device that may be handed out. */
    public boolean isValidSlot(long slot) {
        return slot >= 1 && slot < slots;
    }

    // ---- swap_map (caller holds the monitor) ----

    /** folio_alloc_swap: a free slot, its word set to {@link #HAS_CACHE}; -1 when the device is full. */
    long allocSlot() {
        assert Thread.holdsLock(this);
        long slot;
        if (!freed.isEmpty()) {
            slot = freed.pop();
        } else if (highWater < slots) {
            slot = highWater++;
        } else {
            return -1;
        }
        setWord(slot, HAS_CACHE);
        inuse++;
        return slot;
    }

    int word(long slot) {
        assert Thread.holdsLock(this);
        if (slot < 0 || slot >= slots) {
            return 0; // a corrupt entry names no slot: it reads as free
        }
        MemorySegment chunk = mapChunks[(int) (slot >>> CHUNK_SHIFT)];
        return chunk == null ? 0 : chunk.getAtIndex(ValueLayout.JAVA_INT, slot & (CHUNK_SLOTS - 1));
    }

    void setWord(long slot, int word) {
        assert Thread.holdsLock(this);
        int c = (int) (slot >>> CHUNK_SHIFT);
        if (mapChunks[c] == null) {
            mapChunks[c] = offHeap.allocate((long) CHUNK_SLOTS * Integer.BYTES);
        }
        mapChunks[c].setAtIndex(ValueLayout.JAVA_INT, slot & (CHUNK_SLOTS - 1), word);
    }

    /**
     * Calls {@code visitor} with each slot below the highest ever handed out whose word is not
     * 0, skipping chunks never written: a check costs what was used, not the device's size.
     */
    void forEachInUse(LongConsumer visitor) {
        assert Thread.holdsLock(this);
        for (long slot = 1; slot < highWater; slot++) {
            if (mapChunks[(int) (slot >>> CHUNK_SHIFT)] == null) {
                slot |= CHUNK_SLOTS - 1;
            } else if (word(slot) != 0) {
                visitor.accept(slot);
            }
        }
    }

    /** Gives a slot whose word just became 0 back to the free list. */
    void release(long slot) {
        assert Thread.holdsLock(this) && word(slot) == 0;
        freed.push(slot);
        inuse--;
    }

    // ---- contents (the caller holds the page's folio lock, which keeps the slot's page to itself) ----

    /** swap_writepage: the slot gets the frame's 4 KiB; a frame that reads as zero costs no host page. */
    void write(long slot, DirectMap frames, long pfn) {
        MemorySegment src = frames.pageOrNull(pfn);
        if (src == null) {
            contents.zero(slot, 1);
        } else {
            contents.page(slot).copyFrom(src);
        }
        pswpout.incrementAndGet();
    }

    /** swap_read_folio: the frame (zeroed when it was allocated) gets the slot's 4 KiB. */
    void read(long slot, DirectMap frames, long pfn) {
        MemorySegment src = contents.pageOrNull(slot);
        if (src != null) {
            frames.page(pfn).copyFrom(src);
        }
        pswpin.incrementAndGet();
    }

    /** Off-heap bytes the device holds (swap_map chunks and slot contents). */
    public long offHeapBytes() {
        return offHeap.reservedBytes();
    }

    @Override
    public void close() {
        offHeap.close();
    }
}
