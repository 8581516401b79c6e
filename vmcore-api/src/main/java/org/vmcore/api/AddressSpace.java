package org.vmcore.api;

import java.util.List;
import java.util.Optional;

/**
 * A process's memory: the kernel's {@code mm_struct}. Its VMAs are kept in address order; its
 * page tables are real x86-64 tables in the machine's memory.
 *
 * <p>Addresses are user-half canonical virtual addresses. Every method validates its input and
 * throws {@link InvalidArgumentException} (naming the value and the rule) without changing
 * anything; after {@link #close()} every method throws {@link ClosedException}.
 */
public interface AddressSpace extends AutoCloseable {
    /** A small number unique on the machine (like a pid). */
    int id();

    /** The NUMA node this address space allocates from first. */
    int homeNode();

    /**
     * Maps anonymous memory: {@code flags} must contain {@link MapFlags#MAP_ANONYMOUS} and one of
     * MAP_SHARED or MAP_PRIVATE, and may add MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE and
     * MAP_LOCKED. With neither fixed flag, {@code address} is a hint (0 for none).
     *
     * @return the start of the mapping
     * @throws OutOfMemoryException if MAP_POPULATE cannot get memory (nothing stays mapped)
     */
    long mmap(long address, long length, Protection prot, int flags);

    /**
     * Maps {@code length} bytes of a hugetlbfs file from byte {@code offset} (a multiple of its
     * page size); {@code length} and a fixed {@code address} must be multiples of it too.
     * MAP_SHARED mappings reserve the file's pages that are not yet in its page cache;
     * MAP_PRIVATE mappings reserve one page per huge page of the mapping.
     *
     * @throws OutOfMemoryException if the pool cannot cover the reservation
     */
    long mmap(HugetlbFile file, long offset, long address, long length, Protection prot, int flags);

    /** Unmaps {@code [address, address + length)}: splits VMAs, frees pages and tables. */
    void munmap(long address, long length);

    /** Changes the protection of {@code [address, address + length)}, which must be fully mapped. */
    void mprotect(long address, long length, Protection prot);

    /**
     * A child with a copy of this address space: private anonymous pages become copy-on-write in
     * both; shared mappings are not copied (the child maps them on fault).
     */
    AddressSpace fork();

    /**
     * Handles a page fault at {@code va} for {@code access}, as the kernel's
     * handle_mm_fault does.
     *
     * @throws SegmentationFaultException if no VMA covers va or its protection forbids the access
     * @throws OutOfMemoryException       if no page or table could be allocated
     */
    FaultResult fault(long va, Access access);

    /** The VMA containing {@code va}. */
    Optional<Vma> findVma(long va);

    /** Every VMA, in address order. */
    List<Vma> vmas();

    /**
     * The physical address {@code va} translates to through the page tables (a software walk, no
     * TLB, no permission check, no A/D update), or -1 when nothing present maps it.
     */
    long translate(long va);

    /** The head PFN of the page mapping {@code va}, or -1 when nothing present maps it. */
    long pageAt(long va);

    /** RSS, page-table and VMA counters. */
    MmCounters counters();

    /** The page tables in the kernel's page-table dump format. */
    String dumpPageTables();

    /** Whether {@link #close()} was called. */
    boolean isClosed();

    /** Exit: unmaps everything and frees the page tables; idempotent. */
    @Override
    void close();
}
