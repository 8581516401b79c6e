package org.vmcore.impl.vma;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.PageSize;
import org.vmcore.api.PagingMode;
import org.vmcore.api.VmException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.PmdShareCount;
import org.vmcore.impl.lock.KMutex;
import org.vmcore.impl.lock.LockClass;
import org.vmcore.impl.lock.RwSem;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.notifier.NotifierChain;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The mm_struct: what every layer may know of an address space. Its identity (id, home node,
 * PCID), the cpumask of CPUs that may cache its translations, its page table, its MMU-notifier
 * chain, its RSS and hugetlb counters and its VMA tree. It holds data, not operations: mmap,
 * munmap, fork and the fault handler live in the mm package, in the address space built on it.
 *
 * <p>Layers below mm (tlb, hugetlb, rmap) see an address space only as an MmStruct, through
 * {@link VmArea#owner()}. The mmap_lock ({@link #mmapLock()}) guards the VMA tree: faults and
 * queries hold it for read, mmap, munmap, mprotect, fork and exit for write. The counters are
 * atomic (Linux keeps them per CPU), since faults of one address space run in parallel; the
 * cpumask is atomic, since CPUs set their bit while flushers read it.
 */
public abstract class MmStruct implements AddressSpace {
    /** Lock class of every address space's mmap_lock. */
    public static final LockClass MMAP_LOCK = LockClass.of("mmap_lock");
    /** Lock class of every address space's page_table_lock (upper-level tables and 1 GiB entries). */
    public static final LockClass PAGE_TABLE_LOCK = LockClass.of("page_table_lock");

    private final MachineLock lock;
    private final RwSem mmapLock = new RwSem(MMAP_LOCK);
    private final KMutex pageTableLock = new KMutex(PAGE_TABLE_LOCK);
    private final MachineLock.Held mmapReadHold = mmapLock::upRead;
    private final MachineLock.Held mmapWriteHold = mmapLock::upWrite;
    private final int id;
    private final int homeNode;
    private final int pcid;
    private final int cpus;
    private final AtomicLongArray cpumask;
    private final NotifierChain notifiers;
    private final RawPageTable pageTable;
    private final PmdShareCount pmdShareCount;
    private final VmaTree vmaTree;
    private final CallbackFailures failures;
    private final AtomicLong anonPages = new AtomicLong();
    private final AtomicLong shmemPages = new AtomicLong();
    private final AtomicLong hugetlbBytes = new AtomicLong();
    private final AtomicLong anonHugePages = new AtomicLong();
    // Set once a huge PMD entry (a transparent huge page or the huge zero page) was installed here:
    // until then range walks need not look for them.
    private volatile boolean mayMapHugePmds;
    private final AtomicLong swapEntries = new AtomicLong(); // MM_SWAPENTS
    // mm->tlb_flush_pending: changed by the operations that owe a flush, read by the stale detector on CPU threads.
    private final AtomicInteger tlbFlushPending = new AtomicInteger();

    protected MmStruct(MachineLock lock, int id, int homeNode, int pcid, int cpus, PhysicalMemory memory, PagingMode mode,
                       MappingRegistry registry, CallbackFailures failures, PmdShareCount pmdShareCount) {
        this.lock = lock;
        this.id = id;
        this.homeNode = homeNode;
        this.pcid = pcid;
        this.cpus = cpus;
        this.cpumask = new AtomicLongArray((cpus + 63) / 64);
        this.notifiers = new NotifierChain(lock, this, failures);
        this.pageTable = new RawPageTable(memory, mode, homeNode);
        this.pageTable.setTableFreeBarrier(lock.locklessWalkers()::sync); // no GUP-fast walk reads a freed table
        this.pmdShareCount = pmdShareCount;
        this.vmaTree = new VmaTree(lock, registry);
        this.failures = failures;
    }

    @Override
    public final int id() {
        return id;
    }

    @Override
    public final int homeNode() {
        return homeNode;
    }

    @Override
    public final int pcid() {
        return pcid;
    }

    /** The lock of the machine this address space belongs to (also its identity: see {@link #belongsTo}). */
    public final MachineLock lock() {
        return lock;
    }

    /** mmap_lock: read for faults and queries, write for changes of the VMA tree. */
    public final RwSem mmapLock() {
        return mmapLock;
    }

    /** mm->page_table_lock: guards a VMA's anon_vma setup (anon_vma_prepare) against a parallel fault. */
    public final KMutex pageTableLock() {
        return pageTableLock;
    }

    /**
     * The lock of the entry at {@code slot} for a leaf of {@code size} (pte_lockptr,
     * huge_pte_lockptr): the split lock of its table, or page_table_lock for a 1 GiB entry.
     */
    public final KMutex ptlOf(long slot, PageSize size) {
        return size == PageSize.SIZE_1G ? pageTableLock : lock.ptLocks().ofSlot(slot);
    }

    /**
     * mmap_read_lock, released by closing the returned hold. From inside a user callback (which
     * runs under another operation's locks) it only tries the lock: waiting there could close a
     * cycle with a thread doing the same the other way round.
     *
     * @throws VmException from a callback, when another thread holds the lock for write
     */
    public final MachineLock.Held mmapRead() {
        if (!mmapLocked() && failures.inCallback()) {
            if (!mmapLock.tryDownRead()) {
                throw busy("a read");
            }
            return mmapReadHold;
        }
        mmapLock.downRead();
        return mmapReadHold;
    }

    /**
     * mmap_write_lock, released by closing the returned hold; only tried from inside a user
     * callback, as {@link #mmapRead}.
     *
     * @param operation what needs it, for the messages
     * @throws VmException when the thread holds the lock for read only (inside a fault or a look at
     *                     this address space: the change would wait for itself), or from a
     *                     callback when another thread holds the lock
     */
    public final MachineLock.Held mmapWrite(String operation) {
        if (mmapLock.isWriteLockedByCurrentThread()) {
            mmapLock.downWrite();
            return mmapWriteHold;
        }
        if (mmapLock.isReadLockedByCurrentThread()) {
            throw new VmException(operation + " of " + this + " from inside a fault or a look at it (its mmap_lock is held"
                    + " for read on this thread): the change would wait for itself");
        }
        if (failures.inCallback()) {
            if (!mmapLock.tryDownWrite()) {
                throw busy(operation);
            }
            return mmapWriteHold;
        }
        mmapLock.downWrite();
        return mmapWriteHold;
    }

    /** mmap_write_lock for a change of the address space; see {@link #mmapWrite(String)}. */
    public final MachineLock.Held mmapWrite() {
        return mmapWrite("a change");
    }

    private VmException busy(String what) {
        return new VmException(what + " of " + this + " from inside a callback, while another thread holds its mmap_lock:"
                + " a callback does not wait for an address space's lock (it could wait for itself)");
    }

    /** Whether the current thread holds this mmap_lock, for read or write. */
    public final boolean mmapLocked() {
        return mmapLock.isWriteLockedByCurrentThread() || mmapLock.isReadLockedByCurrentThread();
    }

    /** Whether this address space was made by the machine whose lock is {@code machineLock}. */
    public final boolean belongsTo(MachineLock machineLock) {
        return lock == machineLock;
    }

    /** Where the sharers of PMD tables are counted on this machine. */
    public final PmdShareCount pmdShareCount() {
        return pmdShareCount;
    }

    /** This address space's page table. */
    public final RawPageTable pageTable() {
        return pageTable;
    }

    public final NotifierChain notifiers() {
        return notifiers;
    }

    public final VmaTree vmaTree() {
        return vmaTree;
    }

    /** The VMA containing va, or null. */
    public final VmArea vma(long va) {
        return vmaTree.find(va);
    }

    /** The VMAs, in address order (a copy). */
    public final List<VmArea> vmaAreas() {
        return new ArrayList<>(vmaTree.all());
    }

    /** Throws ClosedException if the machine is closed or this address space has exited. */
    public abstract void ensureOpen();

    // ---- cpumask ----

    @Override
    public final List<Integer> cpumask() {
        ensureOpen(); // an exited address space (or a closed machine) has no cpumask to show
        List<Integer> out = new ArrayList<>();
        for (int cpu = 0; cpu < cpus; cpu++) {
            if (cpumaskHas(cpu)) {
                out.add(cpu);
            }
        }
        return out;
    }

    public final void cpumaskSet(int cpu) {
        cpumask.getAndAccumulate(cpu >>> 6, 1L << (cpu & 63), (a, b) -> a | b);
    }

    public final boolean cpumaskHas(int cpu) {
        return (cpumask.get(cpu >>> 6) & (1L << (cpu & 63))) != 0;
    }

    // ---- tlb_flush_pending ----

    /**
     * inc_tlb_flush_pending: an operation is about to take permissions from entries and owes this
     * address space a TLB flush once it has changed them all; until the matching
     * {@link #decTlbFlushPending} a cached translation may still allow more than the tables, and
     * the stale-translation detector does not count its use. The caller holds the machine lock.
     */
    public final void incTlbFlushPending() {
        assert lock.isHeldByCurrentThread();
        tlbFlushPending.incrementAndGet();
    }

    /** dec_tlb_flush_pending: the flush {@link #incTlbFlushPending} announced is done. The caller holds the machine lock. */
    public final void decTlbFlushPending() {
        assert lock.isHeldByCurrentThread();
        int left = tlbFlushPending.decrementAndGet();
        assert left >= 0;
    }

    /** mm_tlb_flush_pending: whether an operation still owes this address space a TLB flush. Any thread. */
    public final boolean tlbFlushPending() {
        return tlbFlushPending.get() > 0;
    }

    // ---- counters (atomic: faults of one address space run in parallel) ----

    public final long anonPages() {
        return anonPages.get();
    }

    public final long shmemPages() {
        return shmemPages.get();
    }

    public final long hugetlbBytes() {
        return hugetlbBytes.get();
    }

    /** Adds to RssAnon. */
    public final void addAnonPages(long delta) {
        anonPages.addAndGet(delta);
    }

    /** AnonHugePages, in 4 KiB pages: anonymous memory mapped by huge PMD entries. */
    public final long anonHugePages() {
        return anonHugePages.get();
    }

    /** Adds to AnonHugePages (512 per PMD entry of a transparent huge page). */
    public final void addAnonHugePages(long delta) {
        anonHugePages.addAndGet(delta);
    }

    /**
     * Whether a transparent huge page may be mapped here (by a PMD entry, or by PTEs after a split
     * or a fork): until then faults and zaps need not look for them.
     */
    public final boolean mayMapHugePmds() {
        return mayMapHugePmds;
    }

    /** Called before a huge PMD entry is installed in an anonymous VMA. */
    public final void noteHugePmds() {
        if (!mayMapHugePmds) {
            mayMapHugePmds = true;
        }
    }

    /** VmSwap (MM_SWAPENTS): swap entries in this address space's tables. */
    public final long swapEntries() {
        return swapEntries.get();
    }

    /** Adds to VmSwap. */
    public final void addSwapEntries(long delta) {
        swapEntries.addAndGet(delta);
    }

    /** Adds to RssShmem. */
    public final void addShmemPages(long delta) {
        shmemPages.addAndGet(delta);
    }

    /** hugetlb_count_add (or a plain subtraction with a negative delta). */
    public final void addHugetlbBytes(long delta) {
        hugetlbBytes.addAndGet(delta);
    }

    /**
     * hugetlb_count_sub, saturating at zero: with PMD sharing only the mm that faulted a page
     * counts it, as in Linux, but the last sharer of a table may be another mm that zaps or
     * unmaps it; HugetlbPages must not go negative there.
     */
    public final void hugetlbCountSub(long bytes) {
        hugetlbBytes.accumulateAndGet(bytes, (cur, b) -> Math.max(0, cur - b));
    }

    @Override
    public String toString() {
        return "mm" + id;
    }
}
