package org.vmcore.impl.mm;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.function.ObjLongConsumer;
import org.vmcore.api.Access;
import org.vmcore.api.Advice;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.FaultResult;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.MigrationWaitException;
import org.vmcore.api.MmCounters;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.PageReference;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableView;
import org.vmcore.api.Protection;
import org.vmcore.api.Vma;
import org.vmcore.api.VmException;
import org.vmcore.impl.base.MachineLock;
import org.vmcore.impl.base.Nodes;
import org.vmcore.impl.base.PmdShareCount;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.HugetlbVmdelete;
import org.vmcore.impl.tlb.TlbShootdown;
import org.vmcore.impl.vma.MmStruct;
import org.vmcore.impl.vma.VmArea;
import org.vmcore.impl.vma.VmaTree;
import org.vmcore.x86.internal.RawPageTable;
import org.vmcore.x86.internal.SharedSecrets;
import org.vmcore.x86.pgtable.Level;
import org.vmcore.x86.pgtable.WalkResult;
import org.vmcore.x86.pgtable.Walker;

/**
 * An address space (mm_struct) as the public {@link AddressSpace}: a facade that
 * locks, validates ({@link MmArgs}) and delegates to the mechanism that does the work: {@link Mmap}
 * (mmap_region, get_unmapped_area, do_munmap, split_vma), {@link Mprotect}, {@link Fork}
 * (dup_mmap), {@link Exit} (exit_mmap), {@link Zap} (zap_page_range, __unmap_hugepage_range),
 * {@link FaultHandler} (do_user_addr_fault, handle_mm_fault), {@link Young} and {@link PageOps}.
 * Every public method holds the machine lock shared and this address space's mmap_lock: for
 * read to fault or look, for write to change the VMA tree. The mm_struct data (page table, VMA tree,
 * counters, notifiers) is in {@link MmStruct}; what it may touch outside itself is listed in its
 * {@link MmContext}.
 */
@SuppressWarnings("try") // a lock hold is used only for its scope
public final class SimAddressSpace extends MmStruct {
    /** Lowest address a mapping may use (vm.mmap_min_addr). */
    public static final long MMAP_MIN_ADDR = 0x10000;
    /** Where top-down placement of mappings without a fixed address starts (mmap_base). */
    public static final long MMAP_BASE = 0x7f00_0000_0000L;

    /** hugetlb_vmdelete_list's per-VMA work, for truncation in the hugetlb package. */
    public static final HugetlbVmdelete VMDELETE = Zap.VMDELETE;

    private final MmContext ctx;
    private final TlbShootdown shootdown;
    private final VmaTree vmas;
    private final RawPageTable pageTable;
    private final Walker walker;
    final PageOps pages;
    private final FaultHandler faults;
    private final Mmap mmapImpl;
    final Zap zap;
    final MmArgs args;
    private final Mprotect mprotect;
    private final PageWalk pageTableView;
    private final GupFast gupFast;
    private final Madvise madvise;
    private final Mremap mremap;
    final MigrationWait migrationWait; // the faults wait through it too
    final FaultCounts faultCounts = new FaultCounts();
    private volatile boolean closed;

    public SimAddressSpace(MmContext ctx, int id, int homeNode, int pcid) {
        super(ctx.lock(), id, homeNode, pcid, ctx.config().cpus(), ctx.memory(), ctx.config().pagingMode(), ctx.registry(),
                ctx.callbackFailures(), PmdShareCount.of(ctx.config(), SharedSecrets.memMap(ctx.memory())));
        this.ctx = ctx;
        this.shootdown = ctx.shootdown();
        this.vmas = vmaTree();
        this.pageTable = pageTable();
        this.walker = Nodes.newWalker(ctx.memory());
        this.pages = new PageOps(ctx, this);
        this.faults = new FaultHandler(ctx, this);
        this.args = new MmArgs(pageTable.mode());
        this.zap = new Zap(this, ctx);
        this.mmapImpl = new Mmap(this, ctx);
        this.mprotect = new Mprotect(this, ctx, mmapImpl);
        this.pageTableView = new PageWalk(this, pageTable);
        this.gupFast = new GupFast(ctx, this);
        this.madvise = new Madvise(ctx, this, mmapImpl);
        this.mremap = new Mremap(ctx, this, mmapImpl);
        this.migrationWait = new MigrationWait(ctx, this);
    }

    // ---- mmap ----

    @Override
    public long mmap(long address, long length, Protection prot, int flags) {
        long start;
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("mmap")) {
            MmArgs.checkMmapFlags(flags, true);
            MmArgs.checkProtection(prot);
            long len = args.checkLength(length, PageSize.SIZE_4K);
            start = mmapImpl.mmapRegion(address, len, prot, flags);
        }
        ctx.hook().afterOperation("mmap");
        return start;
    }

    @Override
    public long mmap(HugetlbFile file, long offset, long address, long length, Protection prot, int flags) {
        long start;
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("mmap")) {
            HugetlbFileImpl f = ctx.hugetlbfs().pinForMmap(file); // the open file an mmap holds: no eviction meanwhile
            try {
                MmArgs.checkMmapFlags(flags, false);
                MmArgs.checkProtection(prot);
                long len = args.checkFileRange(f, offset, length);
                start = mmapImpl.mmapHugetlb(f, offset, address, len, prot, flags);
            } finally {
                ctx.hugetlbfs().unpin(f);
            }
        }
        ctx.hook().afterOperation("mmap");
        return start;
    }

    // ---- munmap / mprotect ----

    @Override
    public void munmap(long address, long length) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("munmap")) {
            args.checkAddress(address, "address");
            long len = args.checkLength(length, PageSize.SIZE_4K);
            args.checkRangeInUserSpace(address, len, "-EINVAL");
            mmapImpl.checkSplitPoints(address, address + len);
            try {
                mmapImpl.doMunmap(address, address + len, true);
            } catch (Throwable e) { // a notifier refused: nothing changed
                throw ctx.hook().operationFailed(e);
            }
        }
        ctx.hook().afterOperation("munmap");
    }

    @Override
    public void mprotect(long address, long length, Protection prot) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("mprotect")) {
            args.checkAddress(address, "address");
            MmArgs.checkProtection(prot);
            long len = args.checkLength(length, PageSize.SIZE_4K);
            args.checkRangeInUserSpace(address, len, "-ENOMEM");
            mprotect.mprotectFixup(address, len, prot);
        }
        ctx.hook().afterOperation("mprotect");
    }

    // ---- fork / exit ----

    @Override
    public AddressSpace fork() {
        SimAddressSpace child;
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("fork")) {
            child = ctx.lifecycle().newChild(homeNode());
            // dup_mmap takes the child's mmap_lock too, nested under the parent's.
            child.mmapLock().downWriteNested(1);
            try {
                new Fork(this, ctx).dupMmap(child);
            } finally {
                child.mmapLock().upWrite();
            }
        }
        ctx.hook().afterOperation("fork");
        return child;
    }

    @Override
    public void close() {
        if (closed || ctx.lifecycle().deferClose(this)) {
            return; // from inside a user callback: closed when the operation that called back ends
        }
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapWrite("exit")) {
            if (closed) {
                return; // another thread closed it meanwhile
            }
            try {
                if (!ctx.memory().isClosed()) {
                    Exit.exitMmap(this, ctx);
                }
            } finally {
                closed = true;
                ctx.lifecycle().exited(this);
            }
        }
        ctx.hook().afterOperation("exit");
    }

    @Override
    public boolean isClosed() {
        return closed;
    }

    // ---- faults and queries ----

    @Override
    public FaultResult fault(long va, Access access) {
        FaultResult result;
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureChangeable("fault");
            if (access == null) {
                throw new InvalidArgumentException("access", null, "must not be null");
            }
            result = faults.userFault(va, access);
        }
        ctx.hook().afterFault(va);
        return result;
    }

    @Override
    public Optional<Vma> findVma(long va) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            VmArea v = vma(va);
            return v == null ? Optional.empty() : Optional.of(v.snapshot());
        }
    }

    @Override
    public List<Vma> vmas() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            List<Vma> out = new ArrayList<>(vmas.size());
            for (VmArea v : vmas.all()) {
                out.add(v.snapshot());
            }
            return out;
        }
    }

    @Override
    public long translate(long va) {
        WalkResult w = walkLocked(va);
        return w == null ? -1 : w.physicalAddress();
    }

    @Override
    public long pageAt(long va) {
        WalkResult w = walkLocked(va);
        return w == null ? -1 : w.pagePfn();
    }

    @Override
    public PageReference getUserPageFast(long va, boolean write) {
        return gupFast.getUserPageFast(va, write);
    }

    /** The effective RW, USER and NX bits of the entries that map va now (0 if none), read without setting A or D. */
    public long permissionsAt(long va) {
        WalkResult w = walkLocked(va);
        return w == null ? 0 : w.effectiveBits();
    }

    /** Walks the tables for a canonical va as the hardware would, under the locks; null when nothing maps it. */
    private WalkResult walkLocked(long va) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            if (!pageTable.mode().isCanonical(va)) {
                throw new InvalidArgumentException("va", va, "must be canonical");
            }
            WalkResult walkResult = new WalkResult();
            return walker.translate(pageTable.cr3(), pageTable.mode(), va, walkResult) ? walkResult : null;
        }
    }

    @Override
    public MmCounters counters() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            return new MmCounters(anonPages(), shmemPages(), hugetlbBytes(), pageTable.tablePages(),
                    pageTable.tablesAt(Level.PMD), vmas.size(), faultCounts.minFlt(), faultCounts.majFlt(), anonHugePages(),
                    swapEntries());
        }
    }

    @Override
    public PageTableView pageTableView() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            return pageTableView;
        }
    }

    @Override
    public String dumpPageTables() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            return pageTable.dump();
        }
    }

    @Override
    public long cr3() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            return pageTable.cr3();
        }
    }

    // ---- TLB, cpumask and notifiers ----

    @Override
    public void registerNotifier(MmuNotifier notifier) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapWrite()) {
            ensureOpen();
            notifiers().register(notifier);
        }
    }

    @Override
    public boolean unregisterNotifier(MmuNotifier notifier) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapWrite()) {
            ensureOpen();
            if (notifier == null) {
                throw new InvalidArgumentException("notifier", null, "must not be null");
            }
            return notifiers().unregister(notifier);
        }
    }

    @Override
    public void flushTlb(long start, long end, int strideShift) {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            args.checkFlushRange(start, end, strideShift);
            shootdown.flushTlbMmRange(this, start, end, strideShift);
            ctx.hook().operationDone();
        }
    }

    @Override
    public void flushTlb() {
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = mmapRead()) {
            ensureOpen();
            shootdown.flushTlbMm(this);
            ctx.hook().operationDone();
        }
    }

    @Override
    public boolean clearFlushYoung(long va) {
        return Young.locked(this, ctx, va, true, true);
    }

    @Override
    public boolean clearYoung(long va) {
        return Young.locked(this, ctx, va, true, false);
    }

    @Override
    public boolean testYoung(long va) {
        return Young.locked(this, ctx, va, false, false);
    }

    @Override
    public int madvise(long address, long length, Advice advice) {
        return madvise.madvise(address, length, advice);
    }

    @Override
    public long mremap(long oldAddress, long oldLength, long newLength, int flags, long newAddress) {
        long at;
        try (MachineLock.Held locked = lock().shared(); MachineLock.Held mmap = changeLock("mremap")) {
            at = mremap.mremap(oldAddress, oldLength, newLength, flags, newAddress);
        }
        ctx.hook().afterOperation("mremap");
        return at;
    }

    /** Page faults handled (pgfault). */
    public long faultCount() {
        return faultCounts.pgfault();
    }

    /** Visits the head PFN of every present page {@code v} maps, with its address; the caller holds the lock. */
    public void forEachMappedPage(VmArea v, ObjLongConsumer<Long> visitor) {
        PageOps.forEachMappedPage(v, visitor);
    }

    /**
     * migration_entry_wait: called when a CPU's access met a migration entry at va, or a
     * page-cache page locked by a migration; see {@link MigrationWait#waitForMigration}.
     *
     * @throws MigrationWaitException where it does not wait and the page is still locked
     */
    public void waitForMigration(long va) {
        migrationWait.waitForMigration(va);
    }

    /** One fault of the populate path (GUP), counted in pgfault and min_flt like any other. */
    FaultResult handleFault(VmArea vma, long va, Access access) {
        faultCounts.entered();
        FaultResult result = faults.handle(vma, va, access);
        faultCounts.handled(result);
        return result;
    }

    // ---- validation ----

    /**
     * The mmap_lock for write for a change, refused first (without waiting) from inside one of
     * this address space's own notifiers, and checked again once held.
     */
    private MachineLock.Held changeLock(String operation) {
        ensureChangeable(operation);
        MachineLock.Held held = mmapWrite(operation);
        try {
            ensureChangeable(operation);
        } catch (RuntimeException e) {
            held.close();
            throw e;
        }
        return held;
    }

    /**
     * {@link #ensureOpen()}, and refuses a change of this address space from inside one of its own
     * MMU notifiers: the kernel calls them under locks (the mmap lock, rmap locks) that the change
     * would need, so it would deadlock there; here it would change what the operation below is changing.
     */
    void ensureChangeable(String operation) {
        ensureOpen();
        if (notifiers().isCalling()) {
            throw new VmException(operation + " of " + this + " from inside one of its own MMU notifiers: a notifier must"
                    + " not change the address space it is notified for (the kernel holds its locks there)");
        }
    }

    @Override
    public void ensureOpen() {
        lock().ensureOpen();
        if (closed) {
            throw new ClosedException("address space mm" + id());
        }
    }

}
