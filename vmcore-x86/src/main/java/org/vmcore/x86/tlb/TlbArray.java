package org.vmcore.x86.tlb;

import java.util.Arrays;
import java.util.List;
import org.vmcore.api.PageSize;

/**
 * One set-associative array of a {@link Tlb}: the translations of one page size, tagged with
 * their PCID, replaced round robin per set. A PCID's entries die together when its generation
 * (shared by the TLB's arrays) moves on. Allocates nothing on lookup and insert.
 */
final class TlbArray {
    private static final int MEMO = 256;
    private final int ways;
    private final int setMask;
    final int shift;
    private final long[] tags;
    private final long[] values;
    private final int[] gens;
    private final int[] generation;
    private final int[] victim;
    // Where recent hits were found, by vpn: a lookup checks that slot before scanning the set.
    // A hint is only a guess, checked against the slot's tag, so it never needs invalidating
    // and changes no behaviour: hits, misses and replacement are those of the set scan.
    private final int[] wayHint = new int[MEMO];

    TlbArray(int entries, int ways, int shift, int[] generation) {
        this.ways = ways;
        this.setMask = entries / ways - 1;
        this.shift = shift;
        this.tags = new long[entries];
        this.values = new long[entries];
        this.gens = new int[entries];
        this.generation = generation;
        this.victim = new int[entries / ways];
    }

    private boolean live(int i) {
        return values[i] != 0 && gens[i] == generation[(int) (tags[i] & 0xFFF)];
    }

    static long tag(int pcid, long vpn) {
        return (vpn << 12) | pcid;
    }

    private static int hintIndex(int pcid, long vpn) {
        return (int) (vpn ^ pcid) & (MEMO - 1);
    }

    private int set(int pcid, long vpn) {
        return (int) ((vpn ^ (vpn >>> 17) ^ ((long) pcid * 0x9E37L)) & setMask);
    }

    long lookup(int pcid, long va) {
        long vpn = va >> shift;
        long tag = tag(pcid, vpn);
        int m = hintIndex(pcid, vpn);
        int hint = wayHint[m];
        if (tags[hint] == tag && values[hint] != 0) { // the usual case: no scan of the set
            return gens[hint] == generation[pcid] ? values[hint] : 0;
        }
        int base = set(pcid, vpn) * ways;
        for (int i = base; i < base + ways; i++) {
            if (tags[i] == tag && values[i] != 0) {
                wayHint[m] = i;
                return gens[i] == generation[pcid] ? values[i] : 0;
            }
        }
        return 0;
    }

    /** Fills the translation of va; returns the tag the slot held before (maybe dead), or -1. */
    long insert(int pcid, long va, long value) {
        long vpn = va >> shift;
        long tag = tag(pcid, vpn);
        int s = set(pcid, vpn);
        int base = s * ways;
        // The slot that already holds this tag if any (so a tag is never in a set twice),
        // else the first dead slot, else the round-robin victim.
        int slot = -1;
        for (int i = base; i < base + ways; i++) {
            if (tags[i] == tag) {
                slot = i;
                break;
            }
            if (slot < 0 && !live(i)) {
                slot = i;
            }
        }
        if (slot < 0) {
            slot = base + victim[s];
            victim[s] = (victim[s] + 1) % ways;
        }
        long replaced = values[slot] != 0 ? tags[slot] : -1;
        tags[slot] = tag;
        values[slot] = value;
        gens[slot] = generation[pcid];
        wayHint[hintIndex(pcid, vpn)] = slot;
        return replaced;
    }

    int invalidate(int pcid, long va) {
        long vpn = va >> shift;
        long tag = tag(pcid, vpn);
        int base = set(pcid, vpn) * ways;
        int n = 0;
        for (int i = base; i < base + ways; i++) {
            if (tags[i] == tag && values[i] != 0) {
                n += live(i) ? 1 : 0;
                values[i] = 0;
            }
        }
        return n;
    }

    void clear() {
        Arrays.fill(values, 0);
    }

    void collect(int pcid, PageSize size, List<Tlb.Entry> out) {
        for (int i = 0; i < tags.length; i++) {
            int p = (int) (tags[i] & 0xFFF);
            if (live(i) && (pcid < 0 || p == pcid)) {
                out.add(new Tlb.Entry(p, (tags[i] >> 12) << shift, size, values[i]));
            }
        }
    }
}

