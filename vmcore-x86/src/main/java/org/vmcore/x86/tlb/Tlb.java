package org.vmcore.x86.tlb;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
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
    private int lastHitShift = 12;
    // The L1 DTLB: a small direct-mapped cache of 4 KiB translations in front of the 4 KiB
    // array and inclusive of it, as a core's first-level DTLB sits in front of its STLB. It also
    // holds the host page of each entry's frame once known, so a hit reaches the bytes without a
    // frame lookup (a frame's page never changes once it exists). A tag of -1 is an empty entry.
    private static final int L1_ENTRIES = 64;
    private final long[] l1Tag = new long[L1_ENTRIES];
    private final long[] l1Value = new long[L1_ENTRIES];
    private final MemorySegment[] l1Page = new MemorySegment[L1_ENTRIES];
    private int lastL1 = -1;
    private boolean lastHitL1;

    /**
     * An empty TLB of the given geometry.
     *
     * @param config the entries and ways of each array and the size of each paging-structure cache
     */
    public Tlb(TlbConfig config) {
        this.config = config;
        this.arrays = new SetAssoc[] {
            new SetAssoc(config.entries4k(), config.ways4k(), 12, generation),
            new SetAssoc(config.entries2m(), config.ways2m(), 21, generation),
            new SetAssoc(config.entries1g(), config.ways1g(), 30, generation)};
        this.caches = new FullAssoc[] {
            new FullAssoc(config.pml4eCache()), new FullAssoc(config.pdpteCache()), new FullAssoc(config.pdeCache())};
        Arrays.fill(l1Tag, -1);
    }

    /**
     * The geometry this TLB was built with.
     *
     * @return the configuration given at construction
     */
    public TlbConfig config() {
        return config;
    }

    /**
     * The cached translation of {@code va} under {@code pcid} at any page size, or 0 on a miss;
     * after a hit {@link #lastHitShift()} gives the page size's shift.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the leaf-like translation word (see the class comment), or 0
     */
    public long lookup(int pcid, long va) {
        long tag = SetAssoc.tag(pcid, va >> 12);
        int m = l1Index(tag);
        if (l1Tag[m] == tag) {
            lastL1 = m;
            lastHitShift = 12;
            lastHitL1 = true;
            return l1Value[m];
        }
        lastL1 = -1;
        lastHitL1 = false;
        // Smallest size first: if a stale 4 KiB entry and a 2 MiB one both cover va, the 4 KiB one wins.
        for (int i = 0; i < arrays.length; i++) {
            long v = arrays[i].lookup(pcid, va);
            if (v != 0) {
                lastHitShift = arrays[i].shift;
                if (i == 0) {
                    fillL1(m, tag, v);
                }
                return v;
            }
        }
        return 0;
    }

    /**
     * Whether the last {@link #lookup} hit the first-level (4 KiB) array rather than the
     * second-level arrays.
     *
     * @return true for an L1 hit
     */
    public boolean lastHitL1() {
        return lastHitL1;
    }

    /**
     * log2 of the page size of the last {@link #lookup} hit: 12, 21 or 30.
     *
     * @return the shift of the page size
     */
    public int lastHitShift() {
        return lastHitShift;
    }

    /**
     * The page size of the translation {@link #lookup} would return for va, or null on a miss.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the page size of the cached translation, or null
     */
    public PageSize lookupSize(int pcid, long va) {
        for (int i = 0; i < arrays.length; i++) {
            if (arrays[i].lookup(pcid, va) != 0) {
                return PageSize.values()[i];
            }
        }
        return null;
    }

    /**
     * Caches {@code value} (non-zero) for the page of {@code size} containing va.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va any virtual address in the page
     * @param size the page size of the translation
     * @param value the leaf-like translation word (see the class comment), non-zero
     */
    public void insert(int pcid, long va, PageSize size, long value) {
        long replaced = arrays[size.ordinal()].insert(pcid, va, value);
        lastHitShift = arrays[size.ordinal()].shift;
        lastL1 = -1;
        if (size == PageSize.SIZE_4K) {
            dropL1(replaced); // inclusive: what leaves the 4 KiB array leaves the L1
            long tag = SetAssoc.tag(pcid, va >> 12);
            fillL1(l1Index(tag), tag, value);
        }
    }

    /**
     * The host page of the frame that the translation last hit or filled maps, as remembered by
     * {@link #rememberPage}; null when that translation is not a 4 KiB one in the L1 or no page
     * was remembered for it.
     *
     * @return the frame's 4096-byte host segment, or null
     */
    public MemorySegment lastPage() {
        return lastL1 >= 0 ? l1Page[lastL1] : null;
    }

    /**
     * Remembers {@code page}, the host page of the frame that the 4 KiB translation last hit or
     * filled maps, so later hits reach the bytes directly. Ignored for larger translations.
     *
     * @param page the 4096-byte host segment of the frame the translation maps
     */
    public void rememberPage(MemorySegment page) {
        if (lastL1 >= 0) {
            l1Page[lastL1] = page;
        }
    }

    /**
     * The L1 slot holding the 4 KiB translation of va under pcid, or -1: the CPU's fast path,
     * which then reads {@link #l1Value} and {@link #l1Page}. Changes nothing, not even
     * {@link #lastPage}.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the slot index, 0 to 63, or -1 on an L1 miss
     */
    public int l1Slot(int pcid, long va) {
        long tag = SetAssoc.tag(pcid, va >> 12);
        int m = l1Index(tag);
        return l1Tag[m] == tag ? m : -1;
    }

    /**
     * The translation in L1 slot {@code slot} (from {@link #l1Slot}).
     *
     * @param slot an L1 slot index from {@link #l1Slot}, 0 to 63
     * @return the leaf-like translation word
     */
    public long l1Value(int slot) {
        return l1Value[slot];
    }

    /**
     * The remembered host page of L1 slot {@code slot}, or null (see {@link #rememberPage}).
     *
     * @param slot an L1 slot index from {@link #l1Slot}, 0 to 63
     * @return the frame's 4096-byte host segment, or null
     */
    public MemorySegment l1Page(int slot) {
        return l1Page[slot];
    }

    private static int l1Index(long tag) {
        return (int) ((tag >>> 12) ^ tag) & (L1_ENTRIES - 1);
    }

    private void fillL1(int m, long tag, long value) {
        l1Tag[m] = tag;
        l1Value[m] = value;
        l1Page[m] = null;
        lastL1 = m;
    }

    private void dropL1(long tag) {
        int m = l1Index(tag);
        if (l1Tag[m] == tag) {
            l1Tag[m] = -1;
            l1Page[m] = null;
        }
    }

    /** Empties the L1: any flush does, which may drop more than it must, as hardware may. */
    private void clearL1() {
        Arrays.fill(l1Tag, -1);
        Arrays.fill(l1Page, null);
        lastL1 = -1;
    }

    /**
     * The deepest paging-structure cache hit for va: {@link #PDE}, {@link #PDPTE}, {@link #PML4E}, or -1.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the cache number of the deepest hit, or -1
     */
    public int pscDeepest(int pcid, long va) {
        for (int level = PDE; level >= PML4E; level--) {
            if (caches[level].lookup(pcid, va >> PSC_SHIFT[level]) != 0) {
                return level;
            }
        }
        return -1;
    }

    /**
     * The cached entry of paging-structure cache {@code level} for va, or 0.
     *
     * @param level the cache: {@link #PML4E}, {@link #PDPTE} or {@link #PDE}
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the cached value (see {@link #pscValue}), or 0
     */
    public long pscLookup(int level, int pcid, long va) {
        return caches[level].lookup(pcid, va >> PSC_SHIFT[level]);
    }

    /**
     * Caches a paging-structure entry: {@code value} holds the table PFN and the effective upper bits.
     *
     * @param level the cache: {@link #PML4E}, {@link #PDPTE} or {@link #PDE}
     * @param pcid the process-context identifier, 0 to 4095
     * @param va any virtual address the entry covers
     * @param value the packed value from {@link #pscValue}
     */
    public void pscInsert(int level, int pcid, long va, long value) {
        caches[level].insert(pcid, va >> PSC_SHIFT[level], value);
    }

    /**
     * The level whose table a paging-structure entry of {@code level} points to.
     *
     * @param level the cache: {@link #PML4E}, {@link #PDPTE} or {@link #PDE}
     * @return PUD, PMD or PTE
     */
    public static Level pscTableLevel(int level) {
        return PSC_NEXT[level];
    }

    /**
     * Packs a table PFN and effective RW/USER/NX bits into a paging-structure cache value.
     *
     * @param tablePfn the page frame number of the lower table
     * @param effectiveBits the effective RW, USER and NX bits of the levels above and including the entry; other bits are dropped
     * @return the table PFN in bits 12..51, the kept bits, and PRESENT
     */
    public static long pscValue(long tablePfn, long effectiveBits) {
        return (tablePfn << 12) | (effectiveBits & (Pte.RW | Pte.USER | Pte.NX)) | Pte.PRESENT;
    }

    /**
     * INVLPG: drops the translations of the page containing va at every size under
     * {@code pcid}, and every paging-structure cache entry of {@code pcid}.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va any virtual address in the page
     * @return translations dropped
     */
    public int invalidatePage(int pcid, long va) {
        clearL1();
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
     * @param pcid the process-context identifier, 0 to 4095
     * @param start the first virtual address of the range
     * @param end one past the last virtual address of the range
     * @param strideShift log2 of the step in bytes, for example 12 for 4 KiB pages
     * @return translations dropped
     */
    public int invalidateRange(int pcid, long start, long end, int strideShift) {
        clearL1();
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

    /**
     * Drops everything cached under {@code pcid} (INVPCID single-context).
     *
     * @param pcid the process-context identifier, 0 to 4095
     */
    public void invalidatePcid(int pcid) {
        clearL1();
        generation[pcid & 0xFFF]++;
        for (FullAssoc c : caches) {
            c.invalidatePcid(pcid);
        }
    }

    /** Drops everything (INVPCID all-context). */
    public void invalidateAll() {
        clearL1();
        for (SetAssoc a : arrays) {
            a.clear();
        }
        for (FullAssoc c : caches) {
            c.clear();
        }
    }

    /**
     * Translations cached under {@code pcid}, or under every PCID when {@code pcid} is -1.
     *
     * @param pcid the process-context identifier, or -1 for all
     * @return a new list of the cached translations
     */
    public List<Entry> entries(int pcid) {
        List<Entry> out = new ArrayList<>();
        for (int i = 0; i < arrays.length; i++) {
            arrays[i].collect(pcid, PageSize.values()[i], out);
        }
        return out;
    }

    /**
     * Paging-structure cache entries of {@code level} under {@code pcid} (or every PCID for -1).
     *
     * @param level the cache: {@link #PML4E}, {@link #PDPTE} or {@link #PDE}
     * @param pcid the process-context identifier, or -1 for all
     * @return a new list of the cached entries
     */
    public List<Entry> pscEntries(int level, int pcid) {
        List<Entry> out = new ArrayList<>();
        caches[level].collect(pcid, PSC_SHIFT[level], out);
        return out;
    }

    /**
     * One cached translation or paging-structure entry, for inspection.
     *
     * @param pcid the process-context identifier the entry is tagged with
     * @param va the first virtual address the entry covers
     * @param size the page size of a translation, or null for a paging-structure entry
     * @param value the leaf-like translation word or the packed paging-structure value
     */
    public record Entry(int pcid, long va, PageSize size, long value) {
        /**
         * The PFN the entry holds (page head, or table).
         *
         * @return the page frame number in bits 12..51 of the value
         */
        public long pfn() {
            return (value & Pte.PFN_MASK) >>> 12;
        }
    }

    /** One set-associative array of translations for one page size. */
    private static final class SetAssoc {
        private static final int MEMO = 256;
        private final int ways;
        private final int setMask;
        private final int shift;
        private final long[] tags;
        private final long[] values;
        private final int[] gens;
        private final int[] generation;
        private final int[] victim;
        // Where recent hits were found, by vpn: a lookup checks that slot before scanning the set.
        // A hint is only a guess, checked against the slot's tag, so it never needs invalidating
        // and changes no behaviour: hits, misses and replacement are those of the set scan.
        private final int[] wayHint = new int[MEMO];

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
            Arrays.fill(values, 0);
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
