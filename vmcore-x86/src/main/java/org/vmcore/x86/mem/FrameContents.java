package org.vmcore.x86.mem;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Arrays;
import java.util.Objects;
import org.vmcore.x86.internal.DirectMap;

/**
 * The bytes of simulated physical memory, materialised lazily: a frame that was never written
 * has no host memory and reads as zero; its first write gives it a 4 KiB host page, which it
 * keeps until the memory is closed.
 *
 * <p>Freeing a frame does not clear it: like real memory, a freed frame keeps its bytes until a
 * zeroing allocation reuses it, so a write through a stale translation is still visible there.
 *
 * <p>Multi-byte values are little-endian, as on x86.
 */
public final class FrameContents {
    private static final long PAGE = 4096;

    private final DirectMap pages;

    FrameContents(DirectMap pages) {
        this.pages = pages;
    }

    /**
     * Number of frames that hold host memory (were ever written).
     *
     * @return the number of frames that have a 4 KiB host page
     */
    public long materialisedFrames() {
        return pages.materialisedFrames();
    }

    /**
     * Whether {@code pfn} holds host memory (was ever written).
     *
     * @param pfn a frame number of this memory
     * @return true when the frame has a host page
     */
    public boolean isMaterialised(long pfn) {
        return pages.pageOrNull(pfn) != null;
    }

    /**
     * Makes {@code frames} frames from {@code pfn} on read as zero (clear_page).
     *
     * @param pfn the first frame number
     * @param frames the number of consecutive 4 KiB frames to clear
     */
    public void zero(long pfn, long frames) {
        pages.zero(pfn, frames);
    }

    /**
     * Copies {@code frames} frames from {@code srcPfn} to {@code dstPfn} (migration's copy).
     * Source frames that read as zero leave the destination frames zero without host memory.
     *
     * @param srcPfn the first frame number to copy from
     * @param dstPfn the first frame number to copy to
     * @param frames the number of consecutive 4 KiB frames
     */
    public void copy(long srcPfn, long dstPfn, long frames) {
        pages.checkRange(srcPfn, frames);
        pages.checkRange(dstPfn, frames);
        for (long i = 0; i < frames; i++) {
            MemorySegment src = pages.pageOrNull(srcPfn + i);
            if (src == null) {
                pages.zero(dstPfn + i, 1);
            } else {
                pages.page(dstPfn + i).copyFrom(src);
            }
        }
    }

    /**
     * Reads {@code width} (1, 2, 4 or 8) bytes at physical address {@code pa}, zero-extended.
     *
     * @param pa the physical address; the access may cross a frame boundary
     * @param width the access size in bytes: 1, 2, 4 or 8
     * @return the value read, zero-extended to 64 bits
     */
    public long read(long pa, int width) {
        long offset = pa & (PAGE - 1);
        if (offset + width > PAGE) {
            return readSplit(pa, width);
        }
        MemorySegment page = pages.pageOrNull(pa >>> 12);
        if (page == null) {
            checkWidth(width);
            return 0;
        }
        return DirectMap.readPage(page, offset, width);
    }

    /**
     * Writes the low {@code width} (1, 2, 4 or 8) bytes of {@code value} at {@code pa}.
     *
     * @param pa the physical address; the access may cross a frame boundary
     * @param width the access size in bytes: 1, 2, 4 or 8
     * @param value the value, of which the low {@code width} bytes are stored
     */
    public void write(long pa, int width, long value) {
        long offset = pa & (PAGE - 1);
        if (offset + width > PAGE) {
            writeSplit(pa, width, value);
            return;
        }
        checkWidth(width);
        DirectMap.writePage(pages.page(pa >>> 12), offset, width, value);
    }

    /**
     * Copies {@code length} bytes at {@code pa} into {@code dst[dstOffset..]}.
     *
     * @param pa the physical address of the first byte; the range may cross frames
     * @param dst the array to fill
     * @param dstOffset the index in {@code dst} of the first byte written
     * @param length the number of bytes
     */
    public void readBytes(long pa, byte[] dst, int dstOffset, int length) {
        Objects.checkFromIndexSize(dstOffset, length, dst.length);
        while (length > 0) {
            int chunk = (int) Math.min(length, PAGE - (pa & (PAGE - 1)));
            MemorySegment page = pages.pageOrNull(pa >>> 12);
            if (page == null) {
                Arrays.fill(dst, dstOffset, dstOffset + chunk, (byte) 0);
            } else {
                MemorySegment.copy(page, ValueLayout.JAVA_BYTE, pa & (PAGE - 1), dst, dstOffset, chunk);
            }
            pa += chunk;
            dstOffset += chunk;
            length -= chunk;
        }
    }

    /**
     * Copies {@code src[srcOffset..srcOffset+length)} to physical address {@code pa}.
     *
     * @param pa the physical address of the first byte; the range may cross frames
     * @param src the array to copy from
     * @param srcOffset the index in {@code src} of the first byte read
     * @param length the number of bytes
     */
    public void writeBytes(long pa, byte[] src, int srcOffset, int length) {
        Objects.checkFromIndexSize(srcOffset, length, src.length);
        while (length > 0) {
            int chunk = (int) Math.min(length, PAGE - (pa & (PAGE - 1)));
            MemorySegment.copy(src, srcOffset, pages.page(pa >>> 12), ValueLayout.JAVA_BYTE, pa & (PAGE - 1), chunk);
            pa += chunk;
            srcOffset += chunk;
            length -= chunk;
        }
    }

    /** The storage, for the accessor the internal package reaches it through. */
    DirectMap pages() {
        return pages;
    }

    private long readSplit(long pa, int width) {
        checkWidth(width);
        long value = 0;
        for (int i = 0; i < width; i++) {
            value |= read(pa + i, 1) << (8 * i);
        }
        return value;
    }

    private void writeSplit(long pa, int width, long value) {
        checkWidth(width);
        for (int i = 0; i < width; i++) {
            write(pa + i, 1, value >>> (8 * i));
        }
    }

    private static void checkWidth(int width) {
        if (width != 1 && width != 2 && width != 4 && width != 8) {
            throw DirectMap.badWidth(width);
        }
    }
}
