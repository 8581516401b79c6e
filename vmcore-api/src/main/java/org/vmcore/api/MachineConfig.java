package org.vmcore.api;

import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.stream.Collectors;

/**
 * The validated configuration of a {@link Machine}, as {@link Machine.Builder} assembles it and
 * a {@link MachineProvider} receives it.
 *
 * @param nodeBytes   bytes of memory per NUMA node, node 0 first
 * @param cpus        number of CPUs
 * @param pagingMode  4- or 5-level paging
 * @param hugePages   pages preallocated per node and huge-page size (nr_hugepages)
 * @param regressions historical behaviours switched on
 * @param tlb         the geometry of every CPU's TLB
 * @param detectStaleTranslations whether every TLB hit and secondary-MMU use is checked against
 *                    the page tables (see {@link Machine#staleAccesses()})
 * @param checkInvariants whether {@link Machine#checkInvariants()} runs after every operation,
 *                    throwing {@link InvariantViolationException} on the first inconsistency
 * @param thp         when anonymous memory gets transparent huge pages
 * @param swapBytes   size of the swap device in bytes, a multiple of 4 KiB; 0 for no swap. Its
 *                    first 4 KiB slot is the header, as in Linux, so it holds
 *                    {@code swapBytes / 4096 - 1} pages
 */
public record MachineConfig(List<Long> nodeBytes, int cpus, PagingMode pagingMode,
                            Map<Integer, Map<PageSize, Long>> hugePages, Set<Regression> regressions, TlbConfig tlb,
                            boolean detectStaleTranslations, boolean checkInvariants, ThpMode thp, long swapBytes) {
    /** Copies every collection, so a config never changes after it is made. */
    public MachineConfig {
        nodeBytes = List.copyOf(nodeBytes);
        hugePages = Map.copyOf(hugePages.entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> Map.copyOf(e.getValue()))));
        regressions = regressions.isEmpty() ? Set.of() : Set.copyOf(regressions);
        thp = thp == null ? ThpMode.MADVISE : thp;
    }

    /**
     * A configuration without swap, with transparent huge pages in {@link ThpMode#MADVISE} mode.
     *
     * @param nodeBytes   bytes of memory per NUMA node, node 0 first
     * @param cpus        number of CPUs
     * @param pagingMode  4- or 5-level paging
     * @param hugePages   pages preallocated per node and huge-page size
     * @param regressions historical behaviours switched on
     * @param tlb         the geometry of every CPU's TLB
     * @param detectStaleTranslations whether the stale-translation detector runs
     * @param checkInvariants whether the invariants are checked after every operation
     */
    public MachineConfig(List<Long> nodeBytes, int cpus, PagingMode pagingMode, Map<Integer, Map<PageSize, Long>> hugePages,
                         Set<Regression> regressions, TlbConfig tlb, boolean detectStaleTranslations, boolean checkInvariants) {
        this(nodeBytes, cpus, pagingMode, hugePages, regressions, tlb, detectStaleTranslations, checkInvariants, ThpMode.MADVISE, 0);
    }

    /**
     * Pages preallocated on {@code node} of {@code size}; 0 when none were asked for.
     *
     * @param node the NUMA node
     * @param size the page size
     * @return pages preallocated on {@code node} of {@code size}
     */
    public long hugePages(int node, PageSize size) {
        return hugePages.getOrDefault(node, Map.of()).getOrDefault(size, 0L);
    }
}
