package org.vmcore.impl.hugetlb;

import java.util.EnumMap;
import java.util.Map;
import java.util.function.ToLongBiFunction;
import org.vmcore.api.PageSize;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The machine's hugetlb pools, one {@link HugePagePool} per huge-page size (the kernel's hstates),
 * and the lookup from a huge page to its pool. It touches only the pools and the frame
 * descriptors.
 */
public final class HugetlbPools {
    private final Map<PageSize, HugePagePool> pools = new EnumMap<>(PageSize.class);
    private final FrameDescriptors descriptors;

    /**
     * The pools of a new machine, {@code perNode.apply(node, size)} pages of each size on each
     * node: 1 GiB pages first, as they need whole order-18 blocks, which 2 MiB pages would break up.
     */
    public static HugetlbPools create(PhysicalMemory memory, int nodes, ToLongBiFunction<Integer, PageSize> perNode) {
        Map<PageSize, HugePagePool> bySize = new EnumMap<>(PageSize.class);
        for (PageSize size : new PageSize[] {PageSize.SIZE_1G, PageSize.SIZE_2M}) {
            long[] counts = new long[nodes];
            for (int n = 0; n < nodes; n++) {
                counts[n] = perNode.applyAsLong(n, size);
            }
            bySize.put(size, new HugePagePool(memory, size, counts));
        }
        return new HugetlbPools(bySize, memory.descriptors());
    }

    public HugetlbPools(Map<PageSize, HugePagePool> pools, FrameDescriptors descriptors) {
        this.pools.putAll(pools);
        this.descriptors = descriptors;
    }

    /** The pool a hugetlb page belongs to, by its order (page_hstate); null for a frame outside the pools. */
    public HugePagePool poolOf(long pfn) {
        if ((descriptors.flags(pfn) & FrameFlags.HUGETLB) == 0) {
            return null;
        }
        return pools.get(descriptors.order(pfn) == PageSize.SIZE_1G.order() ? PageSize.SIZE_1G : PageSize.SIZE_2M);
    }

    public HugePagePool pool(PageSize size) {
        return pools.get(size);
    }
}
