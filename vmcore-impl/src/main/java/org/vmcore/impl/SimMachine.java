package org.vmcore.impl;

import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.List;
import java.util.Map;
import org.eclipse.collections.impl.map.mutable.primitive.LongObjectHashMap;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.ClosedException;
import org.vmcore.api.Cpu;
import org.vmcore.api.StaleAccess;
import org.vmcore.impl.cpu.SimCpu;
import org.vmcore.impl.cpu.StaleDetector;
import org.vmcore.impl.cpu.TlbShootdown;
import org.vmcore.impl.migrate.MigrationServiceImpl;
import org.vmcore.impl.migrate.MigrationUnmap;
import org.vmcore.api.MigrationService;
import org.vmcore.x86.pgtable.Walker;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.HugetlbFs;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MachineConfig;
import org.vmcore.api.Page;
import org.vmcore.api.PageSize;
import org.vmcore.api.RmapWalker;
import org.vmcore.impl.hugetlb.HugePagePool;
import org.vmcore.impl.hugetlb.HugetlbFileImpl;
import org.vmcore.impl.hugetlb.HugetlbFsImpl;
import org.vmcore.impl.mm.SimAddressSpace;
import org.vmcore.impl.notifier.CallbackFailures;
import org.vmcore.impl.rmap.AnonVma;
import org.vmcore.impl.rmap.FileMapping;
import org.vmcore.impl.rmap.RmapWalkerImpl;
import org.vmcore.x86.mem.FrameDescriptors;
import org.vmcore.x86.mem.FrameFlags;
import org.vmcore.x86.mem.PhysicalMemory;

/**
 * The machine: physical memory, hugetlb pools, hugetlbfs, address spaces and the registry
 * that turns a page's mapping field back into its file or anon_vma.
 *
 * <p>Locking: in this version every mm operation runs under one machine lock ({@link #lock()}),
 * which stands in for the kernel's mmap locks, i_mmap_rwsem, anon_vma locks and page-table
 * locks at once. It makes every operation atomic with respect to the others.
 */
public final class SimMachine implements Machine {
    /** Low bit of a page's mapping field: the mapping is an anon_vma (PAGE_MAPPING_ANON). */
    public static final long MAPPING_ANON = 1;

    private final MachineConfig config;
    private final PhysicalMemory memory;
    private final HugetlbFsImpl hugetlbfs;
    private final RmapWalkerImpl rmap;
    private final List<SimAddressSpace> spaces = new ArrayList<>();
    private final LongObjectHashMap<Object> mappings = new LongObjectHashMap<>();
    private final Object lock = new Object();
    private final SimCpu[] cpus;
    private final TlbShootdown shootdown;
    private final StaleDetector detector = new StaleDetector();
    private final SimAddressSpace[] byPcid = new SimAddressSpace[4096];
    private final MigrationUnmap migrationUnmap;
    private final MigrationServiceImpl migration;

    private final CallbackFailures callbackFailures = new CallbackFailures();
    // Closes asked for from inside a user callback, done when the operation that called back ends (under the lock).
    private final ArrayDeque<SimAddressSpace> pendingCloses = new ArrayDeque<>();
    private boolean closePending;

    private long nextMappingId = 2;
    private int nextSpaceId = 1;
    // Written under the lock; read without it by the quick checks of public methods.
    private volatile boolean closed;

    SimMachine(MachineConfig config) {
        this.config = config;
        long[] nodes = config.nodeBytes().stream().mapToLong(Long::longValue).toArray();
        this.memory = new PhysicalMemory(nodes);
        try {
            Map<PageSize, HugePagePool> pools = new EnumMap<>(PageSize.class);
            // 1 GiB pages first: they need whole order-18 blocks, which 2 MiB pages would break up.
            for (PageSize size : new PageSize[] {PageSize.SIZE_1G, PageSize.SIZE_2M}) {
                long[] perNode = new long[nodes.length];
                for (int n = 0; n < nodes.length; n++) {
                    perNode[n] = config.hugePages(n, size);
                }
                pools.put(size, new HugePagePool(memory, size, perNode));
            }
            this.hugetlbfs = new HugetlbFsImpl(this, pools);
            this.migrationUnmap = new MigrationUnmap(this);
            this.rmap = new RmapWalkerImpl(this, migrationUnmap);
            this.migration = new MigrationServiceImpl(this, migrationUnmap);
            this.cpus = new SimCpu[config.cpus()];
            for (int i = 0; i < cpus.length; i++) {
                cpus[i] = new SimCpu(this, i);
            }
            this.shootdown = new TlbShootdown(cpus);
        } catch (RuntimeException e) {
            memory.close();
            throw e;
        }
    }

    @Override
    public MachineConfig config() {
        ensureOpen();
        return config;
    }

    @Override
    public AddressSpace createAddressSpace() {
        return createAddressSpace(0);
    }

    @Override
    public AddressSpace createAddressSpace(int homeNode) {
        synchronized (lock) {
            ensureOpen();
            checkNode(homeNode);
            return newAddressSpace(homeNode);
        }
    }

    /** A child of fork, registered like any new address space. */
    public SimAddressSpace newChild(int homeNode) {
        return newAddressSpace(homeNode);
    }

    private SimAddressSpace newAddressSpace(int homeNode) {
        int pcid = 1;
        while (pcid < byPcid.length && byPcid[pcid] != null) {
            pcid++;
        }
        if (pcid == byPcid.length) {
            throw new org.vmcore.api.OutOfMemoryException("all 4095 PCIDs are in use: close an address space first");
        }
        SimAddressSpace mm = new SimAddressSpace(this, nextSpaceId++, homeNode, pcid);
        byPcid[pcid] = mm;
        spaces.add(mm);
        return mm;
    }

    private long exitedFaults;

    /** Called by an address space when it exits, after its PCID was flushed everywhere. */
    public void exited(SimAddressSpace mm) {
        exitedFaults += mm.faultCount();
        spaces.remove(mm);
        byPcid[mm.pcid()] = null;
    }

    /** The live address space tagged with {@code pcid}, or null. */
    public AddressSpace addressSpaceOfPcid(int pcid) {
        synchronized (lock) {
            return pcid > 0 && pcid < byPcid.length ? byPcid[pcid] : null;
        }
    }

    /** A hardware walker for this machine's memory. */
    public Walker newWalker() {
        int bits = Math.max(46, 64 - Long.numberOfLeadingZeros(memory.frameCount() - 1) + 12);
        return new Walker(memory, Math.min(bits, PhysicalMemory.MAX_PHYS_BITS));
    }

    @Override
    public int cpuCount() {
        ensureOpen();
        return cpus.length;
    }

    @Override
    public Cpu cpu(int id) {
        ensureOpen();
        if (id < 0 || id >= cpus.length) {
            throw new InvalidArgumentException("cpu", id, "must be a CPU of this machine (0.." + (cpus.length - 1) + ")");
        }
        return cpus[id];
    }

    public SimCpu simCpu(int id) {
        return cpus[id];
    }

    public TlbShootdown shootdown() {
        return shootdown;
    }

    public StaleDetector detector() {
        return detector;
    }

    @Override
    public void flushTlbAll() {
        synchronized (lock) {
            ensureOpen();
            shootdown.flushAll();
        }
    }

    @Override
    public List<StaleAccess> staleAccesses() {
        ensureOpen();
        return detector.snapshot();
    }

    @Override
    public long staleAccessCount() {
        ensureOpen();
        return detector.count();
    }

    @Override
    public MigrationService migration() {
        ensureOpen();
        return migration;
    }

    public MigrationServiceImpl migrationImpl() {
        return migration;
    }

    @Override
    public Map<String, Long> vmstat() {
        Map<String, Long> out = new java.util.LinkedHashMap<>();
        long faults = 0;
        synchronized (lock) {
            ensureOpen();
            for (SimAddressSpace mm : spaces) {
                faults += mm.faultCount();
            }
            faults += exitedFaults;
        }
        out.put("pgfault", faults);
        out.putAll(migration.stats());
        long remoteSent = 0;
        long remoteReceived = 0;
        long localAll = 0;
        long localOne = 0;
        for (SimCpu cpu : cpus) {
            var s = cpu.stats();
            remoteSent += s.shootdownsSent();
            remoteReceived += s.shootdownsReceived();
            localAll += cpu.localFlushes(true); // the kernel counts local flushes on the initiator only
            localOne += cpu.localFlushes(false);
        }
        out.put("nr_tlb_remote_flush", remoteSent);
        out.put("nr_tlb_remote_flush_received", remoteReceived);
        out.put("nr_tlb_local_flush_all", localAll);
        out.put("nr_tlb_local_flush_one", localOne);
        out.put("stale_translation_uses", detector.count());
        return out;
    }

    @Override
    public void failNthAllocation(org.vmcore.api.AllocationKind kind, long nth) {
        ensureOpen();
        memory.faults().failNth(kind, nth);
    }

    @Override
    public void failNthAllocation(org.vmcore.api.AllocationKind kind, long nth, int times) {
        ensureOpen();
        memory.faults().failNth(kind, nth, times);
    }

    @Override
    public long allocationCount(org.vmcore.api.AllocationKind kind) {
        ensureOpen();
        if (kind == null) {
            throw new InvalidArgumentException("kind", null, "must not be null");
        }
        return memory.faults().count(kind);
    }

    @Override
    public List<String> checkInvariants() {
        synchronized (lock) {
            ensureOpen();
            return new org.vmcore.impl.check.InvariantChecker(this).check();
        }
    }

    /**
     * Called at the end of every public operation: with the option on, runs the checker and
     * throws on a violation. Skipped inside a migration (its observer runs mid-operation).
     */
    public void afterOperation(String operation) {
        if (migration.migratingOnThisThread()) {
            return; // the migration takes what its callbacks threw itself
        }
        if (config.checkInvariants() && !closed) {
            List<String> violations = new org.vmcore.impl.check.InvariantChecker(this).check();
            if (!violations.isEmpty()) {
                throw callbackFailures.suppressInto(new org.vmcore.api.InvariantViolationException(operation, violations));
            }
        }
        operationDone();
    }

    /**
     * The end of a public operation on the engine's thread: unless it runs inside a user callback
     * (or a migration) of an outer operation, the closes that callbacks asked for happen now, and
     * what callbacks threw is rethrown (to the outermost operation's caller).
     */
    public void operationDone() {
        if (callbackFailures.inCallback()) {
            return; // nested in a callback: what was collected surfaces when the outermost operation ends
        }
        if (!migration.migratingOnThisThread()) {
            completePendingCloses();
        }
        callbackFailures.rethrow();
    }

    /**
     * Closes what a user callback asked to close while the engine was mid-change below it: the
     * address spaces first, then the machine. Called where an operation has finished.
     */
    public void completePendingCloses() {
        Throwable failure = null;
        while (!pendingCloses.isEmpty()) {
            try {
                pendingCloses.removeFirst().close();
            } catch (Throwable e) {
                failure = addFailure(failure, e);
            }
        }
        if (closePending) {
            closePending = false;
            try {
                close();
            } catch (Throwable e) {
                failure = addFailure(failure, e);
            }
        }
        if (failure != null) {
            throw CallbackFailures.<RuntimeException>sneaky(callbackFailures.suppressInto(failure));
        }
    }

    /**
     * A public operation ends with {@code e}: the closes its callbacks asked for still happen
     * (unless it runs inside an outer callback), and what they and other callbacks threw is
     * suppressed into {@code e}, which is then thrown as it is (use as {@code throw operationFailed(e)}).
     */
    public RuntimeException operationFailed(Throwable e) {
        if (!callbackFailures.inCallback() && !migration.migratingOnThisThread()) {
            try {
                completePendingCloses();
            } catch (Throwable c) {
                if (c != e) {
                    e.addSuppressed(c);
                }
            }
        }
        throw CallbackFailures.<RuntimeException>sneaky(callbackFailures.suppressInto(e));
    }

    private static Throwable addFailure(Throwable first, Throwable next) {
        if (first == null) {
            return next;
        }
        first.addSuppressed(next);
        return first;
    }

    /**
     * Whether a close asked for now must wait: the engine's thread is inside a user callback,
     * with an operation half done below it. The address space is then closed when that operation ends.
     */
    public boolean deferClose(SimAddressSpace mm) {
        if (!callbackFailures.inCallback()) {
            return false;
        }
        if (!pendingCloses.contains(mm)) {
            pendingCloses.add(mm);
        }
        return true;
    }

    /** What user callbacks threw during the current operation, rethrown when it ends (engine thread, under the lock). */
    public CallbackFailures callbackFailures() {
        return callbackFailures;
    }

    /** The page-cache mappings of every hugetlbfs file and shmem object. */
    public List<FileMapping> fileMappings() {
        List<FileMapping> out = new ArrayList<>();
        mappings.forEachValue(o -> {
            if (o instanceof HugetlbFileImpl f) {
                out.add(f.mapping());
            } else if (o instanceof FileMapping m) {
                out.add(m);
            }
        });
        return out;
    }

    @Override
    public String pageTableDot(List<AddressSpace> addressSpaces, long start, long end, boolean withTlbs) {
        synchronized (lock) {
            ensureOpen();
            if (addressSpaces == null || addressSpaces.isEmpty()) {
                throw new InvalidArgumentException("addressSpaces", addressSpaces, "must name at least one address space");
            }
            if (Long.compareUnsigned(start, end) >= 0) {
                throw new InvalidArgumentException("end", end, "must be above start 0x" + Long.toHexString(start));
            }
            List<SimAddressSpace> spaces = new ArrayList<>();
            for (AddressSpace a : addressSpaces) {
                if (!(a instanceof SimAddressSpace mm) || mm.machine() != this) {
                    throw new InvalidArgumentException("addressSpace", a, "must belong to this machine (in addressSpaces)");
                }
                mm.ensureOpen();
                spaces.add(mm);
            }
            return new org.vmcore.impl.picture.PageTableGraph(this).draw(spaces, start, end, withTlbs);
        }
    }

    @Override
    public org.vmcore.api.MachineStats stats() {
        Map<String, Long> meminfo = new java.util.LinkedHashMap<>();
        synchronized (lock) {
            ensureOpen();
            long anon = 0;
            long shmem = 0;
            for (SimAddressSpace mm : spaces) {
                var c = mm.counters();
                anon += c.anonPages();
                shmem += c.shmemPages();
            }
            meminfo.put("MemTotal", memory.frameCount() * 4);
            meminfo.put("MemFree", memory.freeFrames() * 4);
            meminfo.put("AnonPages", anon * 4);
            meminfo.put("Shmem", shmem * 4);
            meminfo.put("PageTables", memory.pageTableFrames().get() * 4);
            long total = 0;
            long free = 0;
            for (int n = 0; n < config.nodeBytes().size(); n++) {
                var pool = hugetlbfs.pool(n, PageSize.SIZE_2M);
                total += pool.total();
                free += pool.free();
            }
            meminfo.put("HugePages_Total", total);
            meminfo.put("HugePages_Free", free);
            meminfo.put("HugePages_Rsvd", hugetlbfs.pool(PageSize.SIZE_2M).reserved());
            meminfo.put("HugePages_Surp", 0L);
            meminfo.put("Hugepagesize", 2048L);
        }
        return new org.vmcore.api.MachineStats(vmstat(), meminfo);
    }

    /** Moves a page-cache slot from {@code oldPfn} to {@code newPfn} (migration of a file page). */
    public void replaceInPageCache(Object owner, long oldPfn, long newPfn) {
        FileMapping mapping = owner instanceof HugetlbFileImpl f ? f.mapping() : (FileMapping) owner;
        long index = memory.descriptors().index(oldPfn) >>> memory.descriptors().order(oldPfn);
        if (mapping.find(index) != oldPfn) {
            throw new IllegalStateException("page cache slot " + index + " does not hold pfn 0x" + Long.toHexString(oldPfn));
        }
        mapping.add(index, newPfn);
    }

    @Override
    public void clearStaleAccesses() {
        ensureOpen();
        detector.clear();
    }

    @Override
    public boolean checkTranslation(String who, AddressSpace addressSpace, long va, long pfn, boolean write) {
        ensureOpen();
        if (!(addressSpace instanceof SimAddressSpace mm) || mm.machine() != this) {
            throw new InvalidArgumentException("addressSpace", addressSpace, "must belong to this machine");
        }
        synchronized (lock) {
            ensureOpen();
            long now = mm.isClosed() ? -1 : mm.pageAt(va);
            if (now == pfn) {
                return true;
            }
            if (config.detectStaleTranslations() && !mm.notifiers().isInvalidating(va)) {
                detector.record(who, mm, va, write, pfn, now);
            }
            return false;
        }
    }

    @Override
    public List<AddressSpace> addressSpaces() {
        synchronized (lock) {
            ensureOpen();
            return new ArrayList<>(spaces);
        }
    }

    @Override
    public HugetlbFs hugetlbfs() {
        ensureOpen();
        return hugetlbfs;
    }

    public HugetlbFsImpl hugetlbfsImpl() {
        return hugetlbfs;
    }

    @Override
    public RmapWalker rmap() {
        ensureOpen();
        return rmap;
    }

    public RmapWalkerImpl rmapImpl() {
        return rmap;
    }

    @Override
    public Page page(long pfn) {
        synchronized (lock) {
            ensureOpen();
            if (!memory.isValidPfn(pfn)) {
                throw new InvalidArgumentException("pfn", pfn, "must be below the frame count 0x" + Long.toHexString(memory.frameCount()));
            }
            FrameDescriptors d = memory.descriptors();
            long head = d.headOf(pfn); // any frame of a huge page reports it, as /proc/kpagecount does
            if (head < 0) {
                return new Page(pfn, PageSize.SIZE_4K, memory.nodeOf(pfn), 0, 0, "free", false, null, 0);
            }
            pfn = head;
            int flags = d.flags(pfn);
            long mapping = d.mapping(pfn);
            boolean anon = (flags & FrameFlags.ANON) != 0;
            HugetlbFile file = !anon && mappings.get(mapping) instanceof HugetlbFileImpl f ? f : null;
            PageSize size = switch (d.order(pfn)) {
                case 9 -> PageSize.SIZE_2M;
                case 18 -> PageSize.SIZE_1G;
                default -> PageSize.SIZE_4K;
            };
            return new Page(pfn, size, memory.nodeOf(pfn), d.mapcount(pfn), d.refcount(pfn),
                    FrameFlags.describe(flags), anon, file, d.index(pfn));
        }
    }

    @Override
    public long readPhysical(long pa, int width) {
        synchronized (lock) { // close frees the arena under the lock: never touch it after
            checkPhysical(pa, width);
            return memory.contents().read(pa, width);
        }
    }

    @Override
    public void writePhysical(long pa, int width, long value) {
        synchronized (lock) {
            checkPhysical(pa, width);
            memory.contents().write(pa, width, value);
        }
    }

    private void checkPhysical(long pa, int width) {
        ensureOpen();
        if (width != 1 && width != 2 && width != 4 && width != 8) {
            throw new InvalidArgumentException("width", width, "must be 1, 2, 4 or 8 bytes");
        }
        if (pa < 0 || pa > (memory.frameCount() << 12) - width) {
            throw new InvalidArgumentException("pa", pa, "must address " + width + " bytes inside memory of 0x"
                    + Long.toHexString(memory.frameCount() << 12) + " bytes");
        }
    }

    @Override
    public long freeFrames() {
        synchronized (lock) {
            ensureOpen();
            return memory.freeFrames();
        }
    }

    @Override
    public long offHeapBytes() {
        return memory.offHeapBytes();
    }

    @Override
    public void close() {
        synchronized (lock) {
            if (closed) {
                return;
            }
            if (callbackFailures.inCallback()) {
                closePending = true; // from inside a callback: the operation below finishes first
                return;
            }
            pendingCloses.clear();
            Throwable failure = null;
            try {
                for (SimAddressSpace mm : new ArrayList<>(spaces)) {
                    try {
                        mm.close();
                    } catch (Throwable e) { // a notifier's release threw: the address space is freed all the same
                        failure = addFailure(failure, e);
                    }
                }
            } finally {
                closed = true;
                // Kick every CPU out before the memory goes: an access in progress ends first, later ones see ClosedException.
                for (SimCpu cpu : cpus) {
                    cpu.machineClosed();
                }
                memory.close();
            }
            if (failure != null) {
                throw CallbackFailures.<RuntimeException>sneaky(failure);
            }
        }
    }

    /** The lock every mm operation holds. */
    public Object lock() {
        return lock;
    }

    public PhysicalMemory memory() {
        return memory;
    }

    public void ensureOpen() {
        if (closed) {
            throw new ClosedException("machine");
        }
    }

    public void checkNode(int node) {
        if (node < 0 || node >= config.nodeBytes().size()) {
            throw new InvalidArgumentException("node", node, "must be an existing node (0.." + (config.nodeBytes().size() - 1) + ")");
        }
    }

    public FileMapping newFileMapping() {
        return new FileMapping(nextMappingId += 2);
    }

    public AnonVma newAnonVma(AnonVma parent) {
        AnonVma anonVma = new AnonVma((nextMappingId += 2) | MAPPING_ANON, parent);
        mappings.put(anonVma.id(), anonVma);
        return anonVma;
    }

    public void register(long id, Object owner) {
        mappings.put(id, owner);
    }

    /** Forgets a file mapping or anon_vma that nothing refers to any more. */
    public void unregister(long id) {
        mappings.remove(id);
    }

    /** The file, shmem mapping or anon_vma behind a page's mapping field, or null. */
    public Object mappingOwner(long id) {
        return mappings.get(id);
    }
}
