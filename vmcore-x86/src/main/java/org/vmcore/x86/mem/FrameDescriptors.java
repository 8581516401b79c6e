package org.vmcore.x86.mem;

import org.vmcore.x86.internal.MemMap;

/**
 * The frame descriptors, read-only: vmcore's {@code struct page} array, off-heap.
 *
 * <p>Each 4 KiB frame has a 40-byte descriptor: flags, refcount, mapcount, page-table share
 * count, mapping, index, order and node. Descriptors are materialised a section (4096 frames)
 * at a time, the first time a frame in the section is written; a frame whose section was never
 * written reads as all zero, which is the descriptor of a free, never-used frame. This is what
 * keeps a 1 TiB machine small on the host.
 *
 * <p>Unlike the kernel's {@code _mapcount}, which starts at -1, {@link #mapcount} starts at 0
 * and counts the page-table entries that map the frame. The generic mm changes descriptors
 * atomically, without a lock, as the kernel does; those updates are not part of this API.
 */
public final class FrameDescriptors {
    /** Frames per materialised section. */
    public static final int SECTION_FRAMES = 1 << MemMap.SECTION_SHIFT;
    /** Bytes per descriptor. */
    public static final long DESCRIPTOR_BYTES = 40;

    private final MemMap map;

    FrameDescriptors(MemMap map) {
        this.map = map;
    }

    /**
     * Number of frames described.
     *
     * @return the number of 4 KiB frames of the memory
     */
    public long frameCount() {
        return map.frameCount();
    }

    /**
     * Number of sections whose descriptors have been materialised.
     *
     * @return the number of sections of {@link #SECTION_FRAMES} frames that have descriptor memory
     */
    public int materialisedSections() {
        return map.materialisedSections();
    }

    /**
     * Whether the section holding {@code pfn} has been materialised; the frames of a section that
     * was not all read as free, so a scan for used frames may skip it whole.
     *
     * @param pfn a frame number of this memory
     * @return true when the frame's section has descriptor memory
     */
    public boolean isMaterialised(long pfn) {
        return map.isMaterialised(pfn);
    }

    /**
     * The flags word ({@link FrameFlags}).
     *
     * @param pfn a frame number of this memory
     * @return the frame's {@link FrameFlags} bits
     */
    public int flags(long pfn) {
        return map.flags(pfn);
    }

    /**
     * Whether all of {@code flag} are set.
     *
     * @param pfn a frame number of this memory
     * @param flag one or more {@link FrameFlags} bits
     * @return true when every bit of {@code flag} is set
     */
    public boolean test(long pfn, int flag) {
        return map.test(pfn, flag);
    }

    /**
     * The reference count.
     *
     * @param pfn a frame number of this memory
     * @return the frame's reference count, 0 when free
     */
    public int refcount(long pfn) {
        return map.refcount(pfn);
    }

    /**
     * The head of the transparent huge page {@code pfn} belongs to, or {@code pfn} itself; see
     * {@link MemMap#folio}.
     *
     * @param pfn a frame number of this memory
     * @return the head frame, or {@code pfn}
     */
    public long folio(long pfn) {
        return map.folio(pfn);
    }

    /**
     * How many PMD entries map the transparent huge page at {@code head}.
     *
     * @param head the head frame of a transparent huge page
     * @return the entire mapcount
     */
    public int entireMapcount(long head) {
        return map.entireMapcount(head);
    }

    /**
     * folio_mapcount: for the head of a transparent huge page its PMD mappings plus the PTEs mapping
     * any of its pages; for any other frame its {@link #mapcount}.
     *
     * @param pfn a frame number of this memory
     * @return the count, 0 or more
     */
    public int folioMapcount(long pfn) {
        if ((map.flags(pfn) & FrameFlags.LARGE_RMAPPABLE) == 0) {
            return map.mapcount(pfn);
        }
        int n = map.entireMapcount(pfn);
        for (int i = 0; i < 1 << MemMap.LARGE_ORDER; i++) {
            n += map.mapcount(pfn + i);
        }
        return n;
    }

    /**
     * folio_maybe_mapped_shared, exactly: whether some page of the folio at {@code pfn} is mapped
     * more than once (by a PMD entry and PTEs counted together), as a page shared after fork is;
     * for any other frame, whether its mapcount is above 1.
     *
     * @param pfn a frame number of this memory
     * @return whether a page of it has more than one mapping
     */
    public boolean folioMappedShared(long pfn) {
        if ((map.flags(pfn) & FrameFlags.LARGE_RMAPPABLE) == 0) {
            return map.mapcount(pfn) > 1;
        }
        int entire = map.entireMapcount(pfn);
        for (int i = 0; i < 1 << MemMap.LARGE_ORDER; i++) {
            if (entire + map.mapcount(pfn + i) > 1) {
                return true;
            }
        }
        return false;
    }

    /**
     * The number of page-table entries mapping the frame (0 when unmapped).
     *
     * @param pfn a frame number of this memory
     * @return the count, 0 or more
     */
    public int mapcount(long pfn) {
        return map.mapcount(pfn);
    }

    /**
     * For a PMD table page: how many PUD entries point at it beyond the first (pt_share_count).
     *
     * @param pfn the page frame number of the PMD table
     * @return the number of extra sharers, 0 when the table is not shared
     */
    public int ptShareCount(long pfn) {
        return map.ptShareCount(pfn);
    }

    /**
     * An opaque identifier of the owner (file or anon_vma); 0 when none.
     *
     * @param pfn a frame number of this memory
     * @return the owner's identifier, or 0
     */
    public long mapping(long pfn) {
        return map.mapping(pfn);
    }

    /**
     * The page's index in its mapping (page-cache index or linear page index).
     *
     * @param pfn a frame number of this memory
     * @return the index in pages
     */
    public long index(long pfn) {
        return map.index(pfn);
    }

    /**
     * The buddy order of the block this frame heads (0 for a single frame).
     *
     * @param pfn the head frame number of a block
     * @return log2 of the block size in frames, 0 to {@link BuddyAllocator#MAX_ORDER}
     */
    public int order(long pfn) {
        return map.order(pfn);
    }

    /**
     * The node recorded when the frame was allocated.
     *
     * @param pfn the head frame number of an allocated block
     * @return the NUMA node id
     */
    public int node(long pfn) {
        return map.node(pfn);
    }

    /**
     * compound_head: the head of the allocated block that holds {@code pfn} ({@code pfn} itself
     * for a head or single frame), or -1 when the frame is free.
     *
     * @param pfn a frame number of this memory
     * @return the head frame number, or -1
     */
    public long headOf(long pfn) {
        return map.headOf(pfn);
    }

    /**
     * A one-line description for messages and dumps.
     *
     * @param pfn a frame number of this memory
     * @return the PFN, order, node, refcount, mapcount and flags
     */
    public String describe(long pfn) {
        return map.describe(pfn);
    }

    /** The storage, for the accessor the internal package reaches it through. */
    MemMap map() {
        return map;
    }
}
