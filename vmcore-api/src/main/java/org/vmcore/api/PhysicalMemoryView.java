package org.vmcore.api;

import java.nio.ByteBuffer;

/**
 * A {@link Machine}'s physical memory as the kernel sees it: the {@code struct page} of a frame,
 * physical reads and writes, and how much is free. Part of every {@link Machine}; a separate
 * interface only to keep the machine's own type short.
 */
public interface PhysicalMemoryView {
    /**
     * A snapshot of the page that holds frame {@code pfn}. Any frame of a 2 MiB or 1 GiB page
     * reports that page (its head pfn, size, mapcount and refcount), as /proc/kpagecount and
     * /proc/kpageflags do for each 4 KiB frame of it. A free frame reports as a 4 KiB page with
     * flags {@link PageFlag#BUDDY} alone, refcount and mapcount 0.
     *
     * @param pfn any page frame number
     * @return a snapshot of the page that holds frame {@code pfn}
     * @throws InvalidArgumentException if pfn is outside memory
     */
    Page page(long pfn);

    /**
     * A speculative reference on the page that holds frame {@code pfn}, as the kernel's PFN
     * walkers take one (page_idle, DAMON, split_huge_pages, memory offlining:
     * {@code folio_try_get} on {@code pfn_folio(pfn)}): the refcount is raised unless it is zero,
     * whatever the page is, a page table included, and held until the reference is closed. The
     * last reference closed frees the page, except a page-table page, which the kernel reports as
     * a bad page and leaks.
     *
     * @param pfn any page frame number
     * @return the reference, or null when the frame is free (its refcount is zero)
     * @throws InvalidArgumentException if pfn is outside memory
     */
    PageReference tryGetPage(long pfn);

    /**
     * Reads {@code width} (1, 2, 4 or 8) bytes of simulated physical memory at {@code pa}, as a
     * device doing DMA would.
     *
     * @param pa the physical address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @return the value read, zero-extended
     * @throws InvalidArgumentException if the width is wrong or the bytes are outside memory
     */
    long readPhysical(long pa, int width);

    /**
     * Copies {@code length} bytes of simulated physical memory from {@code pa} into
     * {@code dst[offset..offset + length)}, as a DMA read would; frames never written read as zeros.
     *
     * @param pa     the physical address of the first byte; the range may cross frames
     * @param dst    the array to fill
     * @param offset the index in {@code dst} of the first byte
     * @param length the number of bytes
     * @throws InvalidArgumentException if dst is null, the slice is outside it, or the bytes are
     *                                  outside memory (then dst is unchanged)
     */
    void readPhysical(long pa, byte[] dst, int offset, int length);

    /**
     * Fills the {@link ByteBuffer#remaining()} bytes of {@code dst} from physical address
     * {@code pa} and advances its position past them; see {@link #readPhysical(long, byte[], int, int)}.
     *
     * @param pa  the physical address of the first byte
     * @param dst a writable buffer, heap or direct
     * @throws InvalidArgumentException if dst is null or read-only, or the bytes are outside
     *                                  memory (then dst and its position are unchanged)
     */
    void readPhysical(long pa, ByteBuffer dst);

    /**
     * Writes the low {@code width} bytes of {@code value} at physical address {@code pa}; see {@link #readPhysical}.
     *
     * @param pa the physical address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param value the value to store
     */
    void writePhysical(long pa, int width, long value);

    /**
     * Frames free in the buddy allocators of all nodes.
     *
     * @return frames free in the buddy allocators of all nodes
     */
    long freeFrames();

    /**
     * Host memory taken off-heap right now, in bytes.
     *
     * @return host memory taken off-heap right now, in bytes
     */
    long offHeapBytes();
}
