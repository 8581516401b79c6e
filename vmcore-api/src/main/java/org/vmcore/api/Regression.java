package org.vmcore.api;

/**
 * Historical kernel behaviours that a {@link Machine} can be switched back to, one by one, to
 * reproduce the bugs that later fixes removed. None is enabled by default: a machine behaves
 * like today's upstream kernel.
 */
public enum Regression {
    /**
     * Before "mm: migration: fix migration of huge PMD shared pages" (017b1660df89, 2018): the
     * unmap path of migration does not unshare a shared PMD table, so it clears the shared
     * entry, flushes and notifies only the first address space it visits, and stops because the
     * huge page's mapcount reaches zero. The other sharers keep stale TLB entries.
     */
    PRE_017B1660
}
