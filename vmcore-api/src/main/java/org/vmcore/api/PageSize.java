package org.vmcore.api;

/**
 * The three page sizes x86-64 paging can map with one leaf entry.
 *
 * <p>A 4 KiB page is a PTE leaf, a 2 MiB page a PMD leaf with PS set, a 1 GiB page a PUD
 * leaf with PS set.
 */
public enum PageSize {
    /** 4 KiB, mapped by a PTE. */
    SIZE_4K(12),
    /** 2 MiB, mapped by a PMD entry with PS set (hugetlb default size). */
    SIZE_2M(21),
    /** 1 GiB, mapped by a PUD entry with PS set (gigantic hugetlb pages). */
    SIZE_1G(30);

    private final int shift;

    PageSize(int shift) {
        this.shift = shift;
    }

    /**
     * log2 of the size in bytes: 12, 21 or 30.
     *
     * @return log2 of the size in bytes
     */
    public int shift() {
        return shift;
    }

    /**
     * The size in bytes.
     *
     * @return the size in bytes
     */
    public long bytes() {
        return 1L << shift;
    }

    /**
     * The buddy order of a page of this size, in 4 KiB frames: 0, 9 or 18.
     *
     * @return the buddy order of a page of this size, in 4 KiB frames
     */
    public int order() {
        return shift - 12;
    }

    /**
     * Number of 4 KiB frames in one page of this size.
     *
     * @return number of 4 KiB frames in one page of this size
     */
    public long frames() {
        return 1L << order();
    }

    /**
     * Whether {@code value} is a multiple of this size.
     *
     * @param value the value to store
     * @return whether {@code value} is a multiple of this size
     */
    public boolean isAligned(long value) {
        return (value & (bytes() - 1)) == 0;
    }

    /**
     * {@code value} rounded down to a multiple of this size.
     *
     * @param value the value to store
     * @return {@code value} rounded down to a multiple of this size
     */
    public long alignDown(long value) {
        return value & -bytes();
    }

    /**
     * A short human name: "4K", "2M" or "1G".
     *
     * @return a short human name
     */
    public String label() {
        return switch (this) {
            case SIZE_4K -> "4K";
            case SIZE_2M -> "2M";
            case SIZE_1G -> "1G";
        };
    }

    /**
     * The page size of exactly {@code bytes} bytes.
     *
     * @param bytes the size in bytes
     * @return the page size of exactly {@code bytes} bytes
     * @throws InvalidArgumentException if {@code bytes} is not 4 KiB, 2 MiB or 1 GiB
     */
    public static PageSize ofBytes(long bytes) {
        for (PageSize size : values()) {
            if (size.bytes() == bytes) {
                return size;
            }
        }
        throw new InvalidArgumentException("pageSize", bytes, "must be 4096, 2097152 or 1073741824 bytes");
    }
}
