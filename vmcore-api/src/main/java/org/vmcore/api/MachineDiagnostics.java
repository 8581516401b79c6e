package org.vmcore.api;

import java.util.List;
import java.util.Map;

/**
 * What a {@link Machine} tells about itself and lets a test do to it: /proc-style counters,
 * the stale-translation detector, the invariant checker, allocation-failure injection and
 * Graphviz pictures of page tables. Part of every {@link Machine}; a separate interface only to
 * keep the machine's own type short.
 */
public interface MachineDiagnostics {
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
     * The vmstat-like and meminfo-like counters.
     *
     * @return the vmstat-like and meminfo-like counters
     */
    MachineStats stats();

    /**
     * What the stale-translation detector has seen so far (empty when the detector is off), in
     * the order it happened.
     *
     * @return what the stale-translation detector has seen so far (empty when the detector is off), in the order it happened
     */
    List<StaleAccess> staleAccesses();

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
     * @param addressSpace the address space the device translated for
     * @param va the virtual address
     * @param pfn the head page frame number the device used
     * @param write whether the use was a store
     * @return whether the translation is current and, for a store, allows it
     */
    boolean checkTranslation(String who, AddressSpace addressSpace, long va, long pfn, boolean write);

    /**
     * A Graphviz DOT picture of the page tables of {@code addressSpaces} over {@code [start, end)}:
     * tables, pages, leaf and migration entries, a shared PMD table as one node with an edge from
     * each sharer, and with {@code withTlbs} every CPU's cached translations (stale ones in red).
     * Render it with {@code dot -Tsvg}. It runs beside other operations (it may be called from a
     * migration observer or a race hook, mid-operation): while other threads change the tables,
     * the picture is a snapshot of entries in motion.
     *
     * @param addressSpaces the address spaces to draw
     * @param start the first address
     * @param end the address after the range
     * @param withTlbs whether to draw the CPUs' TLB entries
     * @return a Graphviz DOT picture of the page tables of {@code addressSpaces} over {@code [start, end)}
     */
    String pageTableDot(List<AddressSpace> addressSpaces, long start, long end, boolean withTlbs);

    /**
     * Recounts everything from the page tables and compares it with what the engine keeps:
     * mapcounts (a shared PMD table counts once), refcounts (mappings plus page cache), PMD-table
     * share counts, leaf targets, VMA coverage and permissions, free lists, per-address-space
     * counters, pool reservations, and TLB contents. It waits until no operation is in progress
     * on any thread, and holds the next ones back while it runs.
     *
     * @return one line per violated rule naming the objects involved; empty when consistent
     * @throws IllegalStateException from inside a callback of an operation (it would wait for
     *                               that operation)
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
    default void failNthAllocation(AllocationKind kind, long nth) {
        failNthAllocation(kind, nth, 1);
    }

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
}
