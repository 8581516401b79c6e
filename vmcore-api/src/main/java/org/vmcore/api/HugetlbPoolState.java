package org.vmcore.api;

/**
 * A hugetlb pool of one page size on one node, as /sys/devices/system/node/nodeN/hugepages
 * shows it. Reservations are global per size in the kernel; they are reported on every node's
 * state of that size.
 *
 * @param node     the NUMA node
 * @param size     the huge-page size
 * @param total    nr_hugepages on the node
 * @param free     free_hugepages on the node
 * @param reserved resv_hugepages of this size (all nodes)
 * @param surplus  surplus_hugepages on the node
 */
public record HugetlbPoolState(int node, PageSize size, long total, long free, long reserved, long surplus) {
}
