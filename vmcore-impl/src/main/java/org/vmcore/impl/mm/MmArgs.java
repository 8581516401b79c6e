package org.vmcore.impl.mm;

import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.Protection;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;

/**
 * The argument checks of mmap, munmap, mprotect and the TLB flush calls, as do_mmap,
 * __do_munmap and do_mprotect_pkey make them before touching anything: known flags, alignment,
 * lengths rounded up to whole pages, and ranges that end at or below TASK_SIZE_MAX (with the errno
 * the kernel returns named in the message). It touches nothing but the paging mode.
 */
final class MmArgs {
    private final PagingMode mode;

    MmArgs(PagingMode mode) {
        this.mode = mode;
    }

    static void checkMmapFlags(int flags, boolean anonymous) {
        if ((flags & ~MapFlags.KNOWN) != 0) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), "must use only MAP_SHARED, MAP_PRIVATE,"
                    + " MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_ANONYMOUS, MAP_LOCKED and MAP_POPULATE");
        }
        boolean shared = (flags & MapFlags.MAP_SHARED) != 0;
        boolean priv = (flags & MapFlags.MAP_PRIVATE) != 0;
        if (shared == priv) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), "must contain exactly one of MAP_SHARED and MAP_PRIVATE");
        }
        if (anonymous != ((flags & MapFlags.MAP_ANONYMOUS) != 0)) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), anonymous
                    ? "must contain MAP_ANONYMOUS for an anonymous mapping" : "must not contain MAP_ANONYMOUS for a file mapping");
        }
    }

    static void checkProtection(Protection prot) {
        if (prot == null) {
            throw new InvalidArgumentException("prot", null, "must not be null");
        }
    }

    long checkLength(long length, PageSize size) {
        long limit = mode.taskSizeMax();
        if (length <= 0 || length > limit) {
            throw new InvalidArgumentException("length", length, "must be positive and at most 0x" + Long.toHexString(limit));
        }
        if (size != PageSize.SIZE_4K && !size.isAligned(length)) {
            throw new InvalidArgumentException("length", length, "must be a multiple of the file's page size " + size.label());
        }
        return (length + 0xFFF) & ~0xFFFL; // the kernel rounds lengths up to whole pages
    }

    void checkAddress(long address, String name) {
        if ((address & 0xFFF) != 0) {
            throw new InvalidArgumentException(name, address, "must be 4K aligned");
        }
        if (address < 0 || address >= mode.taskSizeMax()) {
            throw new InvalidArgumentException(name, address, "must be a user-space address below TASK_SIZE_MAX 0x"
                    + Long.toHexString(mode.taskSizeMax()));
        }
    }

    /** The range must end at or below TASK_SIZE_MAX; {@code errno} is what the kernel's call returns. */
    void checkRangeInUserSpace(long address, long len, String errno) {
        if (address > mode.taskSizeMax() - len) {
            throw new InvalidArgumentException("length", len, "must keep 0x" + Long.toHexString(address)
                    + " + length at or below TASK_SIZE_MAX 0x" + Long.toHexString(mode.taskSizeMax()) + " (" + errno + ")");
        }
    }

    /** The offset and length of a hugetlbfs mmap: aligned to the file's page size and inside the file; returns the length. */
    long checkFileRange(HugetlbFileImpl f, long offset, long length) {
        PageSize size = f.pageSize();
        if (offset < 0 || !size.isAligned(offset)) {
            throw new InvalidArgumentException("offset", offset, "must be a non-negative multiple of " + size.label());
        }
        long len = checkLength(length, size);
        if (offset > f.size() - len) {
            throw new InvalidArgumentException("length", length, "must keep offset 0x" + Long.toHexString(offset)
                    + " + length inside the file of " + f.size() + " bytes");
        }
        return len;
    }

    /** A flush_tlb_mm_range asked for by the caller: a known stride, a user range below TASK_SIZE_MAX. */
    void checkFlushRange(long start, long end, int strideShift) {
        if (strideShift != 12 && strideShift != 21 && strideShift != 30) {
            throw new InvalidArgumentException("strideShift", strideShift, "must be 12, 21 or 30");
        }
        checkAddress(start, "start");
        if (end <= start || end > mode.taskSizeMax()) {
            throw new InvalidArgumentException("end", end, "must be above start and at most TASK_SIZE_MAX 0x"
                    + Long.toHexString(mode.taskSizeMax()));
        }
    }
}
