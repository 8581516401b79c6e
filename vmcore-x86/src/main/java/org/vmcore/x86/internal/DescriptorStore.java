package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.x86.mem.FrameDescriptors;

/**
 * Where {@link MemMap} keeps its descriptors: 40 bytes per 4 KiB frame (the field offsets below),
 * off-heap, materialised a section of {@link FrameDescriptors#SECTION_FRAMES} frames at a time
 * the first time a frame in the section is written; a section never written reads as zero.
 */
abstract class DescriptorStore {
    /** log2 of the frames per materialised section. */
    public static final int SECTION_SHIFT = 12;
    static final int SECTION_FRAMES = FrameDescriptors.SECTION_FRAMES;
    static final long DESCRIPTOR_BYTES = FrameDescriptors.DESCRIPTOR_BYTES;
    static final long FLAGS = 0;
    static final long REFCOUNT = 4;
    static final long MAPCOUNT = 8;
    static final long PT_SHARE_COUNT = 12;
    static final long MAPPING = 16;
    static final long INDEX = 24;
    static final long ORDER = 32;
    static final long NODE = 34;

    static final VarHandle INT = ValueLayout.JAVA_INT.varHandle();
    private static final VarHandle SECTION = MethodHandles.arrayElementVarHandle(MemorySegment[].class);

    private final OffHeap offHeap;
    private final long frameCount;
    private final MemorySegment[] sections;

    /**
     * Descriptors of {@code frameCount} frames, all reading as free.
     *
     * @param offHeap the arena sections come from
     * @param frameCount the number of frames
     */
    DescriptorStore(OffHeap offHeap, long frameCount) {
        this.offHeap = offHeap;
        this.frameCount = frameCount;
        this.sections = new MemorySegment[(int) ((frameCount + SECTION_FRAMES - 1) >>> SECTION_SHIFT)];
    }

    /**
     * Number of frames described.
     *
     * @return the number of 4 KiB frames of the memory
     */
    public long frameCount() {
        return frameCount;
    }

    /**
     * Number of sections whose descriptors have been materialised.
     *
     * @return the number of sections of {@link FrameDescriptors#SECTION_FRAMES} frames that have descriptor memory
     */
    public int materialisedSections() {
        int n = 0;
        for (int i = 0; i < sections.length; i++) {
            if (SECTION.getAcquire(sections, i) != null) {
                n++;
            }
        }
        return n;
    }

    /**
     * Whether the section holding {@code pfn} has been materialised; the frames of a section that
     * was not all read as free, so a scan for used frames may skip it whole.
     *
     * @param pfn a frame number of this memory
     * @return true when the frame's section has descriptor memory
     */
    public boolean isMaterialised(long pfn) {
        return section(pfn) != null;
    }


    final int readInt(long pfn, long field) {
        MemorySegment s = section(pfn);
        return s == null ? 0 : (int) INT.getAcquire(s, offset(pfn) + field);
    }

    static long offset(long pfn) {
        return (pfn & (SECTION_FRAMES - 1)) * DESCRIPTOR_BYTES;
    }

    final MemorySegment section(long pfn) {
        if (pfn < 0 || pfn >= frameCount) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(frameCount));
        }
        return (MemorySegment) SECTION.getAcquire(sections, (int) (pfn >>> SECTION_SHIFT));
    }

    final MemorySegment materialise(long pfn) {
        MemorySegment s = section(pfn);
        return s != null ? s : materialiseSlow((int) (pfn >>> SECTION_SHIFT));
    }

    private synchronized MemorySegment materialiseSlow(int index) {
        MemorySegment s = (MemorySegment) SECTION.getAcquire(sections, index);
        if (s == null) {
            s = offHeap.allocate(SECTION_FRAMES * DESCRIPTOR_BYTES);
            SECTION.setRelease(sections, index, s);
        }
        return s;
    }
}
