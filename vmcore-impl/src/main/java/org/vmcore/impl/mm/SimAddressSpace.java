package org.vmcore.impl.mm;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmCounters;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierEvent;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.Vma;
import org.vmcore.api.VmException;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.SimMachine;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.PmdSharing;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.notifier.NotifierChain;
import org.vmcore.impl.rmap.AnonVma;
import org.vmcore.impl.rmap.FileMapping;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.PageTable;
import org.vmcore.x86.pgtable.Pte;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;

/**
 * An address space (mm_struct): the VMA tree, the page tables and the counters, with mmap,
 * munmap, mprotect, fork, exit and the page-fault handler. Every public method runs under the
 * machine lock. Page-level work is in {@link PageOps}; fault handling in {@link FaultHandler}.
 */
@SuppressWarnings("try") // an Invalidation is used only for its scope: the notifier range ends with the block
public final class SimAddressSpace implements AddressSpace {
    /** Lowest address a mapping may use (vm.mmap_min_addr). */
    public static final long MMAP_MIN_ADDR = 0x10000;
    /** Where top-down placement of mappings without a fixed address starts (mmap_base). */
    public static final long MMAP_BASE = 0x7f00_0000_0000L;

    private final SimMachine machine;
    private final int id;
    private final int homeNode;
    private final int pcid;
    private final java.util.concurrent.atomic.AtomicLongArray cpumask;
    private final NotifierChain notifiers;
    private final PageTable pageTable;
    private final TreeMap<Long, VmArea> vmas = new TreeMap<>();
    private final Walker walker;
    private final WalkResult walkResult = new WalkResult();
    final PageOps pages;
    private final FaultHandler faults;
    long anonPages;
    long shmemPages;
    long hugetlbBytes;
    private long faultCount;
    private boolean closed;

    public SimAddressSpace(SimMachine machine, int id, int homeNode, int pcid) {
        this.machine = machine;
        this.id = id;
        this.homeNode = homeNode;
        this.pcid = pcid;
        this.notifiers = new NotifierChain(this, machine.callbackFailures());
        this.cpumask = new java.util.concurrent.atomic.AtomicLongArray((machine.config().cpus() + 63) / 64);
        this.pageTable = new PageTable(machine.memory(), machine.config().pagingMode(), homeNode);
        this.walker = machine.newWalker();
        this.pages = new PageOps(machine, this);
        this.faults = new FaultHandler(machine, this);
    }

    @Override
    public int id() {
        return id;
    }

    @Override
    public int homeNode() {
        return homeNode;
    }

    public PageTable pageTable() {
        return pageTable;
    }

    public SimMachine machine() {
        return machine;
    }

    // ---- mmap ----

    @Override
    public long mmap(long address, long length, Protection prot, int flags) {
        synchronized (machine.lock()) {
            ensureChangeable("mmap");
            checkMmapFlags(flags, true);
            checkProtection(prot);
            long len = checkLength(length, PageSize.SIZE_4K);
            VmaKind kind = (flags & MapFlags.MAP_SHARED) != 0 ? VmaKind.ANONYMOUS_SHARED : VmaKind.ANONYMOUS_PRIVATE;
            long start = placement(address, len, flags, PageSize.SIZE_4K);
            try {
                replaceForFixed(start, len, flags); // first: a notifier that aborts it leaves nothing to undo
            } catch (Throwable e) {
                throw machine.operationFailed(e);
            }
            FileMapping shmem = null;
            if (kind == VmaKind.ANONYMOUS_SHARED) {
                shmem = machine.newFileMapping();
                machine.register(shmem.id(), shmem);
            }
            VmArea vma = new VmArea(this, start, start + len, prot, kind, (flags & MapFlags.MAP_LOCKED) != 0, null, shmem,
                    kind == VmaKind.ANONYMOUS_SHARED ? 0 : start >>> 12, PageSize.SIZE_4K);
            insertVma(vma);
            VmArea merged = mergeAround(vma);
            populateIfAsked(merged, start, start + len, flags);
            machine.afterOperation("mmap");
            return start;
        }
    }

    @Override
    public long mmap(HugetlbFile file, long offset, long address, long length, Protection prot, int flags) {
        synchronized (machine.lock()) {
            ensureChangeable("mmap");
            if (file == null || !machine.hugetlbfsImpl().owns(file)) {
                throw new InvalidArgumentException("file", file, "must be a file of this machine's hugetlbfs");
            }
            HugetlbFileImpl f = (HugetlbFileImpl) file;
            PageSize size = f.pageSize();
            checkMmapFlags(flags, false);
            checkProtection(prot);
            if (offset < 0 || !size.isAligned(offset)) {
                throw new InvalidArgumentException("offset", offset, "must be a non-negative multiple of " + size.label());
            }
            long len = checkLength(length, size);
            if (offset > f.size() - len) {
                throw new InvalidArgumentException("length", length, "must keep offset 0x" + Long.toHexString(offset)
                        + " + length inside the file of " + f.size() + " bytes");
            }
            long start = placement(address, len, flags, size);
            boolean shared = (flags & MapFlags.MAP_SHARED) != 0;
            HugePagePool pool = f.pool();
            long firstIndex = offset >>> size.shift();
            long count = len >>> size.shift();
            // Reserve before changing anything (hugetlb_reserve_pages), so a failure leaves no trace.
            long need = count;
            if (shared) {
                need = 0;
                for (long i = firstIndex; i < firstIndex + count; i++) {
                    if (f.mapping().find(i) < 0 && !f.reservedIndexes().contains(i)) {
                        need++;
                    }
                }
            }
            if (!pool.reserve(need)) {
                throw new OutOfMemoryException("hugetlb pool of " + size.label() + " pages cannot reserve " + need
                        + " pages (" + pool.available() + " free and unreserved)");
            }
            org.eclipse.collections.impl.list.mutable.primitive.LongArrayList added =
                    new org.eclipse.collections.impl.list.mutable.primitive.LongArrayList();
            if (shared) {
                for (long i = firstIndex; i < firstIndex + count; i++) {
                    if (f.mapping().find(i) < 0 && f.reservedIndexes().add(i)) {
                        added.add(i);
                    }
                }
            }
            try {
                replaceForFixed(start, len, flags);
            } catch (Throwable e) { // a notifier aborted the unmap: give the reservations back
                unreserve(f, pool, added, need);
                throw machine.operationFailed(e);
            }
            VmArea vma = new VmArea(this, start, start + len, prot,
                    shared ? VmaKind.HUGETLB_SHARED : VmaKind.HUGETLB_PRIVATE, (flags & MapFlags.MAP_LOCKED) != 0, f,
                    f.mapping(), offset >>> 12, size);
            if (!shared) {
                pages.markReservationOwner(vma);
            }
            insertVma(vma);
            VmArea merged = mergeAround(vma);
            try {
                populateIfAsked(merged, start, start + len, flags);
            } catch (OutOfMemoryException e) {
                // the mapping is gone again: so are the reservations this mmap made for the file
                long back = 0;
                for (int i = 0; i < added.size(); i++) {
                    if (f.reservedIndexes().remove(added.get(i))) {
                        back++;
                    }
                }
                pool.unreserve(back);
                throw e;
            }
            machine.afterOperation("mmap");
            return start;
        }
    }

    /** Gives back what a hugetlb mmap reserved before it failed (no VMA holds the reservations yet). */
    private static void unreserve(HugetlbFileImpl f, HugePagePool pool,
            org.eclipse.collections.impl.list.mutable.primitive.LongArrayList added, long need) {
        for (int i = 0; i < added.size(); i++) {
            f.reservedIndexes().remove(added.get(i));
        }
        pool.unreserve(need);
    }

    private void populateIfAsked(VmArea vma, long start, long end, int flags) {
        if ((flags & (MapFlags.MAP_POPULATE | MapFlags.MAP_LOCKED)) == 0 || !vma.protection().accessible()) {
            return;
        }
        // A private writable mapping is populated for write, to break COW up front (populate_vma_page_range).
        Access access = vma.protection().write() && !vma.kind().isShared() ? Access.WRITE : Access.READ;
        long step = vma.pageSize().bytes();
        try {
            for (long va = start; va < end; va += step) {
                faultCount++;
                faults.handle(vma(va), va, access);
            }
        } catch (OutOfMemoryException e) {
            unmapRange(start, end, false);
            throw machine.callbackFailures().suppressInto(e);
        }
    }

    // ---- munmap / mprotect ----

    @Override
    public void munmap(long address, long length) {
        synchronized (machine.lock()) {
            ensureChangeable("munmap");
            checkAddress(address, "address");
            long len = checkLength(length, PageSize.SIZE_4K);
            checkRangeInUserSpace(address, len, "-EINVAL");
            checkSplitPoints(address, address + len);
            try {
                unmapRange(address, address + len, true);
            } catch (Throwable e) { // a notifier refused: nothing changed
                throw machine.operationFailed(e);
            }
            machine.afterOperation("munmap");
        }
    }

    @Override
    public void mprotect(long address, long length, Protection prot) {
        synchronized (machine.lock()) {
            ensureChangeable("mprotect");
            checkAddress(address, "address");
            checkProtection(prot);
            long len = checkLength(length, PageSize.SIZE_4K);
            checkRangeInUserSpace(address, len, "-ENOMEM");
            long end = address + len;
            long covered = address;
            for (VmArea v : overlapping(address, end)) {
                if (v.start() > covered) {
                    break;
                }
                covered = v.end();
            }
            if (covered < end) {
                throw new InvalidArgumentException("address", address, "must start a fully mapped range of " + len
                        + " bytes (hole at 0x" + Long.toHexString(covered) + ")");
            }
            // mprotect_fixup returns early for a VMA that already has the new flags: no split, no notifier, no flush.
            VmArea first = vma(address);
            VmArea last = vma(end - 1);
            boolean splitFirst = !first.protection().equals(prot);
            boolean splitLast = !last.protection().equals(prot) && last.end() != end;
            if (splitFirst && unsplittableAt(address) != null || splitLast && unsplittableAt(end) != null) {
                checkSplitPoints(address, end);
            }
            List<VmArea> changing = new ArrayList<>();
            for (VmArea v : overlapping(address, end)) {
                if (!v.protection().equals(prot)) {
                    changing.add(v);
                }
            }
            if (changing.isEmpty()) {
                machine.afterOperation("mprotect");
                return;
            }
            long from = Math.max(address, changing.getFirst().start());
            long to = Math.min(end, changing.getLast().end());
            if (splitFirst) {
                splitAt(address);
            }
            if (splitLast) {
                splitAt(end);
            }
            changing = overlapping(from, to);
            changing.removeIf(v -> v.protection().equals(prot));
            changeProtection(changing, prot);
            for (VmArea v : overlapping(address, end)) {
                mergeAround(v);
            }
            machine.afterOperation("mprotect");
        }
    }

    /**
     * change_protection of each VMA, with every notifier range opened before anything changes: a
     * notifier whose invalidateRangeStart throws aborts the mprotect with protections, entries
     * and (after re-merging the split pieces) VMAs as they were.
     */
    private void changeProtection(List<VmArea> changing, Protection prot) {
        List<Invalidation> open = new ArrayList<>(changing.size());
        try {
            for (VmArea v : changing) {
                long from = v.start();
                long to = v.end();
                if (v.kind().isHugetlb()) { // hugetlb_change_protection widens for PMD sharing
                    PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(v, from, to);
                    from = r.start();
                    to = r.end();
                }
                open.add(Invalidation.start(this, from, to, NotifierEvent.PROTECTION_VMA));
            }
        } catch (Throwable e) { // whatever the notifier threw: nothing changed yet
            for (Invalidation inv : open) {
                inv.close();
            }
            for (VmArea v : changing) {
                if (vma(v.start()) == v) {
                    mergeAround(v);
                }
            }
            throw machine.operationFailed(e);
        }
        for (int i = 0; i < changing.size(); i++) {
            VmArea v = changing.get(i);
            Invalidation inv = open.get(i);
            v.setProtection(prot);
            pages.changeProtection(v, v.start(), v.end());
            machine.shootdown().flushRange(this, inv.range().start(), inv.range().end(), v.pageSize().shift());
            inv.close();
        }
    }

    /** Closes a child that fork will not return; what the close throws joins {@code e}. */
    private RuntimeException closeChild(SimAddressSpace child, Throwable e) {
        try {
            child.close();
        } catch (Throwable c) {
            e.addSuppressed(c);
        }
        throw machine.operationFailed(e);
    }

    // ---- fork / exit ----

    @Override
    public AddressSpace fork() {
        synchronized (machine.lock()) {
            ensureChangeable("fork");
            SimAddressSpace child = machine.newChild(homeNode);
            try {
                for (VmArea v : vmas.values()) {
                    VmArea copy = v.forkCopy(child);
                    pages.prepareForkedAnon(v, copy);
                    child.insertVma(copy);
                    if (pages.needsCopy(v)) { // copy_page_range write-protects the parent's COW entries
                        try (Invalidation inv = Invalidation.start(this, v.start(), v.end(), NotifierEvent.PROTECTION_PAGE)) {
                            pages.copyForFork(v, copy);
                        }
                    }
                }
            } catch (Throwable e) { // out of memory, or a notifier refused: the child goes, the parent stays usable
                machine.shootdown().flushMm(this);
                throw closeChild(child, e);
            }
            machine.shootdown().flushMm(this); // dup_mmap's flush_tlb_mm(oldmm)
            if (machine.callbackFailures().any()) { // the fork completed, but the caller gets the exception, not the child
                throw closeChild(child, machine.callbackFailures().take());
            }
            machine.afterOperation("fork");
            return child;
        }
    }

    @Override
    public void close() {
        synchronized (machine.lock()) {
            if (closed || machine.deferClose(this)) {
                return; // from inside a user callback: closed when the operation that called back ends
            }
            try {
                if (!machine.memory().isClosed()) {
                    notifiers.release(); // exit_mmap: mmu_notifier_release first; what it throws waits for the end
                    // Before any frame is freed: CPUs running here leave (their next access throws
                    // ClosedException) and the PCID, which may be reused, is dropped everywhere.
                    machine.shootdown().flushExiting(this);
                    TlbGather gather = new TlbGather();
                    for (VmArea v : new ArrayList<>(vmas.values())) {
                        pages.zap(v, v.start(), v.end(), gather, true);
                        removeVma(v);
                    }
                    pageTable.destroy();
                }
            } finally {
                closed = true;
                machine.exited(this);
            }
            machine.afterOperation("exit");
        }
    }

    @Override
    public boolean isClosed() {
        synchronized (machine.lock()) {
            return closed;
        }
    }

    // ---- faults and queries ----

    @Override
    public FaultResult fault(long va, Access access) {
        synchronized (machine.lock()) {
            ensureChangeable("fault");
            if (access == null) {
                throw new InvalidArgumentException("access", null, "must not be null");
            }
            if (!pageTable.mode().isCanonical(va)) {
                throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.NON_CANONICAL);
            }
            VmArea vma = vma(va);
            if (vma == null) {
                throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.NO_VMA);
            }
            if (!vma.protection().allows(access)) {
                throw new SegmentationFaultException(va, access, SegmentationFaultException.Cause.PROTECTION);
            }
            faultCount++;
            org.vmcore.impl.stat.FaultEvent event = new org.vmcore.impl.stat.FaultEvent();
            event.begin();
            FaultResult result = faults.handle(vma, va, access);
            if (event.shouldCommit()) {
                event.addressSpace = id;
                event.address = va;
                event.access = access.name();
                event.result = result.name();
                event.commit();
            }
            machine.afterOperation("fault at 0x" + Long.toHexString(va));
            return result;
        }
    }

    @Override
    public Optional<Vma> findVma(long va) {
        synchronized (machine.lock()) {
            ensureOpen();
            VmArea v = vma(va);
            return v == null ? Optional.empty() : Optional.of(v.snapshot());
        }
    }

    @Override
    public List<Vma> vmas() {
        synchronized (machine.lock()) {
            ensureOpen();
            List<Vma> out = new ArrayList<>(vmas.size());
            for (VmArea v : vmas.values()) {
                out.add(v.snapshot());
            }
            return out;
        }
    }

    @Override
    public long translate(long va) {
        synchronized (machine.lock()) {
            ensureOpen();
            if (!pageTable.mode().isCanonical(va)) {
                throw new InvalidArgumentException("va", va, "must be canonical");
            }
            return walker.translate(pageTable.cr3(), pageTable.mode(), va, walkResult) ? walkResult.physicalAddress() : -1;
        }
    }

    @Override
    public long pageAt(long va) {
        synchronized (machine.lock()) {
            ensureOpen();
            if (!pageTable.mode().isCanonical(va)) {
                throw new InvalidArgumentException("va", va, "must be canonical");
            }
            return walker.translate(pageTable.cr3(), pageTable.mode(), va, walkResult) ? walkResult.pagePfn() : -1;
        }
    }

    @Override
    public MmCounters counters() {
        synchronized (machine.lock()) {
            ensureOpen();
            return new MmCounters(anonPages, shmemPages, hugetlbBytes, pageTable.tablePages(),
                    pageTable.tablesAt(Level.PMD), vmas.size());
        }
    }

    @Override
    public String dumpPageTables() {
        synchronized (machine.lock()) {
            ensureOpen();
            return pageTable.dump();
        }
    }

    @Override
    public String toString() {
        return "mm" + id;
    }

    // ---- TLB, cpumask and notifiers ----

    @Override
    public int pcid() {
        return pcid;
    }

    @Override
    public List<Integer> cpumask() {
        ensureOpen();
        List<Integer> out = new ArrayList<>();
        for (int cpu = 0; cpu < machine.config().cpus(); cpu++) {
            if (cpumaskHas(cpu)) {
                out.add(cpu);
            }
        }
        return out;
    }

    public void cpumaskSet(int cpu) {
        cpumask.getAndAccumulate(cpu >>> 6, 1L << (cpu & 63), (a, b) -> a | b);
    }

    public boolean cpumaskHas(int cpu) {
        return (cpumask.get(cpu >>> 6) & (1L << (cpu & 63))) != 0;
    }

    public NotifierChain notifiers() {
        return notifiers;
    }

    @Override
    public void registerNotifier(MmuNotifier notifier) {
        synchronized (machine.lock()) {
            ensureOpen();
            notifiers.register(notifier);
        }
    }

    @Override
    public boolean unregisterNotifier(MmuNotifier notifier) {
        synchronized (machine.lock()) {
            ensureOpen();
            if (notifier == null) {
                throw new InvalidArgumentException("notifier", null, "must not be null");
            }
            return notifiers.unregister(notifier);
        }
    }

    @Override
    public void flushTlb(long start, long end, int strideShift) {
        synchronized (machine.lock()) {
            ensureOpen();
            if (strideShift != 12 && strideShift != 21 && strideShift != 30) {
                throw new InvalidArgumentException("strideShift", strideShift, "must be 12, 21 or 30");
            }
            checkAddress(start, "start");
            if (end <= start || end > pageTable.mode().taskSizeMax()) {
                throw new InvalidArgumentException("end", end, "must be above start and at most TASK_SIZE_MAX 0x"
                        + Long.toHexString(pageTable.mode().taskSizeMax()));
            }
            machine.shootdown().flushRange(this, start, end, strideShift);
            machine.operationDone();
        }
    }

    @Override
    public void flushTlb() {
        synchronized (machine.lock()) {
            ensureOpen();
            machine.shootdown().flushMm(this);
            machine.operationDone();
        }
    }

    @Override
    public boolean clearFlushYoung(long va) {
        return young(va, true, true);
    }

    @Override
    public boolean clearYoung(long va) {
        return young(va, true, false);
    }

    @Override
    public boolean testYoung(long va) {
        return young(va, false, false);
    }

    private boolean young(long va, boolean clear, boolean flush) {
        synchronized (machine.lock()) {
            ensureOpen();
            VmArea v = vma(va);
            if (v == null) {
                throw new InvalidArgumentException("va", va, "must lie in a mapping");
            }
            PageSize size = v.pageSize();
            long addr = size.alignDown(va);
            long slot = pageTable.slot(addr, Level.ofLeaf(size));
            boolean young = false;
            if (slot >= 0) {
                long e = pageTable.readSlot(slot);
                young = Pte.isPresent(e) && (e & Pte.ACCESSED) != 0;
                if (young && clear) {
                    long cur = e;
                    while (!pageTable.compareAndSetSlot(slot, cur, cur & ~Pte.ACCESSED)) {
                        cur = pageTable.readSlot(slot);
                    }
                    if (flush) {
                        machine.shootdown().flushRange(this, addr, addr + size.bytes(), size.shift());
                    }
                }
            }
            if (!clear) {
                young |= notifiers.testYoung(addr);
            } else {
                young |= flush ? notifiers.clearFlushYoung(addr, addr + size.bytes()) : notifiers.clearYoung(addr, addr + size.bytes());
            }
            machine.operationDone(); // the accessed bits are cleared all the same
            return young;
        }
    }

    /** Page faults handled (pgfault). */
    public long faultCount() {
        return faultCount;
    }

    /**
     * hugetlb_vmdelete_list for one VMA: zaps [from, to) of a hugetlb mapping whose file
     * shrank, with the notifier range widened for PMD sharing and shared windows unshared; the
     * VMA stays; the caller settles a private owner's reservations.
     */
    public void unmapFilePages(VmArea v, long from, long to) {
        if (from >= to) {
            return;
        }
        PmdSharing.Range r = PmdSharing.adjustRangeIfPmdSharingPossible(v, from, to);
        TlbGather gather = new TlbGather();
        try (Invalidation inv = Invalidation.startCompleting(this, r.start(), r.end(), NotifierEvent.UNMAP)) {
            pages.zap(v, from, to, gather, false); // the caller settles private reservations
            gather.flush(this);
        }
    }

    /** Reservations a private owner VMA holds: its slots inside the file's end without an anonymous page. */
    public long privateReservations(VmArea v) {
        return pages.reservedSlots(v, v.start(), v.end());
    }

    /**
     * hugetlb_count_sub, saturating at zero: with PMD sharing only the mm that faulted a page
     * counts it, as in Linux, but the last sharer of a table may be another mm that zaps or
     * unmaps it; HugetlbPages must not go negative there.
     */
    public void hugetlbCountSub(long bytes) {
        hugetlbBytes = Math.max(0, hugetlbBytes - bytes);
    }

    /** Adds to RssShmem. */
    public void addShmemPages(long delta) {
        shmemPages += delta;
    }

    /** The VMAs, in address order (a copy). */
    public List<VmArea> vmaAreas() {
        return new ArrayList<>(vmas.values());
    }

    /** Visits the head PFN of every present page {@code v} maps, with its address. */
    public void forEachMappedPage(VmArea v, java.util.function.ObjLongConsumer<Long> visitor) {
        PageSize size = v.pageSize();
        pages.forEachLeaf(v, v.start(), v.end(), (va, slot, e) -> {
            if (Pte.isPresent(e)) {
                visitor.accept(va, Pte.pfn(e, size));
            }
        });
    }

    /**
     * Called when an access met a migration entry at va. Another thread's access only gets here
     * between a migration's end and its retry (the fault path takes the machine lock, which the
     * migration holds until it ends), so it simply retries; an access from a migration observer,
     * on the migrating thread itself, cannot wait for its own caller and throws.
     *
     * @throws MigrationWaitException when called on the migrating thread
     */
    public void waitForMigration(long va) {
        if (machine.migrationImpl().migratingOnThisThread()) {
            throw new org.vmcore.api.MigrationWaitException(va);
        }
        Thread.onSpinWait();
    }

    // ---- VMA tree ----

    /** The VMA containing va, or null. */
    public VmArea vma(long va) {
        Map.Entry<Long, VmArea> e = vmas.floorEntry(va);
        return e != null && e.getValue().contains(va) ? e.getValue() : null;
    }

    /** VMAs meeting [start, end), in address order. */
    List<VmArea> overlapping(long start, long end) {
        List<VmArea> out = new ArrayList<>();
        Long from = vmas.floorKey(start);
        for (VmArea v : vmas.tailMap(from == null ? start : from, true).values()) {
            if (v.start() >= end) {
                break;
            }
            if (v.end() > start) {
                out.add(v);
            }
        }
        return out;
    }

    void insertVma(VmArea v) {
        vmas.put(v.start(), v);
        if (v.mapping() != null) {
            v.mapping().iMmap().insert(v);
        }
        for (AnonVma a : v.anonChain()) {
            a.link(v);
        }
    }

    void removeVma(VmArea v) {
        vmas.remove(v.start());
        if (v.mapping() != null) {
            v.mapping().iMmap().remove(v);
        }
        for (AnonVma a : v.anonChain()) {
            a.unlink(v);
            if (a.vmas().isEmpty()) {
                machine.unregister(a.id()); // no VMA left, so no mapped page names it either
            }
        }
        if (v.kind() == VmaKind.ANONYMOUS_SHARED && v.mapping().iMmap().isEmpty()) {
            // The last mapping of the shmem object is gone: the object and its pages go too.
            v.mapping().pageCache().forEachValue(pfn -> pages.putReference(pfn, false));
            v.mapping().pageCache().clear();
            machine.unregister(v.mapping().id());
        }
    }

    /** Splits the VMA containing addr so that a VMA starts at addr (split_vma). */
    void splitAt(long addr) {
        VmArea v = vma(addr);
        if (v == null || v.start() == addr) {
            return;
        }
        if (PmdSharing.splitMustUnshare(v, addr)) {
            // hugetlb_split -> hugetlb_unshare_pmds: a split window cannot stay shared
            long window = addr & PmdSharing.PUD_MASK;
            try (Invalidation inv = Invalidation.startCompleting(this, window, window + PmdSharing.PUD_SIZE, NotifierEvent.CLEAR)) {
                PmdSharing.hugePmdUnshare(v, addr);
                machine.shootdown().flushRange(this, window, window + PmdSharing.PUD_SIZE, PageSize.SIZE_2M.shift());
            }
        }
        VmArea upper = v.slice(addr, v.end());
        v.setEnd(addr);
        if (v.mapping() != null) {
            v.mapping().iMmap().update();
        }
        insertVma(upper);
    }

    /** Merges v with its neighbours where vma_merge would; returns the VMA that now holds v's range. */
    VmArea mergeAround(VmArea v) {
        Map.Entry<Long, VmArea> prevEntry = vmas.lowerEntry(v.start());
        VmArea result = v;
        if (prevEntry != null && prevEntry.getValue().canMergeWith(v)) {
            VmArea prev = prevEntry.getValue();
            prev.adoptAnonVma(v); // before v goes, so its anon_vma never has no VMA
            removeVma(v);
            prev.setEnd(v.end());
            if (prev.mapping() != null) {
                prev.mapping().iMmap().update();
            }
            result = prev;
        }
        Map.Entry<Long, VmArea> nextEntry = vmas.higherEntry(result.start());
        if (nextEntry != null && result.canMergeWith(nextEntry.getValue())) {
            VmArea next = nextEntry.getValue();
            result.adoptAnonVma(next);
            removeVma(next);
            result.setEnd(next.end());
            if (result.mapping() != null) {
                result.mapping().iMmap().update();
            }
        }
        return result;
    }

    /**
     * find_mergeable_anon_vma: the anon_vma of a neighbour (the next, then the previous VMA) that
     * v could merge with but for its protection, if that neighbour's chain is singular (a forked
     * VMA's is not); else null.
     */
    AnonVma mergeableAnonVma(VmArea v) {
        VmArea next = vma(v.end());
        if (next != null && v.anonVmaCompatible(next) && next.anonVma() != null && next.anonChain().size() == 1) {
            return next.anonVma();
        }
        VmArea prev = v.start() == 0 ? null : vma(v.start() - 1);
        if (prev != null && prev.anonVmaCompatible(v) && prev.anonVma() != null && prev.anonChain().size() == 1) {
            return prev.anonVma();
        }
        return null;
    }

    /**
     * Unmaps [start, end): splits, zaps, removes VMAs and frees the tables nobody else needs.
     * With {@code abortable}, a notifier whose invalidateRangeStart throws aborts it with the VMAs as they were.
     */
    void unmapRange(long start, long end, boolean abortable) {
        if (overlapping(start, end).isEmpty()) {
            return;
        }
        splitAt(start);
        splitAt(end);
        TlbGather gather = new TlbGather();
        Invalidation invalidation;
        if (abortable) {
            try {
                invalidation = Invalidation.start(this, start, end, NotifierEvent.UNMAP);
            } catch (Throwable e) { // a notifier refused before anything was zapped: undo the splits
                VmArea lower = vma(start);
                if (lower != null) {
                    mergeAround(lower);
                }
                VmArea upper = vma(end);
                if (upper != null) {
                    mergeAround(upper);
                }
                throw CallbackFailures.<RuntimeException>sneaky(e);
            }
        } else {
            invalidation = Invalidation.startCompleting(this, start, end, NotifierEvent.UNMAP);
        }
        try (Invalidation inv = invalidation) {
            for (VmArea v : overlapping(start, end)) {
                pages.zap(v, v.start(), v.end(), gather, true);
                removeVma(v);
            }
            freeTables(start, end);
            gather.flush(this);
        }
    }

    /**
     * free_pgtables: frees the empty tables whose span lies between the neighbouring VMAs, so a
     * table still covering part of another VMA is kept, as the kernel keeps it.
     */
    private void freeTables(long start, long end) {
        Map.Entry<Long, VmArea> prev = vmas.lowerEntry(start);
        Map.Entry<Long, VmArea> next = vmas.ceilingEntry(start);
        long floor = prev == null ? 0 : prev.getValue().end();
        long ceiling = next == null ? pageTable.mode().userAddressLimit() : next.getValue().start();
        long from = (floor + (1L << 21) - 1) & -(1L << 21);
        long to = ceiling & -(1L << 21);
        if (from < to) {
            pageTable.freeEmptyTables(from, to);
        }
    }

    // ---- validation ----

    /**
     * {@link #ensureOpen()}, and refuses a change of this address space from inside one of its own
     * MMU notifiers: the kernel calls them under locks (the mmap lock, rmap locks) that the change
     * would need, so it would deadlock there; here it would change what the operation below is changing.
     */
    private void ensureChangeable(String operation) {
        ensureOpen();
        if (notifiers.isCalling()) {
            throw new VmException(operation + " of " + this + " from inside one of its own MMU notifiers: a notifier must"
                    + " not change the address space it is notified for (the kernel holds its locks there)");
        }
    }

    /** Throws ClosedException if the machine is closed or this address space has exited. */
    public void ensureOpen() {
        machine.ensureOpen();
        if (closed) {
            throw new ClosedException("address space mm" + id);
        }
    }

    private void checkMmapFlags(int flags, boolean anonymous) {
        if ((flags & ~MapFlags.KNOWN) != 0) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), "must use only MAP_SHARED, MAP_PRIVATE,"
                    + " MAP_FIXED, MAP_FIXED_NOREPLACE, MAP_ANONYMOUS, MAP_LOCKED and MAP_POPULATE");
        }
        boolean shared = (flags & MapFlags.MAP_SHARED) != 0;
        boolean priv = (flags & MapFlags.MAP_PRIVATE) != 0;
        if (shared == priv) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), "must contain exactly one of MAP_SHARED and MAP_PRIVATE");
        }
        if (anonymous != ((flags & MapFlags.MAP_ANONYMOUS) != 0)) {
            throw new InvalidArgumentException("flags", MapFlags.describe(flags), anonymous
                    ? "must contain MAP_ANONYMOUS for an anonymous mapping" : "must not contain MAP_ANONYMOUS for a file mapping");
        }
    }

    private static void checkProtection(Protection prot) {
        if (prot == null) {
            throw new InvalidArgumentException("prot", null, "must not be null");
        }
    }

    private long checkLength(long length, PageSize size) {
        long limit = pageTable.mode().taskSizeMax();
        if (length <= 0 || length > limit) {
            throw new InvalidArgumentException("length", length, "must be positive and at most 0x" + Long.toHexString(limit));
        }
        if (size != PageSize.SIZE_4K && !size.isAligned(length)) {
            throw new InvalidArgumentException("length", length, "must be a multiple of the file's page size " + size.label());
        }
        return (length + 0xFFF) & ~0xFFFL; // the kernel rounds lengths up to whole pages
    }

    private void checkAddress(long address, String name) {
        if ((address & 0xFFF) != 0) {
            throw new InvalidArgumentException(name, address, "must be 4K aligned");
        }
        if (address < 0 || address >= pageTable.mode().taskSizeMax()) {
            throw new InvalidArgumentException(name, address, "must be a user-space address below TASK_SIZE_MAX 0x"
                    + Long.toHexString(pageTable.mode().taskSizeMax()));
        }
    }

    /** The range must end at or below TASK_SIZE_MAX; {@code errno} is what the kernel's call returns. */
    private void checkRangeInUserSpace(long address, long len, String errno) {
        if (address > pageTable.mode().taskSizeMax() - len) {
            throw new InvalidArgumentException("length", len, "must keep 0x" + Long.toHexString(address)
                    + " + length at or below TASK_SIZE_MAX 0x" + Long.toHexString(pageTable.mode().taskSizeMax()) + " (" + errno + ")");
        }
    }

    /** A hugetlb VMA can only be split at a multiple of its page size (hugetlb_vm_op_split). */
    private void checkSplitPoints(long start, long end) {
        VmArea v = unsplittableAt(start);
        long point = start;
        if (v == null) {
            v = unsplittableAt(end);
            point = end;
        }
        if (v != null) {
            throw new InvalidArgumentException(point == start ? "address" : "end", point,
                    "must be aligned to " + v.pageSize().label() + " to split the hugetlb mapping " + v.snapshot());
        }
    }

    /** The VMA that a split at {@code point} would cut off its page size, or null. */
    private VmArea unsplittableAt(long point) {
        VmArea v = vma(point);
        return v != null && v.start() != point && !v.pageSize().isAligned(point) ? v : null;
    }

    /** The start of a new mapping of len bytes, following MAP_FIXED, NOREPLACE and hints. */
    private long placement(long address, long len, int flags, PageSize size) {
        boolean fixed = (flags & (MapFlags.MAP_FIXED | MapFlags.MAP_FIXED_NOREPLACE)) != 0;
        if (fixed) {
            if (!size.isAligned(address)) {
                throw new InvalidArgumentException("address", address, "must be aligned to " + size.label() + " for MAP_FIXED");
            }
            if (address < MMAP_MIN_ADDR || address >= pageTable.mode().taskSizeMax()) {
                // below mmap_min_addr Linux says -EPERM (security_mmap_addr), at or above TASK_SIZE -ENOMEM
                throw new InvalidArgumentException("address", address, "must lie in user space, at or above mmap_min_addr 0x"
                        + Long.toHexString(MMAP_MIN_ADDR) + " and below TASK_SIZE_MAX 0x" + Long.toHexString(pageTable.mode().taskSizeMax())
                        + (address < MMAP_MIN_ADDR ? " (-EPERM)" : " (-ENOMEM)"));
            }
            checkRangeInUserSpace(address, len, "-ENOMEM");
            if ((flags & MapFlags.MAP_FIXED) == 0 && !overlapping(address, address + len).isEmpty()) {
                throw new InvalidArgumentException("address", address, "must not overlap an existing mapping with"
                        + " MAP_FIXED_NOREPLACE (EEXIST): " + overlapping(address, address + len).getFirst().snapshot());
            }
            if (unsplittableAt(address) != null || unsplittableAt(address + len) != null) {
                throw new InvalidArgumentException("address", address, "must not split a hugetlb mapping off its page size");
            }
            return address;
        }
        if (address != 0 && size.isAligned(address) && address >= MMAP_MIN_ADDR
                && address <= pageTable.mode().taskSizeMax() - len && overlapping(address, address + len).isEmpty()) {
            return address;
        }
        long top = MMAP_BASE;
        for (VmArea v : vmas.descendingMap().values()) {
            if (v.start() >= top) {
                continue;
            }
            long candidate = (top - len) & -size.bytes();
            if (candidate >= v.end() && candidate <= top - len) {
                return candidate;
            }
            top = v.start();
        }
        long candidate = (top - len) & -size.bytes();
        if (top - len < MMAP_MIN_ADDR || candidate < MMAP_MIN_ADDR) {
            throw new OutOfMemoryException("no free range of " + len + " bytes below 0x" + Long.toHexString(MMAP_BASE));
        }
        return candidate;
    }

    private void replaceForFixed(long start, long len, int flags) {
        if ((flags & MapFlags.MAP_FIXED) != 0) {
            unmapRange(start, start + len, true);
        }
    }
}
