package org.vmcore.api;

import java.util.ArrayList;
import java.util.EnumSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.ServiceLoader;
import java.util.Set;

/**
 * A simulated x86-64 machine: NUMA memory, CPUs with TLBs, hugetlb pools and the kernel's
 * memory management. Closing it frees every off-heap byte it took; every object obtained from it is
 * unusable afterwards ({@link ClosedException}). Its {@code toString()} names the configuration
 * and the number of live address spaces, and works after close.
 *
 * <pre>{@code
 * try (Machine machine = Machine.builder().node(4L << 30).node(4L << 30)
 *         .hugePages(0, PageSize.SIZE_2M, 1024).build()) {
 *     AddressSpace mm = machine.createAddressSpace();
 *     long va = mm.mmap(0, 1L << 20, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
 *     mm.fault(va, Access.WRITE);
 * }
 * }</pre>
 */
public interface Machine extends AutoCloseable, PhysicalMemoryView, MachineDiagnostics {
    /**
     * A builder; {@link Builder#build()} loads the implementation through ServiceLoader.
     *
     * @return a builder
     */
    static Builder builder() {
        return new Builder();
    }

    /**
     * The configuration this machine was built with.
     *
     * @return the configuration this machine was built with
     */
    MachineConfig config();

    /**
     * A new, empty address space whose pages and tables come from node 0 first.
     *
     * @return a new, empty address space whose pages and tables come from node 0 first
     */
    AddressSpace createAddressSpace();

    /**
     * A new, empty address space whose pages and tables come from {@code homeNode} first.
     *
     * @param homeNode the NUMA node to allocate from first
     * @return a new, empty address space whose pages and tables come from {@code homeNode} first
     * @throws InvalidArgumentException if the node does not exist
     */
    AddressSpace createAddressSpace(int homeNode);

    /**
     * Address spaces alive on this machine, in creation order.
     *
     * @return the live address spaces
     */
    List<AddressSpace> addressSpaces();

    /**
     * The hugetlbfs mount.
     *
     * @return the hugetlbfs mount
     */
    HugetlbFs hugetlbfs();

    /**
     * Reverse mapping: who maps a page.
     *
     * @return reverse mapping
     */
    RmapWalker rmap();

    /**
     * Page migration between nodes.
     *
     * @return page migration between nodes
     */
    MigrationService migration();

    /**
     * The khugepaged thread, which a caller drives step by step.
     *
     * @return khugepaged
     */
    Khugepaged khugepaged();

    /**
     * Number of CPUs.
     *
     * @return number of CPUs
     */
    int cpuCount();

    /**
     * CPU {@code id}.
     *
     * @param id the CPU number
     * @return cPU {@code id}
     * @throws InvalidArgumentException if there is no such CPU
     */
    Cpu cpu(int id);

    /** Flushes every CPU's TLB and paging-structure caches completely. */
    void flushTlbAll();

    /**
     * Reclaims up to {@code pages} anonymous 4 KiB pages of {@code node}, as direct reclaim or a
     * write to a cgroup's memory.reclaim does (shrink_node, shrink_folio_list); no background
     * thread ever reclaims. Pages are scanned in frame order from where the last call stopped;
     * a page whose entries were accessed since the last scan is passed over once (its accessed
     * bits are cleared: folio_referenced), so cold pages ({@link Advice#COLD}) go first. Each
     * victim is unmapped from every address space that maps it (try_to_unmap over its anon_vma,
     * fork relatives included, with MMU notifiers and TLB flushes), its entries become swap
     * entries and its contents go to the swap device (pswpout); a clean lazy-free page
     * ({@link Advice#FREE}) is dropped instead. Pages locked or isolated by a migration, hugetlb,
     * shmem and mlocked pages are passed over. Reclaim stops early when the swap device is full.
     *
     * @param node  the NUMA node
     * @param pages how many pages to reclaim at most
     * @return the pages reclaimed (nr_reclaimed)
     * @throws InvalidArgumentException if the node does not exist or {@code pages} is negative
     */
    long reclaim(int node, long pages);

    /**
     * Whether {@code regression} is switched on.
     *
     * @param regression the historical behaviour
     * @return whether {@code regression} is switched on
     */
    default boolean has(Regression regression) {
        return config().regressions().contains(regression);
    }

    /**
     * Installs {@code hook} at {@code point}, replacing the one there; null removes it. The hook
     * runs on every thread that reaches the point, inside the kernel path, with that path's locks
     * held (see {@link RacePoint}); it is for replaying races between kernel paths exactly.
     *
     * @param point the point in a kernel path
     * @param hook what runs there, or null for nothing
     * @throws InvalidArgumentException if point is null
     */
    void setRaceHook(RacePoint point, RaceHook hook);

    /**
     * Frees everything; idempotent. Best effort that always completes: every address space is
     * closed and all off-heap memory is freed even when a notifier's release throws; the first
     * such exception is then rethrown with the others suppressed. CPUs running on other threads
     * are stopped before the memory goes: their access in progress ends first and every later
     * one throws {@link ClosedException}. Afterwards every method except {@code close},
     * {@link #offHeapBytes()} and the identity accessors ({@link Cpu#id()},
     * {@link AddressSpace#id()}, ...) throws {@link ClosedException}.
     *
     * <p>A machine that is never closed leaks its off-heap memory until the JVM exits: it is not
     * reclaimed by the garbage collector. Use try-with-resources.
     */
    @Override
    void close();

    /**
     * Assembles a {@link MachineConfig}. Defaults: one node of 1 GiB, one CPU, 4-level paging,
     * no huge pages, no regressions, {@link TlbConfig#DEFAULT}, no stale-translation detector,
     * transparent huge pages in {@link ThpMode#MADVISE} mode.
     */
    final class Builder {
        private final List<Long> nodes = new ArrayList<>();
        private int cpus = 1;
        private PagingMode pagingMode = PagingMode.FOUR_LEVEL;
        private final Map<Integer, Map<PageSize, Long>> hugePages = new LinkedHashMap<>();
        private final Set<Regression> regressions = EnumSet.noneOf(Regression.class);
        private TlbConfig tlb = TlbConfig.DEFAULT;
        private boolean detectStale;
        private boolean checkInvariants;
        private ThpMode thp = ThpMode.MADVISE;
        private long swapBytes;

        Builder() {
        }

        /**
         * Adds a NUMA node of {@code bytes} (a positive multiple of 1 GiB up to 4 PiB); nodes are
         * numbered in the order they are added.
         *
         * @param bytes the size in bytes
         * @return this builder
         */
        public Builder node(long bytes) {
            if (bytes <= 0 || (bytes & ((1L << 30) - 1)) != 0 || bytes > (1L << 52)) {
                throw new InvalidArgumentException("nodeBytes", bytes, "must be a positive multiple of 1 GiB, at most 4 PiB");
            }
            nodes.add(bytes);
            return this;
        }

        /**
         * Sets the number of CPUs (1 to 1024).
         *
         * @param count how many pages
         * @return this builder
         */
        public Builder cpus(int count) {
            if (count < 1 || count > 1024) {
                throw new InvalidArgumentException("cpus", count, "must be between 1 and 1024");
            }
            cpus = count;
            return this;
        }

        /**
         * Selects 4-level or 5-level (LA57) paging.
         *
         * @param mode the paging mode
         * @return this builder
         */
        public Builder pagingMode(PagingMode mode) {
            if (mode == null) {
                throw new InvalidArgumentException("pagingMode", null, "must not be null");
            }
            pagingMode = mode;
            return this;
        }

        /**
         * Preallocates {@code count} huge pages of {@code size} (2 MiB or 1 GiB) on {@code node}
         * (nr_hugepages); the node must have been added already.
         *
         * @param node the NUMA node
         * @param size the page size
         * @param count how many pages
         * @return this builder
         */
        public Builder hugePages(int node, PageSize size, long count) {
            if (node < 0 || node >= nodes.size()) {
                throw new InvalidArgumentException("node", node, "must be a node added before (0.." + (nodes.size() - 1) + ")");
            }
            if (size == null || size == PageSize.SIZE_4K) {
                throw new InvalidArgumentException("size", size, "must be SIZE_2M or SIZE_1G");
            }
            if (count < 0) {
                throw new InvalidArgumentException("count", count, "must not be negative");
            }
            hugePages.computeIfAbsent(node, n -> new LinkedHashMap<>()).put(size, count);
            return this;
        }

        /**
         * Switches a historical kernel behaviour on.
         *
         * @param regression the historical behaviour
         * @return this builder
         */
        public Builder enable(Regression regression) {
            if (regression == null) {
                throw new InvalidArgumentException("regression", null, "must not be null");
            }
            regressions.add(regression);
            return this;
        }

        /**
         * Sets the TLB geometry of every CPU.
         *
         * @param config entries and ways of each TLB array and paging-structure cache ({@link TlbConfig#DEFAULT} if never set)
         * @return this builder
         */
        public Builder tlb(TlbConfig config) {
            if (config == null) {
                throw new InvalidArgumentException("tlb", null, "must not be null");
            }
            tlb = config;
            return this;
        }

        /**
         * Switches the stale-translation detector on or off (off by default): every TLB hit,
         * every walk a CPU starts from a paging-structure-cache entry and every secondary-MMU
         * check is compared with the page tables, for the frame and for the permissions
         * ({@link StaleAccess.Kind}).
         *
         * @param on whether to switch it on
         * @return this builder
         */
        public Builder detectStaleTranslations(boolean on) {
            detectStale = on;
            return this;
        }

        /**
         * Runs {@link Machine#checkInvariants()} after every operation (mmap, munmap, mprotect,
         * fork, exit, fault, migration) and throws {@link InvariantViolationException} on the first
         * inconsistency. Off by default: the check reads every page table. The check needs a quiet
         * machine: an operation that ends while others (on other threads) are in progress leaves it
         * to a later one rather than wait for them.
         *
         * @param on whether to switch it on
         * @return this builder
         */
        public Builder checkInvariantsAfterEveryOperation(boolean on) {
            checkInvariants = on;
            return this;
        }

        /**
         * Sets when anonymous memory gets transparent huge pages
         * (/sys/kernel/mm/transparent_hugepage/enabled); {@link ThpMode#MADVISE} if never set.
         *
         * @param mode always, madvise or never
         * @return this builder
         */
        public Builder thp(ThpMode mode) {
            if (mode == null) {
                throw new InvalidArgumentException("thp", null, "must not be null");
            }
            thp = mode;
            return this;
        }

        /**
         * Gives the machine a swap device of {@code bytes} (a multiple of 4 KiB, at most 16 TiB;
         * 0, the default, for none). As in Linux its first slot is the header, so it holds
         * {@code bytes / 4096 - 1} pages. Its contents live off-heap and grow with what is written.
         *
         * @param bytes the device size in bytes
         * @return this builder
         */
        public Builder swap(long bytes) {
            if (bytes < 0 || (bytes & 0xFFF) != 0 || bytes > (1L << 44)) {
                throw new InvalidArgumentException("swapBytes", bytes, "must be a non-negative multiple of 4 KiB, at most 16 TiB");
            }
            swapBytes = bytes;
            return this;
        }

        /**
         * The configuration as it stands; one 1 GiB node if none was added.
         *
         * @return the configuration as it stands
         */
        public MachineConfig config() {
            List<Long> n = nodes.isEmpty() ? List.of(1L << 30) : nodes;
            return new MachineConfig(n, cpus, pagingMode, hugePages, regressions, tlb, detectStale, checkInvariants, thp,
                    swapBytes);
        }

        /**
         * Builds the machine.
         *
         * @return the machine
         * @throws OutOfMemoryException  if the huge pages do not fit on their nodes
         * @throws IllegalStateException if no implementation (vmcore-impl) is on the path
         */
        public Machine build() {
            MachineConfig config = config();
            for (var e : config.hugePages().entrySet()) {
                long bytes = 0;
                for (var s : e.getValue().entrySet()) {
                    bytes += s.getKey().bytes() * s.getValue();
                }
                if (bytes > config.nodeBytes().get(e.getKey())) {
                    throw new OutOfMemoryException("node " + e.getKey() + " has " + config.nodeBytes().get(e.getKey())
                            + " bytes, fewer than the " + bytes + " bytes of huge pages asked for");
                }
            }
            MachineProvider provider = ServiceLoader.load(MachineProvider.class).findFirst()
                    .orElseThrow(() -> new IllegalStateException("no " + MachineProvider.class.getName() + " found: add vmcore-impl"));
            return provider.create(config);
        }
    }
}
