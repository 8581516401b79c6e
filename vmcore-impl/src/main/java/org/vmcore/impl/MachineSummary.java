package org.vmcore.impl;

import org.vmcore.api.MachineConfig;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;

/** The one-line description of a machine that {@code Machine.toString} gives. */
final class MachineSummary {
    private MachineSummary() {
    }

    /**
     * For example {@code Machine[nodes 4G 4G, 2 CPUs, 4-level paging, hugetlb node0 1024x2M,
     * regressions [], 3 address spaces]}, with {@code swap 4096K} before the regressions when there
     * is a swap device; {@code Machine[closed, ...]} without the address spaces.
     */
    static String of(MachineConfig config, boolean closed, int liveAddressSpaces) {
        StringBuilder sb = new StringBuilder("Machine[");
        if (closed) {
            sb.append("closed, ");
        }
        sb.append("nodes");
        for (long bytes : config.nodeBytes()) {
            sb.append(' ').append(bytes >>> 30).append('G');
        }
        sb.append(", ").append(config.cpus()).append(config.cpus() == 1 ? " CPU, " : " CPUs, ")
                .append(config.pagingMode() == PagingMode.FIVE_LEVEL ? "5" : "4").append("-level paging, hugetlb");
        int pools = 0;
        for (int node = 0; node < config.nodeBytes().size(); node++) {
            for (PageSize size : new PageSize[] {PageSize.SIZE_2M, PageSize.SIZE_1G}) {
                long count = config.hugePages(node, size);
                if (count > 0) {
                    sb.append(pools++ == 0 ? " " : ", ").append("node").append(node).append(' ').append(count).append('x')
                            .append(size.label());
                }
            }
        }
        sb.append(pools == 0 ? " none" : "");
        if (config.swapBytes() > 0) {
            sb.append(", swap ").append(config.swapBytes() >>> 10).append("K");
        }
        sb.append(", regressions ").append(config.regressions().stream().sorted().toList());
        if (!closed) {
            sb.append(", ").append(liveAddressSpaces).append(liveAddressSpaces == 1 ? " address space" : " address spaces");
        }
        return sb.append(']').toString();
    }
}
