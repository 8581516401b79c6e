/**
 * The generic mm: {@link org.vmcore.impl.SimMachine} builds the mechanisms of the sub-packages
 * bottom up and keeps the public {@code Machine} calls.
 *
 * <h2>Lock ordering in vmcore</h2>
 *
 * <p>In the manner of the header of Linux's mm/rmap.c: every lock and monitor of vmcore-impl and
 * vmcore-x86, indented under the locks it may be taken inside. A thread that holds a lock takes
 * only locks drawn below it, never one above.
 *
 * <pre>
 * machine lock ({@link org.vmcore.impl.base.MachineLock}'s monitor; stands in for mmap_lock,
 *   |            i_mmap_rwsem, the anon_vma locks and the page-table locks: 0.1 has one lock)
 *   +-- page table (RawPageTable's monitor: mm-&gt;page_table_lock, structure changes only)
 *   |     +-- page-table frames (PageTableFrames' monitor: claiming a node's page-table window)
 *   |     |     +-- buddy allocator (BuddyAllocator's monitor, one per node)
 *   |     |     +-- frame contents (DirectMap's monitor: adopting the window's pages)
 *   |     |     +-- off-heap arena (OffHeap's monitor)
 *   |     +-- page-table window (PageTableWindow's monitor, one per node; taken after the
 *   |     |     page-table frames' monitor is released, never inside it)
 *   |     +-- buddy allocator
 *   |     +-- frame contents, frame descriptors (DirectMap's, MemMap's monitors: materialising a page of
 *   |           contents or a section of descriptors; leaves)
 *   +-- hugetlb pool (HugePagePool's monitor, one per page size)
 *   |     +-- buddy allocator, frame contents, frame descriptors, allocation faults
 *   +-- CPU flushers (CpuHandshake's ReentrantLock, one per CPU: serialises the flushes sent to
 *   |     |           it), then the wait for the CPU to leave its access
 *   |     +-- TLB (Tlb has no lock: the flush runs on the flusher's thread inside the handshake)
 *   +-- stale detector (StaleDetector's monitor; a leaf)
 *   +-- allocation faults (AllocationFaults' monitor; a leaf, counters atomic)
 * </pre>
 *
 * <p>Not locks, but ordered accesses other threads rely on:
 * <ul>
 *   <li>the CPU handshake ({@code cpu.CpuHandshake}): {@code busy} and {@code waiters}, a Dekker
 *       pair of volatile accesses, the ordering in each accessor's name;
 *   <li>page-table entries ({@code x86.internal.TableMemory}): single atomic word loads, stores
 *       and compare-and-sets, so a walker on a CPU thread reads and sets A/D bits without a lock;
 *   <li>the CPU's CR3 ({@code SimCpu.current}, volatile): changed only inside the handshake;
 *   <li>an mm's cpumask ({@code vma.MmStruct}, an atomic array): set by {@code switchTo} before
 *       any entry can be cached, read by flushers;
 *   <li>a notifier chain's open ranges ({@code notifier.NotifierChain}, a volatile array
 *       replaced whole): read by the stale detector on CPU threads;
 *   <li>an mm's {@code tlb_flush_pending} ({@code vma.MmStruct}, volatile): written under the
 *       machine lock before the entries change and after their flush, read by the stale
 *       detector on CPU threads;
 *   <li>the migrating thread ({@code base.MigratingThread}) and the machine's closed flag
 *       ({@code MachineLock}): volatile, written under the machine lock, read without it by
 *       quick checks;
 *   <li>the page-table window list and the frame-contents and descriptor sections: published with
 *       release stores, read with acquire loads (or volatile) on the walk and access paths;
 *   <li>counters read by statistics from other threads: {@code AtomicLong} (flush counters of a
 *       CPU, migration counters, page-table frames).
 * </ul>
 *
 * <h2>Which thread may touch what</h2>
 *
 * <ul>
 *   <li><b>An operation's thread</b> (any caller of Machine, AddressSpace, HugetlbFs, the rmap
 *       walker or migration) holds the machine lock for the whole operation, or for each page of
 *       a migration; it may touch every structure of the generic mm: VMA trees, the mapping
 *       registry, page caches, frame descriptors, reservations, counters, the callback-failure
 *       record. Every helper documented as "the caller holds the machine lock" asserts it
 *       ({@code assert lock.isHeldByCurrentThread()}; tests run with assertions on).
 *   <li><b>A CPU's thread</b> (the one driving a {@code Cpu}, one at a time) touches without the
 *       machine lock only: its own TLB and counters, page-table entries through the walker (A/D
 *       bits by compare-and-set), frame contents, the stale detector. It takes the machine lock
 *       only to fault or to switch CR3, and never while it is busy in the handshake: the access
 *       path steps out of the handshake first, since a flusher that holds the machine lock waits
 *       for the CPU to leave.
 *   <li><b>A flusher</b> (an operation's thread in the TLB shootdown, or an inspection such as
 *       {@code tlbEntries}) touches another CPU's TLB only through {@code runFlush}, once that CPU
 *       is out of its access.
 * </ul>
 */
package org.vmcore.impl;
