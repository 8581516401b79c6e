/**
 * The generic mm: {@link org.vmcore.impl.SimMachine} builds the mechanisms of the sub-packages
 * bottom up and keeps the public {@code Machine} calls.
 *
 * <h2>Lock ordering in vmcore</h2>
 *
 * <p>In the manner of the header of Linux's mm/rmap.c: every lock and monitor of vmcore-impl and
 * vmcore-x86, indented under the locks it may be taken inside. A thread that holds a lock takes
 * only locks drawn below it, never one above. The kernel locks (named after their Linux
 * counterparts, in {@link org.vmcore.impl.lock}) are checked by the lock-order validator
 * ({@code LockDep}, on in the tests); the monitors below them are leaves by construction.
 *
 * <pre>
 * machine lock ({@link org.vmcore.impl.base.MachineLock}, a percpu_rw_semaphore: shared by every
 *   |           address-space and file operation, migration and the page-table picture;
 *   |           exclusive for RmapWalker calls, memory offline's scan and isolation, the
 *   |           invariant checker and close)
 *   +-- mmap_lock (per address space; fork takes the child's nested under the parent's)
 *   |     +-- hugetlb_fault_mutex (hashed by file and page index)
 *   |     |     +-- hugetlb_vma_lock (per hugetlb VMA: read in the fault, write to unshare)
 *   |     |           +-- i_mmap_rwsem (per file: read to share a PMD table, write to unshare,
 *   |     |                 |          to link or unlink a VMA, or to move its bounds)
 *   |     |                 +-- anon_vma (the family root's rwsem)
 *   |     |                 |     +-- page_table_lock (per address space: anon_vma_prepare, the
 *   |     |                 |                          PUD entry huge_pmd_share fills, 1 GiB leaves)
 *   |     |                 +-- ptl (split page-table lock, per table frame, hashed; sharers of a
 *   |     |                       PMD table share it)
 *   |     |                       +-- CPU flushers (the shootdown of a COW fault)
 *   |     +-- anon_vma, page_table_lock, ptl (the anonymous fault, as above)
 *   |     +-- folio lock (munmap's shmem teardown, after i_mmap_rwsem is released)
 *   +-- folio lock (PG_locked, {@link org.vmcore.impl.base.FolioLock}: migration holds the old
 *   |     |        and the new page's from isolation to remap; a fault takes a page-cache page's
 *   |     |        under its ptl by trylock only, and waits for it with nothing held)
 *   |     +-- hugetlb_vma_lock, i_mmap_rwsem (a hugetlb page-cache page's walk: both only
 *   |     |     |                            tried, for write: hugetlb ranks them above it)
 *   |     |     +-- ptl
 *   |     +-- i_mmap_rwsem or anon_vma (read: the rmap walks of try_to_migrate and
 *   |           +-- ptl                 remove_migration_ptes, and of reclaim's
 *   |                                   folio_referenced and try_to_unmap; notifiers are
 *   |                                   called between them, with only the folio lock held)
 *   +-- i_mmap_rwsem (truncate, with no mmap_lock: a VMA lock only by trylock below it; the
 *         |            VMAs it could not lock are done afterwards in the order above)
 *   +-- hugetlb_fault_mutex (truncate's page-cache removal, after i_mmap_rwsem is released)
 *         +-- folio lock (remove_inode_single_folio: only tried; a page a migration holds is
 *                         waited for with the mutex dropped, as that migration's callbacks
 *                         may fault it)
 *
 * leaves and near-leaves, taken under any of the above:
 *   resv_map (HugetlbFileImpl.reservedIndexes' monitor)
 *     +-- hugetlb pool (HugePagePool's monitor), page cache (FileMapping's monitor)
 *   page cache (FileMapping's monitor: the xarray's i_pages lock)
 *   hugetlbfs directory (HugetlbFsImpl's monitor), mapping registry, address-space table
 *   page table (RawPageTable's monitor: table allocation and freeing, not entries)
 *     +-- page-table frames (PageTableFrames' monitor: claiming a node's page-table window)
 *     |     +-- buddy allocator, frame contents, off-heap arena
 *     +-- page-table window (PageTableWindow's monitor, one per node)
 *     +-- buddy allocator, frame contents, frame descriptors
 *   hugetlb pool (HugePagePool's monitor) +-- buddy allocator, frame contents, descriptors
 *   CPU flushers (CpuHandshake's ReentrantLock, one per CPU), then the wait for the CPU to leave
 *   lockless walkers (LocklessWalkers' monitor: the GUP-fast barrier), speculative references,
 *   notifier open ranges (NotifierChain's monitor), stale detector, allocation faults
 *   swap device (SwapDevice's monitor: swap_map words, free slots and the swap cache; taken
 *     under a ptl by swap_duplicate and swap_free, whose folio lock is only tried)
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
 *   <li>an mm's {@code tlb_flush_pending} ({@code vma.MmStruct}, atomic): raised before the
 *       entries change and dropped after their flush, read by the stale detector on CPU threads;
 *   <li>the migrating threads ({@code base.MigratingThread}): per thread, behind an atomic
 *       count that keeps the question at one read while nobody migrates;
 *   <li>the machine's closed flag ({@code MachineLock}): volatile, written under the machine
 *       lock held exclusive, read without it by quick checks;
 *   <li>a page's flags, refcount and mapcount ({@code x86.internal.MemMap}): atomic, since
 *       faults, zaps and migrations of different address spaces meet on shared pages;
 *   <li>a VMA's bounds and protection ({@code vma.VmArea}): volatile, written under the rmap
 *       locks held for write (and the mmap_lock), read by rmap walkers of other address spaces
 *       under the rmap lock for read; {@code detached} is set before a VMA leaves the rmap;
 *   <li>an mm's RSS and fault counters ({@code vma.MmStruct}, {@code mm.FaultCounts}): atomic,
 *       since faults of one address space run in parallel;
 *   <li>a hugetlb file's size and unlinked flags: volatile, written under i_mmap_rwsem;
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
 *       walker or migration) holds the machine lock for the whole operation, shared or
 *       exclusive (see above), and under a shared hold the kernel locks that guard what it
 *       touches: its address space's VMA tree under the mmap_lock, entries under their table's
 *       lock (every path that changes an entry: faults, zap, mprotect, fork, migration), a
 *       file's i_mmap tree under i_mmap_rwsem. Helpers that need a lock assert it.
 *       What a thread collects from user callbacks ({@code notifier.CallbackFailures}) and the
 *       closes they ask for are kept per thread.
 *   <li><b>A CPU's thread</b> (the one driving a {@code Cpu}, one at a time) touches without
 *       locks only: its own TLB and counters, page-table entries through the walker (A/D bits by
 *       compare-and-set), frame contents, the stale detector. It takes locks only to fault or to
 *       switch CR3, and never while it is busy in the handshake: the access path steps out of the
 *       handshake first, since a flusher that holds locks waits for the CPU to leave.
 *   <li><b>A flusher</b> (an operation's thread in the TLB shootdown, or an inspection such as
 *       {@code tlbEntries}) touches another CPU's TLB only through {@code runFlush}, once that CPU
 *       is out of its access.
 * </ul>
 */
package org.vmcore.impl;
