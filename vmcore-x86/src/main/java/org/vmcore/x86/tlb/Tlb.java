package org.vmcore.x86.tlb;

import java.util.ArrayList;
import java.util.List;
import org.vmcore.api.PageSize;
import org.vmcore.api.TlbConfig;
import org.vmcore.x86.internal.L1Dtlb;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.Pte;

/**
 * The TLB of one CPU: PCID-tagged translations in one set-associative array per page size
 * ({@link TlbArray}) behind a 64-entry L1 DTLB for 4 KiB pages, and paging-structure caches
 * (PML4E, PDPTE, PDE; {@link PagingStructureCaches}) that let a walk start below the root.
 *
 * <p>A translation is stored as a leaf-like word: the page's head PFN in bits 12..51 and the
 * effective permission bits of the whole walk (RW and USER are the AND over all levels, NX the
 * OR), plus the leaf's DIRTY bit as it was when cached. A paging-structure entry holds the table
 * PFN it points to and the effective bits of the levels above and including it.
 *
 * <p>The L1 is inclusive of the 4 KiB array (an entry leaves it when it leaves the array, and any
 * flush empties it) and changes no hit, miss or replacement of the arrays. It also remembers
 * the host page of each entry's frame for the CPU's access path, which is not part of this API.
 *
 * <p>Not thread-safe: the owning CPU and the flushes sent to it take turns (see the CPU's access
 * protocol). Lookups and inserts allocate nothing. Replacement is round robin per set.
 */
public final class Tlb {
    static {
        SharedSecrets.setTlbAccess(tlb -> tlb.l1);
    }

    /** Paging-structure cache of PML4 entries (keyed by va bits 39..), PDPT entries (30..), PD entries (21..). */
    public static final int PML4E = 0;
    /** See {@link #PML4E}. */
    public static final int PDPTE = 1;
    /** See {@link #PML4E}. */
    public static final int PDE = 2;

    private final TlbConfig config;
    private final TlbArray[] arrays;
    private final PagingStructureCaches caches;
    // A PCID flush bumps its generation: entries cached under an older generation are dead, so
    // flushing a whole address space costs O(1) instead of a scan of every array.
    private final int[] generation = new int[4096];
    private final L1Dtlb l1 = new L1Dtlb();
    private int lastHitShift = 12;
    private boolean lastHitL1;

    /**
     * An empty TLB of the given geometry.
     *
     * @param config the entries and ways of each array and the size of each paging-structure cache
     */
    public Tlb(TlbConfig config) {
        this.config = config;
        this.arrays = new TlbArray[] {
            new TlbArray(config.entries4k(), config.ways4k(), 12, generation),
            new TlbArray(config.entries2m(), config.ways2m(), 21, generation),
            new TlbArray(config.entries1g(), config.ways1g(), 30, generation)};
        this.caches = new PagingStructureCaches(config);
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
        long tag = TlbArray.tag(pcid, va >> 12);
        long hit = l1.lookup(tag);
        if (hit != 0) {
            lastHitShift = 12;
            lastHitL1 = true;
            return hit;
        }
        lastHitL1 = false;
        // Smallest size first: if a stale 4 KiB entry and a 2 MiB one both cover va, the 4 KiB one wins.
        for (int i = 0; i < arrays.length; i++) {
            long v = arrays[i].lookup(pcid, va);
            if (v != 0) {
                lastHitShift = arrays[i].shift;
                if (i == 0) {
                    l1.fill(tag, v);
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
        l1.forgetLast();
        if (size == PageSize.SIZE_4K) {
            l1.drop(replaced); // inclusive: what leaves the 4 KiB array leaves the L1
            l1.fill(TlbArray.tag(pcid, va >> 12), value);
        }
    }

    /**
     * The deepest paging-structure cache hit for va: {@link #PDE}, {@link #PDPTE}, {@link #PML4E}, or -1.
     *
     * @param pcid the process-context identifier, 0 to 4095
     * @param va the virtual address
     * @return the cache number of the deepest hit, or -1
     */
    public int pscDeepest(int pcid, long va) {
        return caches.deepest(pcid, va);
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
        return caches.lookup(level, pcid, va);
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
        caches.insert(level, pcid, va, value);
    }

    /**
     * The level whose table a paging-structure entry of {@code level} points to.
     *
     * @param level the cache: {@link #PML4E}, {@link #PDPTE} or {@link #PDE}
     * @return PUD, PMD or PTE
     */
    public static Level pscTableLevel(int level) {
        return PagingStructureCaches.tableLevel(level);
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
        l1.clear();
        int n = 0;
        for (TlbArray a : arrays) {
            n += a.invalidate(pcid, va);
        }
        caches.invalidatePcid(pcid);
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
        l1.clear();
        int n = 0;
        for (long va = start; Long.compareUnsigned(va, end) < 0; va += 1L << strideShift) {
            for (TlbArray a : arrays) {
                n += a.invalidate(pcid, va);
            }
        }
        caches.invalidatePcid(pcid);
        return n;
    }

    /**
     * Drops everything cached under {@code pcid} (INVPCID single-context).
     *
     * @param pcid the process-context identifier, 0 to 4095
     */
    public void invalidatePcid(int pcid) {
        l1.clear();
        generation[pcid & 0xFFF]++;
        caches.invalidatePcid(pcid);
    }

    /** Drops everything (INVPCID all-context). */
    public void invalidateAll() {
        l1.clear();
        for (TlbArray a : arrays) {
            a.clear();
        }
        caches.clear();
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
        return caches.entries(level, pcid);
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
}
