package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.mem.FrameContents;

/**
 * The host page of each frame, as the kernel's direct map gives each physical page a kernel
 * virtual address: the storage behind {@link FrameContents}, materialised lazily.
 *
 * <p>A frame that was never written has no host memory and reads as zero. The first write
 * gives it a 4 KiB page cut from a 2 MiB off-heap slab, and the frame keeps that page until the
 * memory is closed: zeroing clears the bytes in place. So a page segment obtained for a frame
 * stays the frame's page, which lets a walker or a TLB entry cache it without invalidation.
 * Host memory thus grows with the set of frames ever written, which the allocator keeps small
 * by handing out recently freed frames first.
 */
public final class DirectMap {
    private static final int SECTION_SHIFT = MemMap.SECTION_SHIFT;
    private static final int SECTION_FRAMES = 1 << SECTION_SHIFT;
    private static final long PAGE = 4096;
    private static final long SLAB_BYTES = 2L << 20;

    private static final ValueLayout.OfShort SHORT = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt INT = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LONG = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle OUTER = MethodHandles.arrayElementVarHandle(MemorySegment[][].class);
    private static final VarHandle INNER = MethodHandles.arrayElementVarHandle(MemorySegment[].class);

    private final OffHeap offHeap;
    private final long frameCount;
    private final MemorySegment[][] sections;
    private MemorySegment slab;
    private long slabUsed = SLAB_BYTES;
    private long materialised;

    /**
     * No frame has a page yet.
     *
     * @param offHeap the arena slabs come from
     * @param frameCount the number of frames
     */
    public DirectMap(OffHeap offHeap, long frameCount) {
        this.offHeap = offHeap;
        this.frameCount = frameCount;
        this.sections = new MemorySegment[(int) ((frameCount + SECTION_FRAMES - 1) >>> SECTION_SHIFT)][];
    }

    /**
     * Number of frames that hold host memory.
     *
     * @return the number of frames that have a 4 KiB host page
     */
    public synchronized long materialisedFrames() {
        return materialised;
    }

    /**
     * The 4 KiB page of {@code pfn}, or null when the frame was never written (reads as zero).
     * Once non-null, the same segment is returned for the frame until the memory is closed.
     *
     * @param pfn a frame number of this memory
     * @return the frame's 4096-byte segment, or null
     */
    public MemorySegment pageOrNull(long pfn) {
        checkPfn(pfn);
        MemorySegment[] inner = (MemorySegment[]) OUTER.getAcquire(sections, (int) (pfn >>> SECTION_SHIFT));
        return inner == null ? null : (MemorySegment) INNER.getAcquire(inner, (int) (pfn & (SECTION_FRAMES - 1)));
    }

    /**
     * The 4 KiB page of {@code pfn}, materialising a zeroed one if needed.
     *
     * @param pfn a frame number of this memory
     * @return the frame's 4096-byte segment, never null
     */
    public MemorySegment page(long pfn) {
        MemorySegment page = pageOrNull(pfn);
        return page != null ? page : materialise(pfn);
    }

    /**
     * Makes {@code frames} frames from {@code pfn} on read as zero (clear_page), in place.
     *
     * @param pfn the first frame number
     * @param frames the number of consecutive frames
     */
    public void zero(long pfn, long frames) {
        checkRange(pfn, frames);
        for (long f = pfn; f < pfn + frames; f++) {
            MemorySegment[] inner = (MemorySegment[]) OUTER.getAcquire(sections, (int) (f >>> SECTION_SHIFT));
            if (inner == null) {
                f |= SECTION_FRAMES - 1; // a section never written reads as zero already
                continue;
            }
            MemorySegment page = (MemorySegment) INNER.getAcquire(inner, (int) (f & (SECTION_FRAMES - 1)));
            if (page != null) {
                page.fill((byte) 0);
            }
        }
    }

    /**
     * Reads {@code width} (1, 2, 4 or 8) bytes at {@code offset} of a frame's page,
     * zero-extended; the access must stay inside the page.
     *
     * @param page a frame's 4096-byte segment
     * @param offset the byte offset in the page, 0 to 4096 minus {@code width}
     * @param width the access size in bytes: 1, 2, 4 or 8
     * @return the value read, zero-extended to 64 bits
     * @throws InvalidArgumentException if the width is not 1, 2, 4 or 8
     */
    public static long readPage(MemorySegment page, long offset, int width) {
        return switch (width) {
            case 1 -> page.get(ValueLayout.JAVA_BYTE, offset) & 0xffL;
            case 2 -> page.get(SHORT, offset) & 0xffffL;
            case 4 -> page.get(INT, offset) & 0xffff_ffffL;
            case 8 -> page.get(LONG, offset);
            default -> throw badWidth(width);
        };
    }

    /**
     * Writes the low {@code width} (1, 2, 4 or 8) bytes of {@code value} at {@code offset} of a frame's page.
     *
     * @param page a frame's 4096-byte segment
     * @param offset the byte offset in the page, 0 to 4096 minus {@code width}
     * @param width the access size in bytes: 1, 2, 4 or 8
     * @param value the value, of which the low {@code width} bytes are stored
     * @throws InvalidArgumentException if the width is not 1, 2, 4 or 8
     */
    public static void writePage(MemorySegment page, long offset, int width, long value) {
        switch (width) {
            case 1 -> page.set(ValueLayout.JAVA_BYTE, offset, (byte) value);
            case 2 -> page.set(SHORT, offset, (short) value);
            case 4 -> page.set(INT, offset, (int) value);
            case 8 -> page.set(LONG, offset, value);
            default -> throw badWidth(width);
        }
    }

    /**
     * The exception for an access width other than 1, 2, 4 or 8.
     *
     * @param width the width asked for
     * @return the exception naming the width and the rule
     */
    public static InvalidArgumentException badWidth(int width) {
        return new InvalidArgumentException("width", width, "must be 1, 2, 4 or 8 bytes");
    }

    /**
     * Gives the frames {@code [pfn, pfn + frames)} the pages of {@code memory}, frame
     * {@code pfn + i} at offset {@code i * 4096} (a page-table window). None of the frames may
     * have a page yet, so no page of a frame ever changes.
     *
     * @param pfn the first frame
     * @param frames the number of frames
     * @param memory a segment of {@code frames * 4096} bytes
     * @throws IllegalStateException if a frame of the range already has a page
     */
    public synchronized void adopt(long pfn, long frames, MemorySegment memory) {
        checkRange(pfn, frames);
        long touched = firstMaterialised(pfn, frames);
        if (touched >= 0) {
            throw new IllegalStateException("pfn 0x" + Long.toHexString(touched) + " already has a page");
        }
        for (long f = pfn; f < pfn + frames; f++) {
            int outer = (int) (f >>> SECTION_SHIFT);
            MemorySegment[] inner = sections[outer];
            if (inner == null) {
                inner = new MemorySegment[SECTION_FRAMES];
                OUTER.setRelease(sections, outer, inner);
            }
            INNER.setRelease(inner, (int) (f & (SECTION_FRAMES - 1)), memory.asSlice((f - pfn) * PAGE, PAGE));
        }
        materialised += frames;
    }

    /**
     * The first frame of {@code [pfn, pfn + frames)} that has a page, or -1.
     *
     * @param pfn the first frame
     * @param frames the number of frames
     * @return the frame number, or -1 when none has a page
     */
    public long firstMaterialised(long pfn, long frames) {
        for (long f = pfn; f < pfn + frames; f++) {
            MemorySegment[] inner = (MemorySegment[]) OUTER.getAcquire(sections, (int) (f >>> SECTION_SHIFT));
            if (inner == null) {
                f |= SECTION_FRAMES - 1;
            } else if (INNER.getAcquire(inner, (int) (f & (SECTION_FRAMES - 1))) != null) {
                return f;
            }
        }
        return -1;
    }

    private synchronized MemorySegment materialise(long pfn) {
        int outer = (int) (pfn >>> SECTION_SHIFT);
        MemorySegment[] inner = sections[outer];
        if (inner == null) {
            inner = new MemorySegment[SECTION_FRAMES];
            OUTER.setRelease(sections, outer, inner);
        }
        int i = (int) (pfn & (SECTION_FRAMES - 1));
        MemorySegment page = inner[i];
        if (page == null) {
            if (slabUsed == SLAB_BYTES) {
                slab = offHeap.allocate(SLAB_BYTES);
                slabUsed = 0;
            }
            page = slab.asSlice(slabUsed, PAGE);
            slabUsed += PAGE;
            INNER.setRelease(inner, i, page);
            materialised++;
        }
        return page;
    }

    private void checkPfn(long pfn) {
        if (pfn < 0 || pfn >= frameCount) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(frameCount));
        }
    }

    /**
     * Checks that {@code [pfn, pfn + frames)} lies inside memory.
     *
     * @param pfn the first frame
     * @param frames the number of frames
     * @throws InvalidArgumentException naming the value and the rule otherwise
     */
    public void checkRange(long pfn, long frames) {
        checkPfn(pfn);
        if (frames < 0 || pfn + frames > frameCount) {
            throw new InvalidArgumentException("frames", frames,
                    "must be non-negative and keep pfn 0x" + Long.toHexString(pfn) + " + frames within memory");
        }
    }
}
