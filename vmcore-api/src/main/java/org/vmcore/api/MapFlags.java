package org.vmcore.api;

/**
 * The mmap(2) flags vmcore understands, with the values of the Linux x86-64 headers so that
 * traces can be replayed as they are. Exactly one of {@link #MAP_SHARED} and
 * {@link #MAP_PRIVATE} must be given.
 */
public final class MapFlags {
    /** Changes are visible to every process that maps the same object. */
    public static final int MAP_SHARED = 0x01;
    /** Changes are private to this process (copy-on-write). */
    public static final int MAP_PRIVATE = 0x02;
    /** Place the mapping exactly at the address, replacing what was there. */
    public static final int MAP_FIXED = 0x10;
    /** Not backed by a file; contents start as zero. */
    public static final int MAP_ANONYMOUS = 0x20;
    /** Lock the pages in memory (VM_LOCKED): an mlocked mapping. */
    public static final int MAP_LOCKED = 0x2000;
    /** Fault every page in now. */
    public static final int MAP_POPULATE = 0x8000;
    /** mremap(2): the mapping may move to a new address if it cannot grow in place. */
    public static final int MREMAP_MAYMOVE = 0x01;
    /** mremap(2): move the mapping to exactly the new address (with {@link #MREMAP_MAYMOVE}), replacing what was there. */
    public static final int MREMAP_FIXED = 0x02;
    /** Like MAP_FIXED, but fail instead of replacing an existing mapping. */
    public static final int MAP_FIXED_NOREPLACE = 0x100000;

    /** Every flag above. */
    public static final int KNOWN = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_LOCKED
            | MAP_POPULATE | MAP_FIXED_NOREPLACE;

    private MapFlags() {
    }

    /**
     * The flags as the C source would spell them, e.g. {@code MAP_SHARED|MAP_FIXED}.
     *
     * @param flags MAP_* values ORed together
     * @return the flags as the C source would spell them
     */
    public static String describe(int flags) {
        StringBuilder sb = new StringBuilder();
        String[] names = {"MAP_SHARED", "MAP_PRIVATE", "MAP_FIXED", "MAP_ANONYMOUS", "MAP_LOCKED", "MAP_POPULATE",
            "MAP_FIXED_NOREPLACE"};
        int[] bits = {MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_LOCKED, MAP_POPULATE, MAP_FIXED_NOREPLACE};
        for (int i = 0; i < bits.length; i++) {
            if ((flags & bits[i]) != 0) {
                sb.append(sb.isEmpty() ? "" : "|").append(names[i]);
            }
        }
        int unknown = flags & ~KNOWN;
        if (unknown != 0) {
            sb.append(sb.isEmpty() ? "" : "|").append("0x").append(Integer.toHexString(unknown));
        }
        return sb.isEmpty() ? "0" : sb.toString();
    }
}
