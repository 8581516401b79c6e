package org.vmcore.x86.internal;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;
import org.vmcore.x86.tlb.Tlb;

/**
 * The L1 DTLB of a {@link Tlb}: a small direct-mapped cache of 4 KiB translations in front of
 * the 4 KiB array and inclusive of it, as a core's first-level DTLB sits in front of its STLB.
 * It also holds the host page of each entry's frame once known, so a hit reaches the bytes
 * without a frame lookup (a frame's page never changes once it exists, {@link DirectMap}).
 *
 * <p>The TLB fills and empties it; the CPU's access path reads it directly ({@link #slot},
 * {@link #value}, {@link #page}) and remembers pages ({@link #rememberPage}). Not thread-safe,
 * like the TLB. Allocates nothing.
 */
public final class L1Dtlb {
    private static final int ENTRIES = 64;
    // A tag is (vpn << 12) | pcid, as in the TLB arrays; -1 is an empty entry.
    private final long[] tags = new long[ENTRIES];
    private final long[] values = new long[ENTRIES];
    private final MemorySegment[] pages = new MemorySegment[ENTRIES];
    private int last = -1;

    /** An empty L1. */
    public L1Dtlb() {
        Arrays.fill(tags, -1);
    }

    /**
     * The slot a tag maps to.
     *
     * @param tag (vpn &lt;&lt; 12) | pcid
     * @return the slot, 0 to 63
     */
    public static int index(long tag) {
        return (int) ((tag >>> 12) ^ tag) & (ENTRIES - 1);
    }

    /**
     * The slot holding the 4 KiB translation of va under pcid, or -1: the CPU's fast path, which
     * then reads {@link #value} and {@link #page}. Changes nothing, not even {@link #lastPage}.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the slot index, 0 to 63, or -1 on a miss
     */
    public int slot(int pcid, long va) {
        long tag = ((va >> 12) << 12) | pcid;
        int m = index(tag);
        return tags[m] == tag ? m : -1;
    }

    /**
     * The lookup of the TLB: the translation of a tag, which becomes the last hit, or 0 on a miss.
     *
     * @param tag (vpn &lt;&lt; 12) | pcid
     * @return the translation word, or 0
     */
    public long lookup(long tag) {
        int m = index(tag);
        if (tags[m] == tag) {
            last = m;
            return values[m];
        }
        last = -1;
        return 0;
    }

    /**
     * The translation in slot {@code slot} (from {@link #slot}).
     *
     * @param slot a slot index, 0 to 63
     * @return the leaf-like translation word
     */
    public long value(int slot) {
        return values[slot];
    }

    /**
     * The remembered host page of slot {@code slot}, or null (see {@link #rememberPage}).
     *
     * @param slot a slot index, 0 to 63
     * @return the frame's 4096-byte host segment, or null
     */
    public MemorySegment page(int slot) {
        return pages[slot];
    }

    /**
     * The host page of the frame that the translation the TLB last hit or filled maps; null when
     * that translation is not a 4 KiB one in the L1 or no page was remembered for it.
     *
     * @return the frame's 4096-byte host segment, or null
     */
    public MemorySegment lastPage() {
        return last >= 0 ? pages[last] : null;
    }

    /**
     * Remembers {@code page}, the host page of the frame that the 4 KiB translation the TLB last
     * hit or filled maps, so later hits reach the bytes directly. Ignored for larger translations.
     *
     * @param page the 4096-byte host segment of the frame the translation maps
     */
    public void rememberPage(MemorySegment page) {
        if (last >= 0) {
            pages[last] = page;
        }
    }

    /**
     * Fills the entry of a tag with a 4 KiB translation, which becomes the last hit; its page is
     * not known yet.
     *
     * @param tag (vpn &lt;&lt; 12) | pcid
     * @param value the translation word
     */
    public void fill(long tag, long value) {
        int m = index(tag);
        tags[m] = tag;
        values[m] = value;
        pages[m] = null;
        last = m;
    }

    /** Forgets the last hit (a lookup or fill that did not go through the L1). */
    public void forgetLast() {
        last = -1;
    }

    /**
     * Drops a tag, if present: inclusion, when it leaves the 4 KiB array.
     *
     * @param tag (vpn &lt;&lt; 12) | pcid, or -1 for none
     */
    public void drop(long tag) {
        int m = index(tag);
        if (tags[m] == tag) {
            tags[m] = -1;
            pages[m] = null;
        }
    }

    /** Empties the L1: any flush does, which may drop more than it must, as hardware may. */
    public void clear() {
        Arrays.fill(tags, -1);
        Arrays.fill(pages, null);
        last = -1;
    }
}
