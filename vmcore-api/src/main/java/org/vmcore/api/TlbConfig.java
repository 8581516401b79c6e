package org.vmcore.api;

/**
 * The geometry of each CPU's TLB: a set-associative array per page size, and fully associative
 * paging-structure caches for PML4 entries, PDPT entries and PD entries. Entry counts must be
 * multiples of their associativity and give a power-of-two number of sets.
 *
 * @param entries4k  4 KiB translations
 * @param ways4k     associativity of the 4 KiB array
 * @param entries2m  2 MiB translations
 * @param ways2m     associativity of the 2 MiB array
 * @param entries1g  1 GiB translations
 * @param ways1g     associativity of the 1 GiB array
 * @param pml4eCache cached PML4 entries (the PUD table of a 512 GiB region)
 * @param pdpteCache cached PDPT entries (the PMD table of a 1 GiB window)
 * @param pdeCache   cached PD entries (the PTE table of a 2 MiB region)
 */
public record TlbConfig(int entries4k, int ways4k, int entries2m, int ways2m, int entries1g, int ways1g,
                        int pml4eCache, int pdpteCache, int pdeCache) {
    /**
     * Defaults like the second-level TLB of a current x86 server core: 2048 4 KiB entries
     * (16-way), 1024 2 MiB entries (8-way), 32 1 GiB entries (4-way), and paging-structure
     * caches of 2 PML4, 4 PDPT and 32 PD entries.
     */
    public static final TlbConfig DEFAULT = new TlbConfig(2048, 16, 1024, 8, 32, 4, 2, 4, 32);

    /** Validates every field. */
    public TlbConfig {
        check("entries4k", entries4k, ways4k);
        check("entries2m", entries2m, ways2m);
        check("entries1g", entries1g, ways1g);
        for (int n : new int[] {pml4eCache, pdpteCache, pdeCache}) {
            if (n < 0 || n > 4096) {
                throw new InvalidArgumentException("pagingStructureCache", n, "must be between 0 and 4096 entries");
            }
        }
    }

    private static void check(String name, int entries, int ways) {
        if (ways < 1 || entries < ways || entries > (1 << 20) || entries % ways != 0 || Integer.bitCount(entries / ways) != 1) {
            throw new InvalidArgumentException(name, entries, "must be a multiple of its associativity " + ways
                    + " giving a power-of-two number of sets (at most 2^20 entries)");
        }
    }
}
