package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import org.vmcore.x86.mem.BuddyAllocator;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;

/**
 * The frame descriptors: vmcore's {@code struct page} array, off-heap (the kernel's
 * {@code mem_map}), with the atomic updates the generic mm makes; {@link FrameDescriptors} is
 * its read-only view.
 *
 * <p>Each 4 KiB frame has a 40-byte descriptor: flags, refcount, mapcount, page-table share
 * count, mapping, index, order and node. Descriptors are materialised a section (4096 frames)
 * at a time, the first time a frame in the section is written; a frame whose section was never
 * written reads as all zero, which is the descriptor of a free, never-used frame. This is what
 * keeps a 1 TiB machine small on the host.
 *
 * <p>Unlike the kernel's {@code _mapcount}, which starts at -1, {@link #mapcount} starts at 0
 * and counts the page-table entries that map the frame.
 *
 * <p>Reads are plain; {@code inc}/{@code dec}/{@code cas} operations are atomic, so refcounts
 * and mapcounts can be changed without a lock, as the kernel does.
 */
public final class MemMap extends DescriptorStore {
    /**
     * Descriptors of {@code frameCount} frames, all reading as free.
     *
     * @param offHeap the arena sections come from
     * @param frameCount the number of frames
     */
    public MemMap(OffHeap offHeap, long frameCount) {
        super(offHeap, frameCount);
    }

    // ---- reads: a never-written frame reads as zero ----

    /**
     * The flags word ({@link FrameFlags}).
     *
     * @param pfn a frame number of this memory
     * @return the frame's {@link FrameFlags} bits
     */
    public int flags(long pfn) {
        return readInt(pfn, FLAGS);
    }

    /**
     * Whether all of {@code flag} are set.
     *
     * @param pfn a frame number of this memory
     * @param flag one or more {@link FrameFlags} bits
     * @return true when every bit of {@code flag} is set
     */
    public boolean test(long pfn, int flag) {
        return (flags(pfn) & flag) == flag;
    }

    /**
     * The reference count.
     *
     * @param pfn a frame number of this memory
     * @return the frame's reference count, 0 when free
     */
    public int refcount(long pfn) {
        return readInt(folio(pfn), REFCOUNT);
    }

    /**
     * page_folio: the head of the transparent huge page {@code pfn} is a tail frame of, or
     * {@code pfn} itself. Reference counts are the folio's: every refcount method goes through
     * this, as get_page on a tail page takes a reference on its folio.
     *
     * @param pfn a frame number of this memory
     * @return the head frame of its transparent huge page, or {@code pfn}
     */
    public long folio(long pfn) {
        if ((flags(pfn) & FrameFlags.ALLOCATED) != 0) {
            return pfn; // a head or a single frame: the common case costs one read
        }
        long head = pfn & -(1L << LARGE_ORDER);
        return head != pfn && (flags(head) & (FrameFlags.LARGE_RMAPPABLE | FrameFlags.ALLOCATED))
                == (FrameFlags.LARGE_RMAPPABLE | FrameFlags.ALLOCATED) && order(head) == LARGE_ORDER ? head : pfn;
    }

    /**
     * folio_entire_mapcount: how many PMD entries map the transparent huge page headed by
     * {@code head} in whole (kept in the first tail's descriptor, as the kernel keeps it).
     *
     * @param head the head frame of a transparent huge page
     * @return the number of PMD mappings
     */
    public int entireMapcount(long head) {
        return readInt(head + 1, PT_SHARE_COUNT);
    }

    /**
     * folio_ref_freeze: sets the refcount of {@code head} from {@code expected} to 0, so that no
     * speculative reference can be taken ({@link #getUnlessZero} fails) while the folio is split.
     *
     * @param head the head frame
     * @param expected the references the caller accounts for
     * @return whether the count was {@code expected} and is 0 now
     */
    public boolean freezeRefcount(long head, int expected) {
        return INT.compareAndSet(materialise(head), offset(head) + REFCOUNT, expected, 0);
    }

    /**
     * Adds {@code delta} to the entire mapcount of the transparent huge page at {@code head}.
     *
     * @param head the head frame of a transparent huge page
     * @param delta the change
     * @return the count after the change
     */
    public int addEntireMapcount(long head, int delta) {
        return (int) INT.getAndAdd(materialise(head + 1), offset(head + 1) + PT_SHARE_COUNT, delta) + delta;
    }

    /**
     * split_page for a transparent huge page: the order-{@value #LARGE_ORDER} block at
     * {@code head} becomes {@code 2^order} single allocated frames, each with refcount 1 and
     * zero mapcount, mapping and index (the caller gives them theirs); each can then be freed on
     * its own. Each tail gets {@code tailFlags} in the same store that makes it a frame of its own,
     * as __split_folio_to_order copies PG_locked and the like from the head: a tail is never seen
     * unlocked between leaving the locked folio and being locked itself.
     *
     * @param head the head frame of a transparent huge page
     * @param tailFlags flags each tail starts with besides {@link FrameFlags#ALLOCATED}
     */
    public void splitLarge(long head, int tailFlags) {
        int node = node(head);
        for (long i = 1; i < 1L << LARGE_ORDER; i++) {
            initFrame(head + i, 0, node, FrameFlags.ALLOCATED | tailFlags);
        }
        MemorySegment s = materialise(head);
        s.set(ValueLayout.JAVA_SHORT, offset(head) + ORDER, (short) 0);
        clearFlags(head, FrameFlags.HEAD | FrameFlags.LARGE_RMAPPABLE | FrameFlags.PARTIALLY_MAPPED);
    }

    /** The order of a transparent huge page: a PMD's worth of 4 KiB frames. */
    public static final int LARGE_ORDER = 9;

    /**
     * The number of page-table entries mapping the frame (0 when unmapped).
     *
     * @param pfn a frame number of this memory
     * @return the count, 0 or more
     */
    public int mapcount(long pfn) {
        return readInt(pfn, MAPCOUNT);
    }

    /**
     * For a PMD table page: how many PUD entries point at it beyond the first (pt_share_count).
     *
     * @param pfn the page frame number of the PMD table
     * @return the number of extra sharers, 0 when the table is not shared
     */
    public int ptShareCount(long pfn) {
        return readInt(pfn, PT_SHARE_COUNT);
    }

    /**
     * An opaque identifier of the owner (file or anon_vma); 0 when none.
     *
     * @param pfn a frame number of this memory
     * @return the owner's identifier, or 0
     */
    public long mapping(long pfn) {
        MemorySegment s = section(pfn);
        return s == null ? 0 : s.get(ValueLayout.JAVA_LONG, offset(pfn) + MAPPING);
    }

    /**
     * The page's index in its mapping (page-cache index or linear page index).
     *
     * @param pfn a frame number of this memory
     * @return the index in pages
     */
    public long index(long pfn) {
        MemorySegment s = section(pfn);
        return s == null ? 0 : s.get(ValueLayout.JAVA_LONG, offset(pfn) + INDEX);
    }

    /**
     * The buddy order of the block this frame heads (0 for a single frame).
     *
     * @param pfn the head frame number of a block
     * @return log2 of the block size in frames, 0 to {@link BuddyAllocator#MAX_ORDER}
     */
    public int order(long pfn) {
        MemorySegment s = section(pfn);
        return s == null ? 0 : s.get(ValueLayout.JAVA_SHORT, offset(pfn) + ORDER);
    }

    /**
     * The node recorded when the frame was allocated.
     *
     * @param pfn the head frame number of an allocated block
     * @return the NUMA node id
     */
    public int node(long pfn) {
        MemorySegment s = section(pfn);
        return s == null ? 0 : s.get(ValueLayout.JAVA_SHORT, offset(pfn) + NODE);
    }

    // ---- writes ----

    /**
     * Sets all bits of {@code flag}; returns the flags before.
     *
     * @param pfn a frame number of this memory
     * @param flag the {@link FrameFlags} bits to set
     * @return the flags word before the change
     */
    public int setFlags(long pfn, int flag) {
        return (int) INT.getAndBitwiseOr(materialise(pfn), offset(pfn) + FLAGS, flag);
    }

    /**
     * Clears all bits of {@code flag}; returns the flags before.
     *
     * @param pfn a frame number of this memory
     * @param flag the {@link FrameFlags} bits to clear
     * @return the flags word before the change
     */
    public int clearFlags(long pfn, int flag) {
        return (int) INT.getAndBitwiseAnd(materialise(pfn), offset(pfn) + FLAGS, ~flag);
    }

    /**
     * Sets {@code flag} only if it was clear (trylock); true when this call set it.
     *
     * @param pfn a frame number of this memory
     * @param flag the {@link FrameFlags} bits to set
     * @return true when none of the bits was set before and this call set them
     */
    public boolean trySetFlag(long pfn, int flag) {
        return (setFlags(pfn, flag) & flag) == 0;
    }

    /**
     * Adds {@code delta} to the refcount; returns the new value.
     *
     * @param pfn a frame number of this memory
     * @param delta the change, negative to drop references
     * @return the reference count after the change
     */
    public int addRefcount(long pfn, int delta) {
        long head = folio(pfn);
        return (int) INT.getAndAdd(materialise(head), offset(head) + REFCOUNT, delta) + delta;
    }

    /**
     * get_page_unless_zero: adds one reference unless the count is 0 (the page is free or being
     * freed); true when it added one.
     *
     * @param pfn a frame number of this memory
     * @return whether a reference was taken
     */
    public boolean getUnlessZero(long pfn) {
        long head = folio(pfn);
        MemorySegment s = materialise(head);
        long at = offset(head) + REFCOUNT;
        while (true) {
            int count = (int) INT.getVolatile(s, at);
            if (count <= 0) {
                return false;
            }
            if (INT.compareAndSet(s, at, count, count + 1)) {
                return true;
            }
        }
    }

    /**
     * Adds {@code delta} to the mapcount; returns the new value.
     *
     * @param pfn a frame number of this memory
     * @param delta the change, negative when entries are removed
     * @return the mapcount after the change
     */
    public int addMapcount(long pfn, int delta) {
        return (int) INT.getAndAdd(materialise(pfn), offset(pfn) + MAPCOUNT, delta) + delta;
    }

    /**
     * Adds {@code delta} to the mapcounts of {@code count} consecutive frames from {@code first}
     * (a split of a huge PMD maps each page of the folio once more), each atomically.
     *
     * @param first the first frame
     * @param count how many frames
     * @param delta the change for each
     */
    public void addMapcounts(long first, int count, int delta) {
        if (count <= 0) {
            return;
        }
        if ((first >>> SECTION_SHIFT) != ((first + count - 1) >>> SECTION_SHIFT)) {
            for (int i = 0; i < count; i++) {
                addMapcount(first + i, delta);
            }
            return;
        }
        MemorySegment s = materialise(first); // one section: its segment is looked up once
        long at = offset(first) + MAPCOUNT;
        for (int i = 0; i < count; i++, at += DESCRIPTOR_BYTES) {
            INT.getAndAdd(s, at, delta);
        }
    }

    /**
     * Sets the mapcounts of {@code count} consecutive frames from {@code first} to {@code value}
     * with plain stores: only for frames no other thread can map or unmap meanwhile (the pages of a
     * huge page that one PMD entry, whose lock the caller holds, maps alone).
     *
     * @param first the first frame
     * @param count how many frames
     * @param value the mapcount of each
     */
    public void setMapcountsExclusive(long first, int count, int value) {
        for (int i = 0; i < count; i++) {
            long pfn = first + i;
            materialise(pfn).set(ValueLayout.JAVA_INT, offset(pfn) + MAPCOUNT, value);
        }
    }

    /**
     * Adds {@code delta} to the page-table share count; returns the new value.
     *
     * @param pfn the page frame number of the PMD table
     * @param delta the change, negative when a sharer unshares
     * @return the share count after the change
     */
    public int addPtShareCount(long pfn, int delta) {
        return (int) INT.getAndAdd(materialise(pfn), offset(pfn) + PT_SHARE_COUNT, delta) + delta;
    }

    /**
     * Sets the refcount.
     *
     * @param pfn a frame number of this memory
     * @param value the new reference count, 0 or more
     */
    public void setRefcount(long pfn, int value) {
        long head = folio(pfn);
        INT.setVolatile(materialise(head), offset(head) + REFCOUNT, value);
    }

    /**
     * Sets the mapcount.
     *
     * @param pfn a frame number of this memory
     * @param value the new mapcount, 0 or more
     */
    public void setMapcount(long pfn, int value) {
        INT.setVolatile(materialise(pfn), offset(pfn) + MAPCOUNT, value);
    }

    /**
     * Sets mapping and index together, as the kernel does when it adds a page to a mapping.
     *
     * @param pfn a frame number of this memory
     * @param mapping the owner's identifier (file or anon_vma), 0 for none
     * @param index the page's index in the owner, in pages
     */
    public void setMapping(long pfn, long mapping, long index) {
        MemorySegment s = materialise(pfn);
        s.set(ValueLayout.JAVA_LONG, offset(pfn) + MAPPING, mapping);
        s.set(ValueLayout.JAVA_LONG, offset(pfn) + INDEX, index);
    }

    /**
     * Zeroes the descriptor, then records order, node and flags of a newly allocated block.
     *
     * @param pfn the head frame of the block
     * @param order the block's order
     * @param node the node it was allocated on
     */
    public void initAllocated(long pfn, int order, int node) {
        initFrame(pfn, order, node, FrameFlags.ALLOCATED | (order > 0 ? FrameFlags.HEAD : 0));
    }

    /** A zeroed descriptor with refcount 1, its flags written last, in one volatile store. */
    private void initFrame(long pfn, int order, int node, int flags) {
        MemorySegment s = materialise(pfn);
        long off = offset(pfn);
        s.asSlice(off, DESCRIPTOR_BYTES).fill((byte) 0);
        s.set(ValueLayout.JAVA_SHORT, off + ORDER, (short) order);
        s.set(ValueLayout.JAVA_SHORT, off + NODE, (short) node);
        s.set(ValueLayout.JAVA_INT, off + REFCOUNT, 1);
        INT.setVolatile(s, off + FLAGS, flags);
    }

    /**
     * Zeroes the descriptor of a freed block head.
     *
     * @param pfn the head frame of the block
     */
    public void clear(long pfn) {
        MemorySegment s = section(pfn);
        if (s != null) {
            s.asSlice(offset(pfn), DESCRIPTOR_BYTES).fill((byte) 0);
        }
    }

    /**
     * compound_head: the head of the allocated block that holds {@code pfn} ({@code pfn} itself
     * for a head or single frame), or -1 when the frame is free. Blocks are naturally aligned and
     * disjoint, so the first allocated frame at a rising alignment below {@code pfn} decides.
     *
     * @param pfn a frame number of this memory
     * @return the head frame number, or -1
     */
    public long headOf(long pfn) {
        for (int order = 0; order <= BuddyAllocator.MAX_ORDER; order++) {
            long candidate = pfn & -(1L << order);
            if ((flags(candidate) & FrameFlags.ALLOCATED) != 0) {
                return pfn - candidate < 1L << order(candidate) ? candidate : -1;
            }
        }
        return -1;
    }

    /**
     * A one-line description for messages and dumps.
     *
     * @param pfn a frame number of this memory
     * @return the PFN, order, node, refcount, mapcount and flags
     */
    public String describe(long pfn) {
        return "pfn 0x" + Long.toHexString(pfn) + " order=" + order(pfn) + " node=" + node(pfn)
                + " refcount=" + refcount(pfn) + " mapcount=" + mapcount(pfn)
                + " flags=" + FrameFlags.describe(flags(pfn));
    }
}
