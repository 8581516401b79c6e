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
 */
public record MachineConfig(List<Long> nodeBytes, int cpus, PagingMode pagingMode,
                            Map<Integer, Map<PageSize, Long>> hugePages, Set<Regression> regressions, TlbConfig tlb,
                            boolean detectStaleTranslations, boolean checkInvariants, ThpMode thp) {
    /** Copies every collection, so a config never changes after it is made. */
    public MachineConfig {
        nodeBytes = List.copyOf(nodeBytes);
        hugePages = Map.copyOf(hugePages.entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> Map.copyOf(e.getValue()))));
        regressions = regressions.isEmpty() ? Set.of() : Set.copyOf(regressions);
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
