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
 *
 * <p>An operation that flushes TLBs (munmap, mprotect, fork, a copy-on-write fault, {@link
 * #flushTlb}) is initiated by a CPU: the one given by {@link Cpu#run} or {@link Cpu#call}, else
 * the CPU the calling thread last drove through {@link Cpu#switchTo} or an access. That CPU
 * flushes itself locally and sends shootdowns to the other CPUs of the {@link #cpumask()}.
 */
public interface AddressSpace extends AutoCloseable {
    /**
     * A small number unique on the machine (like a pid).
     *
     * @return a small number unique on the machine (like a pid)
     */
    int id();

    /**
     * The NUMA node this address space allocates from first.
     *
     * @return the NUMA node this address space allocates from first
     */
    int homeNode();

    /**
     * Maps anonymous memory: {@code flags} must contain {@link MapFlags#MAP_ANONYMOUS} and one of
     * MAP_SHARED or MAP_PRIVATE, and may add MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_POPULATE and
     * MAP_LOCKED. With neither fixed flag, {@code address} is a hint (0 for none).
     *
     * @param address where to map: the exact start with MAP_FIXED or MAP_FIXED_NOREPLACE (4 KiB
     *                aligned), else a hint, 0 for none
     * @param length the length in bytes, rounded up to 4 KiB
     * @param prot what the mapping allows (PROT_READ, PROT_WRITE, PROT_EXEC)
     * @param flags {@link MapFlags} values ORed together, as for mmap(2)
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
     * @param file the hugetlbfs file of this machine to map
     * @param offset the byte offset in the file, a multiple of its page size
     * @param address where to map: the exact start with MAP_FIXED or MAP_FIXED_NOREPLACE, else a
     *                hint, 0 for none
     * @param length the length in bytes, a multiple of the file's page size
     * @param prot what the mapping allows (PROT_READ, PROT_WRITE, PROT_EXEC)
     * @param flags {@link MapFlags} values: MAP_SHARED or MAP_PRIVATE, with the fixed flags,
     *              MAP_POPULATE or MAP_LOCKED
     * @return the start of the mapping
     * @throws OutOfMemoryException if the pool cannot cover the reservation
     */
    long mmap(HugetlbFile file, long offset, long address, long length, Protection prot, int flags);

    /**
     * Unmaps {@code [address, address + length)}: splits VMAs, frees pages and tables.
     *
     * @param address the virtual address
     * @param length the length in bytes
     */
    void munmap(long address, long length);

    /**
     * Changes the protection of {@code [address, address + length)}, which must be fully mapped.
     *
     * @param address the virtual address
     * @param length the length in bytes
     * @param prot the protection
     */
    void mprotect(long address, long length, Protection prot);

    /**
     * madvise(2): gives {@code advice} about {@code [address, address + length)} (the length is
     * rounded up to whole pages). As in Linux the advice goes to each VMA of the range in turn:
     * a hole in the range, or a VMA the advice does not apply to, is reported by the return value
     * after the VMAs before it were advised.
     *
     * @param address the start, 4 KiB aligned
     * @param length the length in bytes; 0 does nothing
     * @param advice what to do
     * @return 0; -ENOMEM ({@link Errno#ENOMEM}) when part of the range is not mapped (the mapped
     *         parts were advised); -EINVAL when the walk met a VMA the advice refuses (an mlocked
     *         VMA, a hugetlb range not starting on a huge page; the VMAs before it were advised)
     * @throws InvalidArgumentException if {@code address} is not aligned or not in user space,
     *                                  {@code length} is negative or reaches past user space, or
     *                                  {@code advice} is null; nothing changes then
     */
    int madvise(long address, long length, Advice advice);

    /**
     * mremap(2): shrinks the mapping at {@code oldAddress} (the tail is unmapped), grows it in
     * place if the address space after it is free, or else, with {@link MapFlags#MREMAP_MAYMOVE},
     * moves it (with {@link MapFlags#MREMAP_FIXED} to {@code newAddress}, replacing what was
     * there). A move carries the pages, not copies: their entries move, whole PTE tables where old
     * and new address are 2 MiB aligned, as move_page_tables does; the old range is unmapped. A
     * hugetlb mapping works in whole huge pages, never grows, and has its shared PMD windows
     * unshared before it moves. Lengths round up to whole pages.
     *
     * @param oldAddress the start of the range to remap, 4 KiB aligned (a huge page for hugetlb)
     * @param oldLength its length, inside one VMA
     * @param newLength the new length, positive
     * @param flags 0, {@code MREMAP_MAYMOVE}, or {@code MREMAP_MAYMOVE | MREMAP_FIXED}
     * @param newAddress with {@code MREMAP_FIXED}, where the mapping goes (aligned, not
     *                   overlapping the old range); otherwise ignored
     * @return the address of the mapping now
     * @throws InvalidArgumentException for bad arguments (-EINVAL), a range that is not inside one
     *                                  VMA (-EFAULT), or a mapping that can neither grow nor move
     *                                  (-ENOMEM); nothing changes then
     */
    long mremap(long oldAddress, long oldLength, long newLength, int flags, long newAddress);

    /**
     * A child with a copy of this address space: private anonymous pages become copy-on-write in
     * both; shared mappings are not copied (the child maps them on fault).
     *
     * @return a child with a copy of this address space
     */
    AddressSpace fork();

    /**
     * Handles a page fault at {@code va} for {@code access}, as the kernel's
     * handle_mm_fault does.
     *
     * @param va the virtual address
     * @param access the kind of access
     * @return how the fault was resolved
     * @throws SegmentationFaultException if no VMA covers va or its protection forbids the access
     * @throws OutOfMemoryException       if no page or table could be allocated
     */
    FaultResult fault(long va, Access access);

    /**
     * The VMA containing {@code va}.
     *
     * @param va the virtual address
     * @return the VMA containing {@code va}
     */
    Optional<Vma> findVma(long va);

    /**
     * Every VMA, in address order.
     *
     * @return every VMA, in address order
     */
    List<Vma> vmas();

    /**
     * The physical address {@code va} translates to through the page tables (a software walk, no
     * TLB, no permission check, no A/D update), or -1 when nothing present maps it.
     *
     * @param va the virtual address
     * @return the physical address {@code va} translates to through the page tables (a software walk, no TLB, no permission check, no A/D update), or -1 when nothing present maps it
     */
    long translate(long va);

    /**
     * The head PFN of the page mapping {@code va}, or -1 when nothing present maps it.
     *
     * @param va the virtual address
     * @return the head PFN of the page mapping {@code va}, or -1 when nothing present maps it
     */
    long pageAt(long va);

    /**
     * get_user_pages_fast for one page: a lockless walk of the page tables, as a device driver
     * pins a user buffer for DMA, that takes a reference on the page mapping {@code va} and
     * returns it, or returns null where Linux would fall back to the slow path (nothing present
     * there, not a user page, or not writable for a write). No fault is taken and no lock of
     * the address space is held: the walk is guarded only by the barrier unsharing a PMD table
     * waits on ({@link RacePoint#GUP_FAST_AFTER_PUD}). Close the reference to drop it.
     *
     * @param va the virtual address, canonical
     * @param write whether the caller will write the page (FOLL_WRITE)
     * @return a reference on the page ({@link PageReference#pfn()} is its head frame), or null
     * @throws InvalidArgumentException if {@code va} is not canonical
     */
    PageReference getUserPageFast(long va, boolean write);

    /**
     * RSS, page-table and VMA counters.
     *
     * @return RSS, page-table and VMA counters
     */
    MmCounters counters();

    /**
     * A read-only view of this address space's page tables: walks, single entries at any level,
     * and an allocation-free iteration over the leaf entries of a range.
     *
     * @return the view; it stays valid until the address space exits
     */
    PageTableView pageTableView();

    /**
     * The page tables in the kernel's page-table dump format.
     *
     * @return the page tables in the kernel's page-table dump format
     */
    String dumpPageTables();

    /**
     * CR3 without the PCID: the physical address of the root table (the PML4, or the PML5 with
     * 5-level paging), fixed for the address space's life. A CPU that runs it loads
     * {@code cr3() | pcid()} into CR3.
     *
     * @return the root table's physical address, 4 KiB aligned
     */
    long cr3();

    /**
     * The PCID this address space's translations are tagged with (1..4095).
     *
     * @return the PCID this address space's translations are tagged with (1..4095)
     */
    int pcid();

    /**
     * CPUs that may cache translations of this address space (mm_cpumask), ascending.
     *
     * @return CPUs that may cache translations of this address space (mm_cpumask), ascending
     */
    List<Integer> cpumask();

    /**
     * Registers a secondary MMU (mmu_notifier_register).
     *
     * @param notifier a notifier registered earlier to add; it hears this address space's invalidations until removed or exit
     * @throws InvalidArgumentException if it is null or already registered
     */
    void registerNotifier(MmuNotifier notifier);

    /**
     * Unregisters a secondary MMU; false if it was not registered.
     *
     * @param notifier the notifier
     * @return whether it was registered
     */
    boolean unregisterNotifier(MmuNotifier notifier);

    /**
     * flush_tlb_mm_range: flushes {@code [start, end)} from the TLBs of the CPUs in the cpumask,
     * one page at a time with a stride of {@code strideShift} (12, 21 or 30), or the whole
     * address space when that would take more than 33 steps; then the secondary TLBs.
     *
     * @param start the first address
     * @param end the address after the range
     * @param strideShift log2 of the flush stride: 12, 21 or 30
     */
    void flushTlb(long start, long end, int strideShift);

    /** flush_tlb_mm: flushes this address space from every CPU in its cpumask, and the secondary TLBs. */
    void flushTlb();

    /**
     * ptep_clear_flush_young_notify: clears the accessed bit of the entry mapping {@code va},
     * flushes that page from the TLBs if it was set, and asks the secondary MMUs.
     *
     * @param va the virtual address
     * @return whether the page was young in the tables or in a secondary MMU
     */
    boolean clearFlushYoung(long va);

    /**
     * ptep_clear_young_notify: like {@link #clearFlushYoung} without the TLB flush.
     *
     * @param va the virtual address
     * @return whether the page was young in the tables or in a secondary MMU
     */
    boolean clearYoung(long va);

    /**
     * mmu_notifier_test_young with the entry's own accessed bit: whether {@code va} is young.
     *
     * @param va the virtual address
     * @return whether the page is young
     */
    boolean testYoung(long va);

    /**
     * Whether {@link #close()} was called.
     *
     * @return whether {@link #close()} was called
     */
    boolean isClosed();

    /**
     * Exit: unmaps everything and frees the page tables; idempotent. It always completes: CPUs
     * running in this address space on other threads are flushed and leave it before any frame
     * is freed (their next access throws {@link ClosedException}), and if a notifier's release
     * throws, everything is freed all the same and the exception is rethrown at the end.
     */
    @Override
    void close();
}
