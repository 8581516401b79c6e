package org.vmcore.x86.tlb;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import org.vmcore.api.TlbConfig;
import org.vmcore.x86.pgtable.Level;

/**
 * The paging-structure caches of a {@link Tlb} (SDM 4.10.3): fully associative PML4E, PDPTE and
 * PDE caches, each entry holding the PFN of the table its paging-structure entry points to and
 * the effective RW, USER and NX bits of the levels above and including it, so a walk can start
 * below the root. Tagged with the PCID; any INVLPG drops all of a PCID's entries, as Linux relies
 * on. Replacement is round robin. Allocates nothing on lookup and insert.
 */
final class PagingStructureCaches {
    private static final int[] SHIFT = {39, 30, 21};
    private static final Level[] NEXT = {Level.PUD, Level.PMD, Level.PTE};

    private final FullAssoc[] caches;

    PagingStructureCaches(TlbConfig config) {
        this.caches = new FullAssoc[] {
            new FullAssoc(config.pml4eCache()), new FullAssoc(config.pdpteCache()), new FullAssoc(config.pdeCache())};
    }

    /** The deepest cache that holds an entry for va: Tlb.PDE, PDPTE, PML4E, or -1. */
    int deepest(int pcid, long va) {
        for (int level = Tlb.PDE; level >= Tlb.PML4E; level--) {
            if (caches[level].lookup(pcid, va >> SHIFT[level]) != 0) {
                return level;
            }
        }
        return -1;
    }

    long lookup(int level, int pcid, long va) {
        return caches[level].lookup(pcid, va >> SHIFT[level]);
    }

    void insert(int level, int pcid, long va, long value) {
        caches[level].insert(pcid, va >> SHIFT[level], value);
    }

    static Level tableLevel(int level) {
        return NEXT[level];
    }

    void invalidatePcid(int pcid) {
        for (FullAssoc c : caches) {
            c.invalidatePcid(pcid);
        }
    }

    void clear() {
        for (FullAssoc c : caches) {
            c.clear();
        }
    }

    List<Tlb.Entry> entries(int level, int pcid) {
        List<Tlb.Entry> out = new ArrayList<>();
        caches[level].collect(pcid, SHIFT[level], out);
        return out;
    }

    /** One small fully associative cache, keyed by PCID and the covered address bits. */
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

        void collect(int pcid, int shift, List<Tlb.Entry> out) {
            for (int i = 0; i < keys.length; i++) {
                if (values[i] != 0 && (pcid < 0 || pcids[i] == pcid)) {
                    out.add(new Tlb.Entry(pcids[i], keys[i] << shift, null, values[i]));
                }
            }
        }
    }
}
