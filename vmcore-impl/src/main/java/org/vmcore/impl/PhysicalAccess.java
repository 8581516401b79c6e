package org.vmcore.impl;

import java.nio.ByteBuffer;
import java.util.EnumSet;
import java.util.Set;

import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Page;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageSize;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.vma.FileMapping;
import org.vmcore.impl.vma.MappingRegistry;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The machine's public view of physical memory: a frame as a {@link Page} (as /proc/kpageflags
 * and kpagecount show it) and reads and writes of physical addresses (/dev/mem). It validates and
 * reads; callers hold the machine lock, since close frees the memory under it.
 */
final class PhysicalAccess {
    private final MachineLock lock;
    private final PhysicalMemory memory;
    private final MappingRegistry registry;

    PhysicalAccess(MachineLock lock, PhysicalMemory memory, MappingRegistry registry) {
        this.lock = lock;
        this.memory = memory;
        this.registry = registry;
    }

    Page page(long pfn) {
        assert lock.isHeldByCurrentThread();
        if (!memory.isValidPfn(pfn)) {
            throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(memory.frameCount()));
        }
        FrameDescriptors d = memory.descriptors();
        long head = d.headOf(pfn); // any frame of a huge page reports it, as /proc/kpagecount does
        if (head < 0) {
            return new Page(pfn, PageSize.SIZE_4K, memory.nodeOf(pfn), 0, 0, EnumSet.of(PageFlag.BUDDY), false, null, 0);
        }
        pfn = head;
        int flags = d.flags(pfn);
        long mapping = d.mapping(pfn);
        boolean anon = (flags & FrameFlags.ANON) != 0;
        HugetlbFile file = !anon && registry.owner(mapping) instanceof FileMapping m ? m.file() : null;
        PageSize size = switch (d.order(pfn)) {
            case 9 -> PageSize.SIZE_2M;
            case 18 -> PageSize.SIZE_1G;
            default -> PageSize.SIZE_4K;
        };
        return new Page(pfn, size, memory.nodeOf(pfn), d.folioMapcount(pfn), d.refcount(pfn), pageFlags(flags), anon, file, d.index(pfn));
    }

    /** The frame-descriptor flag bits in {@link PageFlag} order: PAGE_FLAG_BITS[f.ordinal()] is the bit of f. */
    private static final int[] PAGE_FLAG_BITS = {FrameFlags.LOCKED, FrameFlags.REFERENCED, FrameFlags.UPTODATE, FrameFlags.DIRTY,
        FrameFlags.LRU, FrameFlags.HEAD, FrameFlags.ANON, FrameFlags.HUGETLB, FrameFlags.PGTABLE, FrameFlags.HWPOISON,
        FrameFlags.RESERVED, FrameFlags.ISOLATED, FrameFlags.MLOCKED, FrameFlags.LARGE_RMAPPABLE};

    /** The flags of an allocated frame; ALLOCATED has no PageFlag (BUDDY is its opposite). */
    static Set<PageFlag> pageFlags(int bits) {
        Set<PageFlag> out = EnumSet.noneOf(PageFlag.class);
        for (int i = 0; i < PAGE_FLAG_BITS.length; i++) {
            if ((bits & PAGE_FLAG_BITS[i]) != 0) {
                out.add(PageFlag.values()[i]);
            }
        }
        return out;
    }

    long read(long pa, int width) {
        check(pa, width);
        return memory.contents().read(pa, width);
    }

    void readBytes(long pa, byte[] dst, int offset, int length) {
        assert lock.isHeldByCurrentThread();
        if (dst == null) {
            throw new InvalidArgumentException("dst", null, "must not be null");
        }
        if (offset < 0 || offset > dst.length) {
            throw new InvalidArgumentException("offset", offset, "must be inside a buffer of " + dst.length + " bytes");
        }
        if (length < 0 || length > dst.length - offset) {
            throw new InvalidArgumentException("length", length, "must be non-negative and fit a buffer of " + dst.length
                    + " bytes from offset " + offset);
        }
        checkRange(pa, length);
        memory.contents().readBytes(pa, dst, offset, length);
    }

    void readBytes(long pa, ByteBuffer dst) {
        assert lock.isHeldByCurrentThread();
        if (dst == null) {
            throw new InvalidArgumentException("dst", null, "must not be null");
        }
        if (dst.isReadOnly()) {
            throw new InvalidArgumentException("dst", dst, "must be writable");
        }
        int length = dst.remaining();
        checkRange(pa, length);
        if (dst.hasArray()) {
            memory.contents().readBytes(pa, dst.array(), dst.arrayOffset() + dst.position(), length);
            dst.position(dst.position() + length);
            return;
        }
        byte[] chunk = new byte[Math.min(length, 1 << 16)]; // a direct buffer: through a bounded heap copy
        for (int done = 0; done < length; done += chunk.length) {
            int n = Math.min(chunk.length, length - done);
            memory.contents().readBytes(pa + done, chunk, 0, n);
            dst.put(chunk, 0, n);
        }
    }

    void write(long pa, int width, long value) {
        check(pa, width);
        memory.contents().write(pa, width, value);
    }

    private void check(long pa, int width) {
        assert lock.isHeldByCurrentThread();
        if (width != 1 && width != 2 && width != 4 && width != 8) {
            throw new InvalidArgumentException("width", width, "must be 1, 2, 4 or 8 bytes");
        }
        checkRange(pa, width);
    }

    private void checkRange(long pa, long length) {
        if (pa < 0 || pa > (memory.frameCount() << 12) - length) {
            throw new InvalidArgumentException("pa", pa, "must address " + length + " bytes inside memory of 0x"
                    + Long.toHexString(memory.frameCount() << 12) + " bytes");
        }
    }
}
