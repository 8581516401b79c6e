package org.vmcore.impl;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.vmcore.api.Access;
import org.vmcore.api.Advice;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Cpu;
import org.vmcore.api.Errno;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.SegmentationFaultException;
import org.vmcore.api.ThpMode;
import org.vmcore.api.TlbConfig;

/**
 * Seeded model-based testing: random sequences of mmap, munmap, mprotect, fork, exit, faults,
 * CPU loads and stores, move_pages, migrate_pages, soft offline, madvise (DONTNEED, FREE, PAGEOUT,
 * COLD, WILLNEED), reclaim to a small swap device (swapped-out pages are read back by later
 * accesses, and by every eighth check), mremap and hugetlb truncation over
 * several processes, on private anonymous memory, shmem, a hugetlb window that all processes
 * share through one PMD table, and a small hugetlb file whose mappings cannot share tables. A simple reference model of contents says what every load must return (fork copies
 * private memory, shared memory stays shared); after every step the machine's invariants must
 * hold. A run is a pure function of its seed, so a failure can be replayed and shrunk: the
 * shortest failing prefix is found by bisection.
 */
final class ModelRunner {
    static final long GIB = 1L << 30;
    static final long MIB = 1L << 20;
    static final int ANON_SLOTS = 4;
    static final int SHMEM_SLOT = ANON_SLOTS;
    static final int HUGE_SLOT = ANON_SLOTS + 1;
    static final int SMALL_SLOT = ANON_SLOTS + 2; // a 64 MiB hugetlb mapping: no PMD sharing, and truncated now and then
    static final int SLOTS = ANON_SLOTS + 3;
    static final int SMALL_PAGES = 32;
    static final int PAGES = 8; // pages touched per slot
    static final int MAX_PROCS = 6;
    static final int CPUS = MAX_PROCS;
    static final long WORD = 0x40; // the model tracks one 8-byte word per page, at this offset
    static final long SWAP_PAGES = 96; // fewer than the private pages the processes may touch: the device fills up

    /** The model of one shmem object: its pages' words. */
    static final class Shmem {
        final long[] words = new long[PAGES];
    }

    /** The model of a small hugetlb file: its words and its size in huge pages. */
    static final class SmallFile {
        final HugetlbFile file;
        final long[] words = new long[PAGES];
        long pages = SMALL_PAGES;

        SmallFile(HugetlbFile file) {
            this.file = file;
        }
    }

    /** The model of one mapped slot. */
    static final class Slot {
        boolean writable;
        long[] privateWords; // private anonymous: copied on fork
        Shmem shmem;         // shmem: shared by reference
        boolean huge;        // the shared hugetlb window: words in the file model
        SmallFile small;     // the small hugetlb file this slot maps
    }

    /** The model of one process. */
    static final class Proc {
        AddressSpace mm;
        final Slot[] slots = new Slot[SLOTS];
    }

    private final long seed;
    private final Random random;
    private final Machine machine;
    private final HugetlbFile file;
    private final long[] fileWords = new long[PAGES];
    private SmallFile small;
    private int smallFiles;
    private final List<Proc> procs = new ArrayList<>();
    private final List<String> log = new ArrayList<>();
    private long nextValue = 1;
    private int checks;

    ModelRunner(long seed) {
        this.seed = seed;
        this.random = new Random(seed);
        // small TLBs: entries get evicted and refilled, and the checker reads them quickly
        // the seed picks the transparent-huge-page mode: with 'always' every anonymous slot's first
        // 2 MiB is a huge page, split and collapsed as the steps go
        this.machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(CPUS).tlb(new TlbConfig(64, 4, 32, 4, 4, 4, 2, 4, 8))
                .thp(ThpMode.values()[(int) Math.floorMod(seed, 3L)])
                .hugePages(0, PageSize.SIZE_2M, 300)
                .hugePages(1, PageSize.SIZE_2M, 300).swap((SWAP_PAGES + 1) * 4096).build();
        this.file = machine.hugetlbfs().create("shm", GIB, PageSize.SIZE_2M);
        Proc first = new Proc();
        first.mm = machine.createAddressSpace();
        procs.add(first);
    }

    void close() {
        machine.close();
    }

    List<String> log() {
        return log;
    }

    static long slotBase(int slot) {
        return slot == HUGE_SLOT ? 128 * GIB : slot == SMALL_SLOT ? 192 * GIB : 0x10_0000_0000L + slot * 16 * MIB;
    }

    static long pageAddress(int slot, int page) {
        return slotBase(slot) + (slot >= HUGE_SLOT ? page * 2 * MIB : page * 4096L) + WORD;
    }

    /** Runs {@code steps} random steps; with {@code checkEachStep}, checks invariants and contents after each. */
    void run(int steps, boolean checkEachStep) {
        for (int i = 0; i < steps; i++) {
            step(i);
            if (checkEachStep) {
                check("after step " + i + " (" + log.getLast() + ")");
            }
        }
    }

    void invariantsOnly() {
        machine.checkInvariants();
    }

    /** The invariants, and every word of every mapped page read through a CPU, against the model. */
    void check(String when) {
        List<String> violations = machine.checkInvariants();
        if (!violations.isEmpty()) {
            throw new AssertionError("invariants " + when + ":\n  " + String.join("\n  ", violations));
        }
        boolean swapIn = (++checks & 7) == 0; // else swapped-out pages stay out: their entries meet later steps
        for (int p = 0; p < procs.size(); p++) {
            Proc proc = procs.get(p);
            for (int s = 0; s < SLOTS; s++) {
                if (proc.slots[s] == null) {
                    continue;
                }
                int readable = 0;
                while (readable < PAGES && !beyondEof(proc.slots[s], readable)) {
                    readable++;
                }
                int[] pages = new int[readable];
                int n = 0;
                for (int page = 0; page < readable; page++) {
                    if (swapIn || proc.slots[s].privateWords == null || !swappedOut(proc.mm, pageAddress(s, page))) {
                        pages[n++] = page;
                    }
                }
                long[] vas = new long[n];
                long[] words = new long[n];
                for (int i = 0; i < n; i++) {
                    vas[i] = pageAddress(s, pages[i]);
                }
                cpuFor(p).loadAll(vas, 8, words); // the batched path, checked word by word
                for (int i = 0; i < n; i++) {
                    int page = pages[i];
                    long expected = expected(proc.slots[s], page);
                    long actual = words[i];
                    if (actual != expected) {
                        throw new AssertionError("contents " + when + ": process " + p + " (" + proc.mm + ") slot " + s + " page "
                                + page + " reads " + actual + ", the model says " + expected);
                    }
                }
            }
        }
    }

    /** Whether the entry of va is a swap entry (not present, not empty). */
    private static boolean swappedOut(AddressSpace mm, long va) {
        var e = mm.pageTableView().entry(va & ~0xFFFL, PageTableLevel.PTE);
        return e.isPresent() && !e.get().present() && !e.get().none();
    }

    private static boolean beyondEof(Slot slot, int page) {
        return slot != null && slot.small != null && page >= slot.small.pages;
    }

    private long expected(Slot slot, int page) {
        if (slot.small != null) {
            return slot.small.words[page];
        }
        if (slot.huge) {
            return fileWords[page];
        }
        return slot.shmem != null ? slot.shmem.words[page] : slot.privateWords[page];
    }

    private Cpu cpuFor(int proc) {
        Cpu cpu = machine.cpu(proc % CPUS);
        if (cpu.current() != procs.get(proc).mm) {
            cpu.switchTo(procs.get(proc).mm);
        }
        return cpu;
    }

    private void step(int i) {
        int logged = log.size();
        try {
            randomStep();
        } finally {
            if (log.size() == logged) {
                log.add("(nothing to do)"); // one log line per step: the log's length is the step count
            }
        }
    }

    private void randomStep() {
        int p = random.nextInt(procs.size());
        Proc proc = procs.get(p);
        int s = random.nextInt(SLOTS);
        Slot slot = proc.slots[s];
        int page = random.nextInt(PAGES);
        int op = random.nextInt(100);
        if (slot == null && op < 60) {
            map(p, s);
        } else if (op < 30) {
            store(p, s, page);
        } else if (op < 45) {
            load(p, s, page);
        } else if (op < 50) {
            if (slot != null) {
                log.add("munmap p" + p + " slot " + s);
                proc.mm.munmap(slotBase(s), slotLength(s));
                proc.slots[s] = null;
            } else {
                map(p, s);
            }
        } else if (op < 57) {
            if (slot != null) {
                boolean writable = random.nextBoolean();
                log.add("mprotect p" + p + " slot " + s + (writable ? " rw" : " r"));
                proc.mm.mprotect(slotBase(s), slotLength(s), writable ? Protection.READ_WRITE : Protection.READ);
                slot.writable = writable;
            }
        } else if (op < 63) {
            if (procs.size() < MAX_PROCS) {
                fork(p);
            }
        } else if (op < 67) {
            if (procs.size() > 1) {
                log.add("exit p" + p);
                proc.mm.close();
                procs.remove(p);
            }
        } else if (op < 77) {
            Access access = random.nextBoolean() ? Access.READ : Access.WRITE;
            log.add("fault p" + p + " slot " + s + " page " + page + " " + access);
            try {
                proc.mm.fault(pageAddress(s, page), access);
                expectMapped(slot, page, access == Access.WRITE, "fault");
            } catch (SegmentationFaultException e) {
                expectFault(slot, page, access == Access.WRITE, e, "fault");
            }
        } else if (op < 87) {
            int node = random.nextInt(2);
            log.add("move_pages p" + p + " slot " + s + " page " + page + " -> node " + node);
            machine.migration().movePages(proc.mm, new long[] {pageAddress(s, page)}, new int[] {node},
                    random.nextBoolean() ? MigrationService.MPOL_MF_MOVE : MigrationService.MPOL_MF_MOVE_ALL);
        } else if (op < 91) {
            int from = random.nextInt(2);
            log.add("migrate_pages p" + p + " " + from + " -> " + (1 - from));
            machine.migration().migratePages(proc.mm, new int[] {from}, new int[] {1 - from},
                    random.nextBoolean() ? MigrationService.MPOL_MF_MOVE : MigrationService.MPOL_MF_MOVE_ALL);
        } else if (op < 93) {
            reclaim();
        } else if (op < 94) {
            truncate();
        } else if (op < 95) {
            long pfn = slot == null ? -1 : proc.mm.pageAt(pageAddress(s, page));
            if (pfn >= 0) {
                log.add("soft_offline p" + p + " slot " + s + " page " + page);
                machine.migration().softOffline(pfn);
            }
        } else if (op < 96) {
            dontneed(p, s, page);
        } else if (op < 97) {
            if (random.nextBoolean()) {
                freeAndPageout(p, s, page);
            } else {
                swapAdvice(p, s, page);
            }
        } else if (op < 98) {
            moveOutAndBack(p, s);
        } else if (op < 99) {
            hugePages(p, s);
        } else {
            load(p, s, page);
        }
    }

    /**
     * madvise(MADV_DONTNEED) of a few pages of a slot: private anonymous words go back to zero,
     * shared memory (shmem, hugetlbfs) keeps its words; an unmapped slot answers -ENOMEM.
     */
    private void dontneed(int p, int s, int page) {
        Proc proc = procs.get(p);
        Slot slot = proc.slots[s];
        int count = 1 + random.nextInt(PAGES - page);
        long pageBytes = s >= HUGE_SLOT ? 2 * MIB : 4096;
        log.add("madvise p" + p + " slot " + s + " pages " + page + ".." + (page + count - 1) + " DONTNEED");
        int rc = proc.mm.madvise(slotBase(s) + page * pageBytes, count * pageBytes, Advice.DONTNEED);
        if (rc != (slot == null ? -Errno.ENOMEM : 0)) {
            throw new AssertionError("madvise p" + p + " slot " + s + " returned " + rc + (slot == null ? ", the slot is not mapped" : ""));
        }
        if (slot != null && slot.privateWords != null) {
            Arrays.fill(slot.privateWords, page, page + count, 0);
        }
    }

    /**
     * madvise(MADV_FREE) then MADV_PAGEOUT of a few pages: a private page that only this process
     * maps (asked of the machine first) is dropped and reads zero; one shared with a forked
     * relative keeps its words. Shared memory refuses FREE (-EINVAL) and keeps everything;
     * hugetlb refuses both; an unmapped slot is -ENOMEM.
     */
    private void freeAndPageout(int p, int s, int page) {
        Proc proc = procs.get(p);
        Slot slot = proc.slots[s];
        int count = 1 + random.nextInt(PAGES - page);
        long pageBytes = s >= HUGE_SLOT ? 2 * MIB : 4096;
        long start = slotBase(s) + page * pageBytes;
        log.add("madvise p" + p + " slot " + s + " pages " + page + ".." + (page + count - 1) + " FREE, PAGEOUT");
        boolean[] dropped = new boolean[PAGES];
        boolean[] either = new boolean[PAGES];
        for (int i = page; slot != null && slot.privateWords != null && i < page + count; i++) {
            long pfn = proc.mm.pageAt(pageAddress(s, i));
            var pg = pfn < 0 ? null : machine.page(pfn);
            // a swapped-out page is discarded; one in the swap cache goes only if no relative's swap
            // entry names its slot, which the API does not show: either outcome is right. A page of a
            // transparent huge page that no relative maps may go (FREE splits it unless something
            // holds it) or stay; one a relative maps stays (madvise_free_huge_pmd passes it by).
            boolean huge = pg != null && pg.size() == PageSize.SIZE_2M;
            dropped[i] = pfn < 0 || pg.anonymous() && pg.mapcount() == 1 && pg.refcount() == 1 && !huge;
            either[i] = !dropped[i] && pg.anonymous() && (pg.mapcount() == 1 || huge && !mappedByAnother(p, pg.pfn()));
        }
        int free = proc.mm.madvise(start, count * pageBytes, Advice.FREE);
        int pageout = proc.mm.madvise(start, count * pageBytes, Advice.PAGEOUT);
        int expectFree = slot == null ? -Errno.ENOMEM : slot.privateWords != null ? 0 : -Errno.EINVAL;
        int expectPageout = slot == null ? -Errno.ENOMEM : s >= HUGE_SLOT ? -Errno.EINVAL : 0;
        if (free != expectFree || pageout != expectPageout) {
            throw new AssertionError("madvise FREE/PAGEOUT p" + p + " slot " + s + " returned " + free + "/" + pageout
                    + ", expected " + expectFree + "/" + expectPageout);
        }
        for (int i = 0; i < PAGES; i++) {
            if (dropped[i]) {
                slot.privateWords[i] = 0;
            } else if (either[i]) {
                long v = cpuFor(p).load(pageAddress(s, i), 8);
                if (v != 0 && v != slot.privateWords[i]) {
                    throw new AssertionError("madvise FREE/PAGEOUT p" + p + " slot " + s + " page " + i + " reads " + v
                            + ", neither 0 nor the model's " + slot.privateWords[i]);
                }
                slot.privateWords[i] = v;
            }
        }
    }

    /** Whether a process other than {@code p} maps a page of the huge page at {@code head} at one of the model's pages. */
    private boolean mappedByAnother(int p, long head) {
        for (int q = 0; q < procs.size(); q++) {
            for (int s = 0; q != p && s < ANON_SLOTS; s++) {
                for (int i = 0; procs.get(q).slots[s] != null && i < PAGES; i++) {
                    long pfn = procs.get(q).mm.pageAt(pageAddress(s, i));
                    if (pfn >= head && pfn < head + 512) {
                        return true;
                    }
                }
            }
        }
        return false;
    }

    /**
     * Machine.reclaim of a few pages of a node (shrink_node): swapped-out pages keep their words,
     * which the next access reads back (do_swap_page), and no lazy-free page is left by
     * {@link #freeAndPageout} to be dropped.
     */
    private void reclaim() {
        int node = random.nextInt(2);
        long pages = 1 + random.nextInt(48);
        long got = machine.reclaim(node, pages);
        log.add("reclaim node " + node + " pages " + pages + ": " + got);
        if (got < 0 || got > pages) {
            throw new AssertionError("reclaim of " + pages + " pages reclaimed " + got);
        }
    }

    /**
     * madvise PAGEOUT (swaps out the private pages only this process maps), COLD or WILLNEED
     * (readahead into the swap cache) of a few pages: no word changes. Hugetlb refuses PAGEOUT and
     * COLD (-EINVAL) and takes WILLNEED; an unmapped slot is -ENOMEM.
     */
    private void swapAdvice(int p, int s, int page) {
        Proc proc = procs.get(p);
        Slot slot = proc.slots[s];
        int count = 1 + random.nextInt(PAGES - page);
        long pageBytes = s >= HUGE_SLOT ? 2 * MIB : 4096;
        Advice advice = new Advice[] {Advice.PAGEOUT, Advice.COLD, Advice.WILLNEED}[random.nextInt(3)];
        log.add("madvise p" + p + " slot " + s + " pages " + page + ".." + (page + count - 1) + " " + advice);
        int rc = proc.mm.madvise(slotBase(s) + page * pageBytes, count * pageBytes, advice);
        int expected = slot == null ? -Errno.ENOMEM : s >= HUGE_SLOT && advice != Advice.WILLNEED ? -Errno.EINVAL : 0;
        if (rc != expected) {
            throw new AssertionError("madvise " + advice + " p" + p + " slot " + s + " returned " + rc + ", expected " + expected);
        }
    }

    /**
     * mremap of a slot to a scratch address (2 MiB aligned, so whole PTE tables move, or for 4 KiB
     * slots 4 KiB off, so entries move one by one) and back: every word must be where it was (a
     * hugetlb window is unshared on the way, its pages fault back in). An unmapped slot is -EFAULT.
     */
    private void moveOutAndBack(int p, int s) {
        Proc proc = procs.get(p);
        Slot slot = proc.slots[s];
        long scratch = 0x40_0000_0000L + (s < HUGE_SLOT && random.nextBoolean() ? 4096 : 0);
        log.add("mremap p" + p + " slot " + s + " to 0x" + Long.toHexString(scratch) + " and back");
        int move = MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED;
        if (slot == null) {
            try {
                proc.mm.mremap(slotBase(s), slotLength(s), slotLength(s), move, scratch);
                throw new AssertionError("mremap of an unmapped slot was not refused");
            } catch (InvalidArgumentException expected) {
                return;
            }
        }
        proc.mm.mremap(slotBase(s), slotLength(s), slotLength(s), move, scratch);
        proc.mm.mremap(scratch, slotLength(s), slotLength(s), move, slotBase(s));
    }

    /**
     * MADV_HUGEPAGE or NOHUGEPAGE on a slot, MADV_COLLAPSE of its first 2 MiB, a khugepaged step,
     * or split_huge_pages over the slot: contents never change. Hugetlb refuses the advice (-EINVAL), an unmapped slot is
     * -ENOMEM; a collapse may fail (-EAGAIN, -ENOMEM, -EINVAL for memory it cannot collapse).
     */
    private void hugePages(int p, int s) {
        Proc proc = procs.get(p);
        Slot slot = proc.slots[s];
        int what = random.nextInt(5);
        if (what == 3) {
            log.add("khugepaged scan 4");
            machine.khugepaged().scan(4);
            return;
        }
        if (what == 4) {
            log.add("split_huge_pages p" + p + " slot " + s);
            machine.migration().splitHugePages(proc.mm, slotBase(s), slotBase(s) + slotLength(s));
            return;
        }
        Advice advice = what == 0 ? Advice.HUGEPAGE : what == 1 ? Advice.NOHUGEPAGE : Advice.COLLAPSE;
        long length = what == 2 ? 2 * MIB : slotLength(s);
        log.add("madvise p" + p + " slot " + s + " " + advice);
        int rc = proc.mm.madvise(slotBase(s), length, advice);
        boolean ok = slot == null ? rc == -Errno.ENOMEM : s >= HUGE_SLOT ? rc == -Errno.EINVAL
                : advice != Advice.COLLAPSE ? rc == 0
                : rc == 0 || rc == -Errno.EAGAIN || rc == -Errno.ENOMEM || rc == -Errno.EINVAL;
        if (!ok) {
            throw new AssertionError("madvise " + advice + " p" + p + " slot " + s + " returned " + rc);
        }
    }

    private static long slotLength(int s) {
        return s == HUGE_SLOT ? GIB : s == SMALL_SLOT ? SMALL_PAGES * 2 * MIB : 16 * MIB;
    }

    private void truncate() {
        if (small == null || small.pages == 0) {
            return;
        }
        long pages = random.nextInt((int) small.pages + 1);
        log.add("truncate small file " + small.file.name() + " to " + pages + " huge pages");
        small.file.truncate(pages * 2 * MIB);
        small.pages = pages;
        for (long page = pages; page < PAGES; page++) {
            small.words[(int) page] = 0;
        }
    }

    private void map(int p, int s) {
        Proc proc = procs.get(p);
        Slot slot = new Slot();
        slot.writable = true;
        if (s == SMALL_SLOT) {
            if (small == null || small.pages < SMALL_PAGES) { // truncated files stay small: map a fresh one
                if (small != null && small.pages > 0) { // the old one goes to zero: its pool pages come back
                    small.file.truncate(0);
                    small.pages = 0;
                    Arrays.fill(small.words, 0);
                }
                small = new SmallFile(machine.hugetlbfs().create("small-" + smallFiles++, SMALL_PAGES * 2 * MIB, PageSize.SIZE_2M));
            }
            log.add("mmap p" + p + " small hugetlb file " + small.file.name());
            try {
                proc.mm.mmap(small.file, 0, slotBase(s), slotLength(s), Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            } catch (OutOfMemoryException e) {
                log.set(log.size() - 1, log.getLast() + " -> ENOMEM"); // the pool cannot reserve: nothing changed
                return;
            }
            slot.small = small;
        } else if (s == HUGE_SLOT) {
            log.add("mmap p" + p + " hugetlb window");
            proc.mm.mmap(file, 0, slotBase(s), GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            slot.huge = true;
        } else if (s == SHMEM_SLOT) {
            log.add("mmap p" + p + " shmem slot " + s);
            proc.mm.mmap(slotBase(s), slotLength(s), Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS
                    | MapFlags.MAP_FIXED);
            slot.shmem = new Shmem();
        } else {
            log.add("mmap p" + p + " anon slot " + s);
            proc.mm.mmap(slotBase(s), slotLength(s), Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS
                    | MapFlags.MAP_FIXED);
            slot.privateWords = new long[PAGES];
        }
        proc.slots[s] = slot;
    }

    private void fork(int p) {
        Proc parent = procs.get(p);
        Proc child = new Proc();
        log.add("fork p" + p + " -> p" + procs.size());
        child.mm = parent.mm.fork();
        for (int s = 0; s < SLOTS; s++) {
            Slot from = parent.slots[s];
            if (from == null) {
                continue;
            }
            Slot copy = new Slot();
            copy.writable = from.writable;
            copy.huge = from.huge;
            copy.small = from.small;
            copy.shmem = from.shmem;
            copy.privateWords = from.privateWords == null ? null : Arrays.copyOf(from.privateWords, PAGES);
            child.slots[s] = copy;
        }
        procs.add(child);
    }

    private void store(int p, int s, int page) {
        Slot slot = procs.get(p).slots[s];
        long value = (seed << 32) ^ nextValue++;
        log.add("store p" + p + " slot " + s + " page " + page + " = " + value);
        try {
            if ((value & 1) == 0) {
                cpuFor(p).store(pageAddress(s, page), 8, value);
            } else {
                cpuFor(p).storeAll(new long[] {pageAddress(s, page)}, 8, new long[] {value});
            }
            expectMapped(slot, page, true, "store");
            if (slot.small != null) {
                slot.small.words[page] = value;
            } else if (slot.huge) {
                fileWords[page] = value;
            } else if (slot.shmem != null) {
                slot.shmem.words[page] = value;
            } else {
                slot.privateWords[page] = value;
            }
        } catch (SegmentationFaultException e) {
            expectFault(slot, page, true, e, "store");
        }
    }

    private void load(int p, int s, int page) {
        Slot slot = procs.get(p).slots[s];
        log.add("load p" + p + " slot " + s + " page " + page);
        try {
            long v;
            if ((log.size() & 1) == 0) {
                v = cpuFor(p).load(pageAddress(s, page), 8);
            } else { // a byte-array read: the page-at-a-time copy path
                byte[] bytes = new byte[8];
                cpuFor(p).read(pageAddress(s, page), bytes, 0, 8);
                v = java.nio.ByteBuffer.wrap(bytes).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
            }
            expectMapped(slot, page, false, "load");
            if (v != expected(slot, page)) {
                throw new AssertionError("load p" + p + " slot " + s + " page " + page + " read " + v + ", the model says "
                        + expected(slot, page));
            }
        } catch (SegmentationFaultException e) {
            expectFault(slot, page, false, e, "load");
        }
    }

    private static void expectMapped(Slot slot, int page, boolean write, String what) {
        if (slot == null || (write && !slot.writable) || beyondEof(slot, page)) {
            throw new AssertionError(what + " succeeded where the model expects a segmentation fault");
        }
    }

    private static void expectFault(Slot slot, int page, boolean write, SegmentationFaultException e, String what) {
        boolean expected = slot == null ? e.cause() == SegmentationFaultException.Cause.NO_VMA
                : write && !slot.writable ? e.cause() == SegmentationFaultException.Cause.PROTECTION
                : beyondEof(slot, page) && e.cause() == SegmentationFaultException.Cause.BEYOND_EOF;
        if (!expected) {
            throw new AssertionError(what + " faulted (" + e.getMessage() + ") where the model expects success", e);
        }
    }

    /** Runs one seed, checking after every step; on failure shrinks and reports seed and shortest failing prefix. */
    static void runChecked(long seed, int steps) {
        ModelRunner runner = new ModelRunner(seed);
        try {
            runner.run(steps, true);
        } catch (Throwable failure) {
            int failedAt = runner.log().size();
            runner.close();
            int shortest = shortestFailingPrefix(seed, failedAt);
            ModelRunner replay = new ModelRunner(seed);
            try {
                replay.run(shortest - 1, false);
            } catch (Throwable ignored) {
                // the log holds what ran
            }
            List<String> prefix = replay.log();
            replay.close();
            throw new AssertionError("model-based test failed: seed " + seed + ", shortest failing prefix " + shortest
                    + " steps:\n  " + String.join("\n  ", prefix.subList(Math.max(0, prefix.size() - 30), prefix.size()))
                    + "\n(last 30 steps shown; replay with new ModelRunner(" + seed + ").run(" + shortest + ", true))", failure);
        }
        runner.close();
    }

    /** Bisection over prefix lengths: the smallest n whose run of n steps, checked at its end, fails. */
    static int shortestFailingPrefix(long seed, int upper) {
        return shortestFailingPrefixOf(n -> fails(seed, n), upper);
    }

    /** The smallest n in [1, upper] for which {@code fails} holds, given that it holds for upper and is monotone. */
    static int shortestFailingPrefixOf(java.util.function.IntPredicate fails, int upper) {
        int lo = 1;
        int hi = upper;
        while (lo < hi) {
            int mid = (lo + hi) >>> 1;
            if (fails.test(mid)) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        return lo;
    }

    private static boolean fails(long seed, int steps) {
        ModelRunner r = new ModelRunner(seed);
        try {
            r.run(steps, false);
            r.check("at the end of " + steps + " steps");
            return false;
        } catch (Throwable e) {
            return true;
        } finally {
            r.close();
        }
    }

    Map<String, Long> vmstat() {
        return new HashMap<>(machine.vmstat());
    }
}
