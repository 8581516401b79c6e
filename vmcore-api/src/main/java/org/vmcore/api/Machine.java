package org.vmcore.api;

import java.nio.ByteBuffer;
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
public interface Machine extends AutoCloseable {
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
     * Every {@link VmstatCounter} by its /proc/vmstat name, in that enum's order: pgfault,
     * pgmigrate_success, pgmigrate_fail, hugetlb_migrate_success, hugetlb_migrate_fail,
     * nr_tlb_remote_flush, nr_tlb_remote_flush_received, nr_tlb_local_flush_all,
     * nr_tlb_local_flush_one, stale_translation_uses (the hugetlb and stale ones are vmcore's
     * own). The same values as {@link #vmstatSnapshot()}, counted since the machine started or
     * since the last {@link #resetVmstat()}.
     *
     * @return counters named as in /proc/vmstat
     */
    Map<String, Long> vmstat();

    /**
     * Every {@link VmstatCounter} now, as an immutable value; {@link VmstatSnapshot#minus} of two
     * gives the counts of an interval.
     *
     * @return the counters since the machine started or since the last {@link #resetVmstat()}
     */
    VmstatSnapshot vmstatSnapshot();

    /**
     * Starts every {@link VmstatCounter} from zero again, as {@link #vmstat()}, {@link #vmstatSnapshot()}
     * and {@link #stats()} report them. Nothing else is reset: each CPU's {@link Cpu#stats()}, each
     * address space's {@link AddressSpace#counters()} (its minor and major faults included),
     * {@link #staleAccesses()} and {@link #staleAccessCount()}, {@link #allocationCount} and the
     * meminfo values, which are levels rather than event counts, keep theirs.
     */
    void resetVmstat();

    /**
     * A snapshot of the page that holds frame {@code pfn}. Any frame of a 2 MiB or 1 GiB page
     * reports that page (its head pfn, size, mapcount and refcount), as /proc/kpagecount and
     * /proc/kpageflags do for each 4 KiB frame of it. A free frame reports as a 4 KiB page with
     * flags {@link PageFlag#BUDDY} alone, refcount and mapcount 0.
     *
     * @param pfn any page frame number
     * @return a snapshot of the page that holds frame {@code pfn}
     * @throws InvalidArgumentException if pfn is outside memory
     */
    Page page(long pfn);

    /**
     * Reads {@code width} (1, 2, 4 or 8) bytes of simulated physical memory at {@code pa}, as a
     * device doing DMA would.
     *
     * @param pa the physical address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @return the value read, zero-extended
     * @throws InvalidArgumentException if the width is wrong or the bytes are outside memory
     */
    long readPhysical(long pa, int width);

    /**
     * Copies {@code length} bytes of simulated physical memory from {@code pa} into
     * {@code dst[offset..offset + length)}, as a DMA read would; frames never written read as zeros.
     *
     * @param pa     the physical address of the first byte; the range may cross frames
     * @param dst    the array to fill
     * @param offset the index in {@code dst} of the first byte
     * @param length the number of bytes
     * @throws InvalidArgumentException if dst is null, the slice is outside it, or the bytes are
     *                                  outside memory (then dst is unchanged)
     */
    void readPhysical(long pa, byte[] dst, int offset, int length);

    /**
     * Fills the {@link ByteBuffer#remaining()} bytes of {@code dst} from physical address
     * {@code pa} and advances its position past them; see {@link #readPhysical(long, byte[], int, int)}.
     *
     * @param pa  the physical address of the first byte
     * @param dst a writable buffer, heap or direct
     * @throws InvalidArgumentException if dst is null or read-only, or the bytes are outside
     *                                  memory (then dst and its position are unchanged)
     */
    void readPhysical(long pa, ByteBuffer dst);

    /**
     * Writes the low {@code width} bytes of {@code value} at physical address {@code pa}; see {@link #readPhysical}.
     *
     * @param pa the physical address
     * @param width the access width in bytes: 1, 2, 4 or 8
     * @param value the value to store
     */
    void writePhysical(long pa, int width, long value);

    /**
     * Frames free in the buddy allocators of all nodes.
     *
     * @return frames free in the buddy allocators of all nodes
     */
    long freeFrames();

    /**
     * Host memory taken off-heap right now, in bytes.
     *
     * @return host memory taken off-heap right now, in bytes
     */
    long offHeapBytes();

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
     * What the stale-translation detector has seen so far (empty when the detector is off), in
     * the order it happened.
     *
     * @return what the stale-translation detector has seen so far (empty when the detector is off), in the order it happened
     */
    List<StaleAccess> staleAccesses();

    /**
     * A Graphviz DOT picture of the page tables of {@code addressSpaces} over {@code [start, end)}:
     * tables, pages, leaf and migration entries, a shared PMD table as one node with an edge from
     * each sharer, and with {@code withTlbs} every CPU's cached translations (stale ones in red).
     * Render it with {@code dot -Tsvg}.
     *
     * @param addressSpaces the address spaces to draw
     * @param start the first address
     * @param end the address after the range
     * @param withTlbs whether to draw the CPUs' TLB entries
     * @return a Graphviz DOT picture of the page tables of {@code addressSpaces} over {@code [start, end)}
     */
    String pageTableDot(List<AddressSpace> addressSpaces, long start, long end, boolean withTlbs);

    /**
     * The vmstat-like and meminfo-like counters.
     *
     * @return the vmstat-like and meminfo-like counters
     */
    MachineStats stats();

    /**
     * How many stale uses the detector has seen (it keeps only the first 10,000 in {@link #staleAccesses()}).
     *
     * @return how many stale uses the detector has seen (it keeps only the first 10,000 in {@link #staleAccesses()})
     */
    long staleAccessCount();

    /** Forgets the stale accesses recorded so far. */
    void clearStaleAccesses();

    /**
     * For secondary MMUs: checks that {@code addressSpace} still maps {@code va} to the page
     * headed by {@code pfn} and, for a store, that its page tables allow writing there. With the
     * detector on, a mismatch outside any open invalidation of that address (and outside a TLB
     * flush the address space is still owed) is recorded as a {@link StaleAccess} by
     * {@code who}, of kind {@link StaleAccess.Kind#FRAME} or {@link StaleAccess.Kind#PERMISSION}.
     *
     * @param who who used the translation: "cpuN" or a secondary MMU's name
     * @param addressSpace the address space
     * @param va the virtual address
     * @param pfn the head page frame number
     * @param write whether the use was a store
     * @return whether the translation is current and, for a store, allows it
     */
    boolean checkTranslation(String who, AddressSpace addressSpace, long va, long pfn, boolean write);

    /**
     * Recounts everything from the page tables and compares it with what the engine keeps:
     * mapcounts (a shared PMD table counts once), refcounts (mappings plus page cache), PMD-table
     * share counts, leaf targets, VMA coverage and permissions, free lists, per-address-space
     * counters, pool reservations, and TLB contents.
     *
     * @return one line per violated rule naming the objects involved; empty when consistent
     */
    List<String> checkInvariants();

    /**
     * Fault injection: the {@code nth} allocation of {@code kind} from now on fails once, as if
     * memory had run out (1 is the next one). Operations then fail with
     * {@link OutOfMemoryException} (or -ENOMEM for migration) and leave no trace.
     *
     * @param kind the kind of allocation
     * @param nth which allocation fails: 1 is the next one
     */
    void failNthAllocation(AllocationKind kind, long nth);

    /**
     * Like {@link #failNthAllocation} but {@code times} allocations in a row fail, enough to
     * defeat the fallback to other nodes.
     *
     * @param kind the kind of allocation
     * @param nth which allocation fails: 1 is the next one
     * @param times how many allocations in a row fail
     */
    void failNthAllocation(AllocationKind kind, long nth, int times);

    /**
     * Allocations of {@code kind} attempted so far, failed ones included.
     *
     * @param kind the kind of allocation
     * @return allocations of {@code kind} attempted so far, failed ones included
     */
    long allocationCount(AllocationKind kind);

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
     * no huge pages, no regressions, {@link TlbConfig#DEFAULT}, no stale-translation detector.
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
         * inconsistency. Off by default: the check reads every page table.
         *
         * @param on whether to switch it on
         * @return this builder
         */
        public Builder checkInvariantsAfterEveryOperation(boolean on) {
            checkInvariants = on;
            return this;
        }

        /**
         * The configuration as it stands; one 1 GiB node if none was added.
         *
         * @return the configuration as it stands
         */
        public MachineConfig config() {
            List<Long> n = nodes.isEmpty() ? List.of(1L << 30) : nodes;
            return new MachineConfig(n, cpus, pagingMode, hugePages, regressions, tlb, detectStale, checkInvariants);
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
