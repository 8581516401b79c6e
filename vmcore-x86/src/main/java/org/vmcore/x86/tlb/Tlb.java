package org.vmcore.x86.tlb;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbConfig;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The TLB of one CPU: PCID-tagged translations in one set-associative array per page size, and
 * paging-structure caches (PML4E, PDPTE, PDE) that let a walk start below the root.
 *
 * <p>A translation is stored as a leaf-like word: the page's head PFN in bits 12..51 and the
 * effective permission bits of the whole walk (RW and USER are the AND over all levels, NX the
 * OR), plus the leaf's DIRTY bit as it was when cached. A paging-structure entry holds the table
 * PFN it points to and the effective bits of the levels above and including it.
 *
 * <p>Not thread-safe: the owning CPU and the flushes sent to it take turns (see the CPU's access
 * protocol). Lookups and inserts allocate nothing. Replacement is round robin per set.
 */
public final class Tlb {
    /** Paging-structure cache of PML4 entries (keyed by va bits 39..), PDPT entries (30..), PD entries (21..). */
    public static final int PML4E = 0;
    /** See {@link #PML4E}. */
    public static final int PDPTE = 1;
    /** See {@link #PML4E}. */
    public static final int PDE = 2;
    private static final int[] PSC_SHIFT = {39, 30, 21};
    private static final Level[] PSC_NEXT = {Level.PUD, Level.PMD, Level.PTE};

    private final TlbConfig config;
    private final SetAssoc[] arrays;
    private final FullAssoc[] caches;
    // A PCID flush bumps its generation: entries cached under an older generation are dead, so
    // flushing a whole address space costs O(1) instead of a scan of every array.
    private final int[] generation = new int[4096];
    private int lastHitShift;

    public Tlb(TlbConfig config) {
        this.config = config;
        this.arrays = new SetAssoc[] {
            new SetAssoc(config.entries4k(), config.ways4k(), 12, generation),
            new SetAssoc(config.entries2m(), config.ways2m(), 21, generation),
            new SetAssoc(config.entries1g(), config.ways1g(), 30, generation)};
        this.caches = new FullAssoc[] {
            new FullAssoc(config.pml4eCache()), new FullAssoc(config.pdpteCache()), new FullAssoc(config.pdeCache())};
    }

    public TlbConfig config() {
        return config;
    }

    /**
     * The cached translation of {@code va} under {@code pcid} at any page size, or 0 on a miss;
     * after a hit {@link #lastHitShift()} gives the page size's shift.
     */
    public long lookup(int pcid, long va) {
        for (SetAssoc a : arrays) {
            long v = a.lookup(pcid, va);
            if (v != 0) {
                lastHitShift = a.shift;
                return v;
            }
        }
        return 0;
    }

    /** log2 of the page size of the last {@link #lookup} hit: 12, 21 or 30. */
    public int lastHitShift() {
        return lastHitShift;
    }

    /** The page size of the translation {@link #lookup} would return for va, or null on a miss. */
    public PageSize lookupSize(int pcid, long va) {
        for (int i = 0; i < arrays.length; i++) {
            if (arrays[i].lookup(pcid, va) != 0) {
                return PageSize.values()[i];
            }
        }
        return null;
    }

    /** Caches {@code value} (non-zero) for the page of {@code size} containing va. */
    public void insert(int pcid, long va, PageSize size, long value) {
        arrays[size.ordinal()].insert(pcid, va, value);
    }

    /** The deepest paging-structure cache hit for va: {@link #PDE}, {@link #PDPTE}, {@link #PML4E}, or -1. */
    public int pscDeepest(int pcid, long va) {
        for (int level = PDE; level >= PML4E; level--) {
            if (caches[level].lookup(pcid, va >> PSC_SHIFT[level]) != 0) {
                return level;
            }
        }
        return -1;
    }

    /** The cached entry of paging-structure cache {@code level} for va, or 0. */
    public long pscLookup(int level, int pcid, long va) {
        return caches[level].lookup(pcid, va >> PSC_SHIFT[level]);
    }

    /** Caches a paging-structure entry: {@code value} holds the table PFN and the effective upper bits. */
    public void pscInsert(int level, int pcid, long va, long value) {
        caches[level].insert(pcid, va >> PSC_SHIFT[level], value);
    }

    /** The level whose table a paging-structure entry of {@code level} points to. */
    public static Level pscTableLevel(int level) {
        return PSC_NEXT[level];
    }

    /** Packs a table PFN and effective RW/USER/NX bits into a paging-structure cache value. */
    public static long pscValue(long tablePfn, long effectiveBits) {
        return (tablePfn << 12) | (effectiveBits & (Pte.RW | Pte.USER | Pte.NX)) | Pte.PRESENT;
    }

    /**
     * INVLPG: drops the translations of the page containing va at every size under
     * {@code pcid}, and every paging-structure cache entry of {@code pcid}.
     *
     * @return translations dropped
     */
    public int invalidatePage(int pcid, long va) {
        int n = 0;
        for (SetAssoc a : arrays) {
            n += a.invalidate(pcid, va);
        }
        for (FullAssoc c : caches) {
            c.invalidatePcid(pcid);
        }
        return n;
    }

    /**
     * INVLPG for each page of {@code [start, end)} stepping by 2^strideShift: the same as
     * {@link #invalidatePage} per step, with the paging-structure caches dropped once.
     *
     * @return translations dropped
     */
    public int invalidateRange(int pcid, long start, long end, int strideShift) {
        int n = 0;
        for (long va = start; Long.compareUnsigned(va, end) < 0; va += 1L << strideShift) {
            for (SetAssoc a : arrays) {
                n += a.invalidate(pcid, va);
            }
        }
        for (FullAssoc c : caches) {
            c.invalidatePcid(pcid);
        }
        return n;
    }

    /** Drops everything cached under {@code pcid} (INVPCID single-context). */
    public void invalidatePcid(int pcid) {
        generation[pcid & 0xFFF]++;
        for (FullAssoc c : caches) {
            c.invalidatePcid(pcid);
        }
    }

    /** Drops everything (INVPCID all-context). */
    public void invalidateAll() {
        for (SetAssoc a : arrays) {
            a.clear();
        }
        for (FullAssoc c : caches) {
            c.clear();
        }
    }

    /** Translations cached under {@code pcid}, or under every PCID when {@code pcid} is -1. */
    public List<Entry> entries(int pcid) {
        List<Entry> out = new ArrayList<>();
        for (int i = 0; i < arrays.length; i++) {
            arrays[i].collect(pcid, PageSize.values()[i], out);
        }
        return out;
    }

    /** Paging-structure cache entries of {@code level} under {@code pcid} (or every PCID for -1). */
    public List<Entry> pscEntries(int level, int pcid) {
        List<Entry> out = new ArrayList<>();
        caches[level].collect(pcid, PSC_SHIFT[level], out);
        return out;
    }

    /** One cached translation or paging-structure entry, for inspection. */
    public record Entry(int pcid, long va, PageSize size, long value) {
        /** The PFN the entry holds (page head, or table). */
        public long pfn() {
            return (value & Pte.PFN_MASK) >>> 12;
        }
    }

    /** One set-associative array of translations for one page size. */
    private static final class SetAssoc {
        private final int ways;
        private final int setMask;
        private final int shift;
        private final long[] tags;
        private final long[] values;
        private final int[] gens;
        private final int[] generation;
        private final int[] victim;

        SetAssoc(int entries, int ways, int shift, int[] generation) {
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

        private static long tag(int pcid, long vpn) {
            return (vpn << 12) | pcid;
        }

        private int set(int pcid, long vpn) {
            return (int) ((vpn ^ (vpn >>> 17) ^ ((long) pcid * 0x9E37L)) & setMask);
        }

        long lookup(int pcid, long va) {
            long vpn = va >> shift;
            long tag = tag(pcid, vpn);
            int base = set(pcid, vpn) * ways;
            for (int i = base; i < base + ways; i++) {
                if (tags[i] == tag && values[i] != 0) {
                    return gens[i] == generation[pcid] ? values[i] : 0;
                }
            }
            return 0;
        }

        void insert(int pcid, long va, long value) {
            long vpn = va >> shift;
            long tag = tag(pcid, vpn);
            int s = set(pcid, vpn);
            int base = s * ways;
            for (int i = base; i < base + ways; i++) {
                if (tags[i] == tag || !live(i)) {
                    tags[i] = tag;
                    values[i] = value;
                    gens[i] = generation[pcid];
                    return;
                }
            }
            int i = base + victim[s];
            victim[s] = (victim[s] + 1) % ways;
            tags[i] = tag;
            values[i] = value;
            gens[i] = generation[pcid];
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
            java.util.Arrays.fill(values, 0);
        }

        void collect(int pcid, PageSize size, List<Entry> out) {
            for (int i = 0; i < tags.length; i++) {
                int p = (int) (tags[i] & 0xFFF);
                if (live(i) && (pcid < 0 || p == pcid)) {
                    out.add(new Entry(p, (tags[i] >> 12) << shift, size, values[i]));
                }
            }
        }
    }

    /** A small fully associative cache (paging-structure caches). */
    private static final class FullAssoc {
        private final long[] keys;
        private final int[] pcids;
        private final long[] values;
        private int victim;

        FullAssoc(int entries) {
            keys = new long[entries];
            pcids = new int[entries];
            values = new long[entries];
        }

        long lookup(int pcid, long key) {
            for (int i = 0; i < keys.length; i++) {
                if (values[i] != 0 && keys[i] == key && pcids[i] == pcid) {
                    return values[i];
                }
            }
            return 0;
        }

        void insert(int pcid, long key, long value) {
            if (keys.length == 0) {
                return;
            }
            for (int i = 0; i < keys.length; i++) {
                if (values[i] == 0 || (keys[i] == key && pcids[i] == pcid)) {
                    keys[i] = key;
                    pcids[i] = pcid;
                    values[i] = value;
                    return;
                }
            }
            keys[victim] = key;
            pcids[victim] = pcid;
            values[victim] = value;
            victim = (victim + 1) % keys.length;
        }

        void invalidatePcid(int pcid) {
            for (int i = 0; i < keys.length; i++) {
                if (pcids[i] == pcid) {
                    values[i] = 0;
                }
            }
        }

        void clear() {
            java.util.Arrays.fill(values, 0);
        }

        void collect(int pcid, int shift, List<Entry> out) {
            for (int i = 0; i < keys.length; i++) {
                if (values[i] != 0 && (pcid < 0 || pcids[i] == pcid)) {
                    out.add(new Entry(pcids[i], keys[i] << shift, null, values[i]));
                }
            }
        }
    }
}
