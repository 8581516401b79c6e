package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Nested;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.AllocationKind;
import org.vmcore.api.ClosedException;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.OutOfMemoryException;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.TlbConfig;
import org.vmcore.api.VmException;
import org.vmcore.api.VmstatCounter;
import org.vmcore.api.VmstatSnapshot;

/**
 * Bad input across the public API: each call gets a clear exception that names the value and
 * the rule (InvalidArgumentException; ClosedException for a closed machine or an exited address
 * space; OutOfMemoryException for a reservation the pool cannot give), and the machine's state
 * (counts, VMAs, page-table dumps, pools, vmstat, TLBs) is the same before and after.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class BadInputTest {
    private static final long VA = 0x10_0000_0000L;
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final int FIXED = MapFlags.MAP_FIXED;
    private static final int SHARED = MapFlags.MAP_SHARED;

    private Machine machine;
    private Machine closedMachine;
    private Machine foreign;
    private AddressSpace foreignMm;
    private AddressSpace mm;
    private AddressSpace exited;
    private HugetlbFile file;
    private HugetlbFile giant;
    private HugetlbFile big;
    private Cpu cpu;
    private long anonPfn;

    /** One call and the words its message must contain. */
    interface Call {
        void run(BadInputTest t);
    }

    @BeforeAll
    void build() {
        machine = Machine.builder().node(2 * GIB).node(2 * GIB).cpus(2).hugePages(0, PageSize.SIZE_2M, 64)
                .hugePages(1, PageSize.SIZE_1G, 1).build();
        file = machine.hugetlbfs().create("f", 64 * MIB, PageSize.SIZE_2M);
        giant = machine.hugetlbfs().create("giant", GIB, PageSize.SIZE_1G);
        big = machine.hugetlbfs().create("big", GIB, PageSize.SIZE_2M);
        mm = machine.createAddressSpace();
        mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON | FIXED | MapFlags.MAP_POPULATE);
        mm.mmap(file, 0, 4 * GIB, 8 * MIB, Protection.READ_WRITE, SHARED | FIXED | MapFlags.MAP_POPULATE);
        mm.mmap(VA + MIB, 4096, Protection.READ, ANON | FIXED | MapFlags.MAP_POPULATE);
        anonPfn = mm.pageAt(VA);
        cpu = machine.cpu(0);
        cpu.switchTo(mm);
        cpu.store(VA, 8, 1);
        exited = machine.createAddressSpace();
        exited.close();
        closedMachine = Machine.builder().build();
        closedMachine.close();
        foreign = Machine.builder().build();
        foreignMm = foreign.createAddressSpace();
    }

    @AfterAll
    void close() {
        foreign.close();
        machine.close();
    }

    /** A call rejected with an InvalidArgumentException whose message contains every word. */
    private static Arguments c(String name, Call call, String... words) {
        return rejected(name, InvalidArgumentException.class, call, words);
    }

    /** A call on a closed machine or exited address space: a ClosedException that says so. */
    private static Arguments closed(String name, Call call) {
        return rejected(name, ClosedException.class, call, "closed");
    }

    private static Arguments rejected(String name, Class<? extends VmException> type, Call call, String... words) {
        return Arguments.of(name, call, type, words);
    }

    /** A table of bad calls: each nested class below holds those of one part of the API. */
    @TestInstance(TestInstance.Lifecycle.PER_CLASS)
    abstract class Table {
        abstract List<Arguments> calls();

        @ParameterizedTest(name = "{0}")
        @MethodSource("calls")
        void rejectedWithTheRuleAndNothingChanges(String name, Call call, Class<? extends VmException> type, String[] words) {
            String before = snapshot();
            assertThatThrownBy(() -> call.run(BadInputTest.this)).isInstanceOf(type).satisfies(e -> {
                for (String w : words) {
                    assertThat(e.getMessage()).as("message of: " + name).contains(w);
                }
            });
            assertThat(snapshot()).as("state after: " + name).isEqualTo(before);
        }
    }

    private String snapshot() {
        StringBuilder sb = new StringBuilder(Fixtures.state(machine));
        sb.append(machine.vmstat()).append('\n');
        sb.append(machine.cpu(0).tlbEntries()).append('\n');
        sb.append(machine.checkInvariants()).append('\n');
        sb.append(machine.page(anonPfn)).append('\n');
        return sb.toString();
    }

    @Nested
    @DisplayName("mmap of anonymous memory")
    class MmapAnonymous extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("zero length", t -> t.mm.mmap(0, 0, Protection.READ, ANON), "length=0x0", "positive"));
            l.add(c("negative length", t -> t.mm.mmap(0, -1, Protection.READ, ANON), "length=", "positive"));
            l.add(c("length beyond user space", t -> t.mm.mmap(0, 1L << 48, Protection.READ, ANON), "length=", "at most"));
            l.add(c("unaligned fixed address", t -> t.mm.mmap(VA + 3, 4096, Protection.READ, ANON | FIXED), "address=", "aligned"));
            l.add(c("non-canonical fixed address", t -> t.mm.mmap(0x0000_8000_0000_0000L, 4096, Protection.READ, ANON | FIXED),
                    "address=0x800000000000", "user space"));
            l.add(c("kernel-half fixed address", t -> t.mm.mmap(0xffff_8000_0000_0000L, 4096, Protection.READ, ANON | FIXED),
                    "address=", "user space"));
            l.add(c("fixed address below mmap_min_addr", t -> t.mm.mmap(0, 4096, Protection.READ, ANON | FIXED), "address=0x0",
                    "mmap_min_addr"));
            l.add(c("fixed range past user space", t -> t.mm.mmap(0x7fff_ffff_d000L, 16384, Protection.READ, ANON | FIXED),
                    "length=", "TASK_SIZE_MAX"));
            // TASK_SIZE_MAX = 2^47 - 4096: get_unmapped_area refuses addr > TASK_SIZE - len (-ENOMEM)
            l.add(c("fixed mapping of the last user page", t -> t.mm.mmap(0x7fff_ffff_f000L, 4096, Protection.READ, ANON | FIXED),
                    "address=0x7ffffffff000", "TASK_SIZE_MAX 0x7ffffffff000"));
            l.add(c("fixed mapping reaching the last user page", t -> t.mm.mmap(0x7fff_ffff_e000L, 8192, Protection.READ, ANON | FIXED),
                    "length=0x2000", "TASK_SIZE_MAX 0x7ffffffff000", "-ENOMEM"));
            l.add(c("hugetlb fixed mapping of the last 2 MiB", t -> t.mm.mmap(t.file, 0, 0x7fff_ffe0_0000L, 2 * MIB, Protection.READ,
                    SHARED | FIXED), "length=0x200000", "TASK_SIZE_MAX 0x7ffffffff000"));
            l.add(c("shared and private", t -> t.mm.mmap(0, 4096, Protection.READ, ANON | SHARED), "flags=", "exactly one"));
            l.add(c("neither shared nor private", t -> t.mm.mmap(0, 4096, Protection.READ, MapFlags.MAP_ANONYMOUS), "flags=",
                    "exactly one"));
            l.add(c("unknown flag bits", t -> t.mm.mmap(0, 4096, Protection.READ, ANON | 0x4000_0000), "flags=", "0x40000000"));
            l.add(c("anonymous call without MAP_ANONYMOUS", t -> t.mm.mmap(0, 4096, Protection.READ, MapFlags.MAP_PRIVATE),
                    "flags=", "MAP_ANONYMOUS"));
            l.add(c("null protection", t -> t.mm.mmap(0, 4096, null, ANON), "prot=null"));
            l.add(c("overlap with MAP_FIXED_NOREPLACE", t -> t.mm.mmap(VA, 4096, Protection.READ, ANON | MapFlags.MAP_FIXED_NOREPLACE),
                    "address=", "EEXIST"));
            l.add(c("MAP_FIXED splitting a hugetlb mapping off its page size", t -> t.mm.mmap(4 * GIB + 4096, 4096, Protection.READ,
                    ANON | FIXED), "address=", "hugetlb"));
            return l;
        }
    }

    @Nested
    @DisplayName("mmap of a hugetlbfs file")
    class MmapHugetlb extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("null file", t -> t.mm.mmap(null, 0, 0, 2 * MIB, Protection.READ, SHARED), "file=null"));
            l.add(c("file of another machine", t -> {
                try (Machine other = Machine.builder().node(GIB).hugePages(0, PageSize.SIZE_2M, 1).build()) {
                    t.mm.mmap(other.hugetlbfs().create("x", 2 * MIB, PageSize.SIZE_2M), 0, 0, 2 * MIB, Protection.READ, SHARED);
                }
            }, "file=", "this machine"));
            l.add(c("negative file offset", t -> t.mm.mmap(t.file, -2 * MIB, 0, 2 * MIB, Protection.READ, SHARED), "offset=", "non-negative"));
            l.add(c("unaligned file offset", t -> t.mm.mmap(t.file, 4096, 0, 2 * MIB, Protection.READ, SHARED), "offset=0x1000"));
            l.add(c("length not a multiple of the file's page size", t -> t.mm.mmap(t.file, 0, 0, MIB, Protection.READ, SHARED),
                    "length=", "page size 2M"));
            l.add(c("length not a multiple of 1 GiB for a 1 GiB file", t -> t.mm.mmap(t.giant, 0, 0, 2 * MIB, Protection.READ, SHARED),
                    "length=", "1G"));
            l.add(c("range past the end of the file", t -> t.mm.mmap(t.file, 62 * MIB, 0, 4 * MIB, Protection.READ, SHARED),
                    "length=", "inside the file"));
            l.add(c("hugetlb fixed address off the page size", t -> t.mm.mmap(t.file, 0, 8 * GIB + 4096, 2 * MIB, Protection.READ,
                    SHARED | FIXED), "address=", "aligned to 2M"));
            l.add(c("file mapping with MAP_ANONYMOUS", t -> t.mm.mmap(t.file, 0, 0, 2 * MIB, Protection.READ, SHARED
                    | MapFlags.MAP_ANONYMOUS), "flags=", "must not contain MAP_ANONYMOUS"));
            l.add(rejected("more pages than the pool can reserve", OutOfMemoryException.class, t -> t.mm.mmap(t.big, 0, 0, GIB, Protection.READ, SHARED),
                    "cannot reserve"));
            return l;
        }
    }

    @Nested
    @DisplayName("munmap and mprotect")
    class MunmapMprotect extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("unaligned munmap", t -> t.mm.munmap(VA + 1, 4096), "address=", "4K aligned"));
            l.add(c("zero-length munmap", t -> t.mm.munmap(VA, 0), "length=0x0"));
            l.add(c("negative-length munmap", t -> t.mm.munmap(VA, -4096), "length="));
            l.add(c("kernel-half munmap", t -> t.mm.munmap(0xffff_8000_0000_0000L, 4096), "address=", "user-space"));
            l.add(c("munmap past user space", t -> t.mm.munmap(0x7fff_ffff_e000L, 8192), "length=", "TASK_SIZE_MAX", "-EINVAL"));
            l.add(c("munmap of the last user page (do_vmi_munmap: start > TASK_SIZE)", t -> t.mm.munmap(0x7fff_ffff_f000L, 4096),
                    "address=0x7ffffffff000", "TASK_SIZE_MAX 0x7ffffffff000"));
            l.add(c("mprotect of the last user page", t -> t.mm.mprotect(0x7fff_ffff_f000L, 4096, Protection.READ),
                    "address=0x7ffffffff000", "TASK_SIZE_MAX 0x7ffffffff000"));
            l.add(c("mprotect past user space", t -> t.mm.mprotect(0x7fff_ffff_e000L, 8192, Protection.READ), "length=",
                    "TASK_SIZE_MAX", "-ENOMEM"));
            l.add(c("munmap splitting a hugetlb mapping", t -> t.mm.munmap(4 * GIB + 4096, 4096), "aligned to 2M"));
            l.add(c("mprotect of an unmapped range", t -> t.mm.mprotect(VA + 64 * 4096, 4096, Protection.READ), "fully mapped"));
            l.add(c("mprotect across a hole", t -> t.mm.mprotect(VA, MIB + 4096, Protection.READ), "fully mapped"));
            l.add(c("mprotect with null protection", t -> t.mm.mprotect(VA, 4096, null), "prot=null"));
            l.add(c("mprotect splitting a hugetlb mapping", t -> t.mm.mprotect(4 * GIB, MIB, Protection.READ), "aligned to 2M"));
            l.add(c("unaligned mprotect", t -> t.mm.mprotect(VA + 8, 4096, Protection.READ), "address=", "4K aligned"));
            l.add(c("unaligned madvise", t -> t.mm.madvise(VA + 8, 4096, org.vmcore.api.Advice.DONTNEED), "address=", "4K aligned"));
            l.add(c("madvise with a negative length", t -> t.mm.madvise(VA, -1, org.vmcore.api.Advice.DONTNEED), "length=", "negative"));
            l.add(c("madvise with null advice", t -> t.mm.madvise(VA, 4096, null), "advice=null"));
            l.add(c("madvise past user space", t -> t.mm.madvise(0x7fff_ffff_e000L, 8192, org.vmcore.api.Advice.DONTNEED),
                    "length=", "TASK_SIZE_MAX"));
            l.add(c("unaligned mremap", t -> t.mm.mremap(VA + 8, 4096, 4096, 0, 0), "oldAddress=", "4K aligned"));
            l.add(c("mremap with unknown flags", t -> t.mm.mremap(VA, 4096, 4096, 0x4, 0), "flags=4", "DONTUNMAP"));
            l.add(c("mremap FIXED without MAYMOVE", t -> t.mm.mremap(VA, 4096, 4096, MapFlags.MREMAP_FIXED, VA + GIB),
                    "flags=2", "MREMAP_MAYMOVE"));
            l.add(c("mremap to a zero length", t -> t.mm.mremap(VA, 4096, 0, 0, 0), "length=0x0"));
            l.add(c("mremap of an unmapped range", t -> t.mm.mremap(VA + 64 * 4096, 4096, 8192, MapFlags.MREMAP_MAYMOVE, 0),
                    "inside one mapping", "-EFAULT"));
            l.add(c("mremap growing a hugetlb mapping", t -> t.mm.mremap(4 * GIB, 2 * MIB, 4 * MIB, MapFlags.MREMAP_MAYMOVE, 0),
                    "cannot grow"));
            l.add(c("mremap onto itself", t -> t.mm.mremap(VA, 8192, 8192, MapFlags.MREMAP_MAYMOVE | MapFlags.MREMAP_FIXED, VA + 4096),
                    "newAddress=", "overlap"));
            return l;
        }
    }

    @Nested
    @DisplayName("faults, translation, TLB flushes and notifiers")
    class FaultsAndTranslation extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("fault with a null access", t -> t.mm.fault(VA, null), "access=null"));
            l.add(c("translate of a non-canonical address", t -> t.mm.translate(0x0000_8000_0000_0000L), "va=", "canonical"));
            l.add(c("pageAt of a non-canonical address", t -> t.mm.pageAt(0x0000_9000_0000_0000L), "va=", "canonical"));
            l.add(c("flushTlb with a bad stride", t -> t.mm.flushTlb(VA, VA + 4096, 13), "strideShift=13"));
            l.add(c("flushTlb with end before start", t -> t.mm.flushTlb(VA, VA, 12), "end=", "above start"));
            l.add(c("clearYoung outside any mapping", t -> t.mm.clearYoung(VA + 64 * 4096), "va=", "mapping"));
            l.add(c("registering a null notifier", t -> t.mm.registerNotifier(null), "notifier=null"));
            return l;
        }
    }

    @Nested
    @DisplayName("CPUs and their accesses")
    class Cpus extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("a CPU that does not exist", t -> t.machine.cpu(2), "cpu=2", "0..1"));
            l.add(c("a negative CPU", t -> t.machine.cpu(-1), "cpu=-1"));
            l.add(c("a load of 3 bytes", t -> t.cpu.load(VA, 3), "width=3"));
            l.add(c("a store of 16 bytes", t -> t.cpu.store(VA, 16, 0), "width=16"));
            l.add(c("a read into a null buffer", t -> t.cpu.read(VA, null, 0, 1), "buffer=null"));
            l.add(c("a read past the buffer", t -> t.cpu.read(VA, new byte[4], 2, 4), "offset=2", "inside a buffer of 4"));
            l.add(c("a write with a negative offset", t -> t.cpu.write(VA, new byte[4], -1, 1), "offset=-1"));
            l.add(closed("switching to an exited address space", t -> t.cpu.switchTo(t.exited)));
            l.add(c("a replay with a null op array", t -> t.cpu.replay(null, new long[] {VA}, new byte[] {8}, new long[1]), "ops=null"));
            l.add(c("a replay with arrays of different lengths", t -> t.cpu.replay(new byte[2], new long[] {VA}, new byte[] {8},
                    new long[1]), "ops.length=2", "vas.length 1"));
            l.add(c("a replay of an unknown operation", t -> t.cpu.replay(new byte[] {0, 9}, new long[] {VA, VA}, new byte[] {8, 8},
                    new long[2]), "ops[1]=9", "TraceOp"));
            l.add(c("a replay of 3-byte accesses", t -> t.cpu.replay(new byte[] {1, 0}, new long[] {VA, VA}, new byte[] {8, 3},
                    new long[2]), "widths[1]=3"));
            l.add(c("a cost table with a negative figure", t -> new CostTable(0, 0, -5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
                    "walkReference=-5", ">= 0"));
            return l;
        }
    }

    @Nested
    @DisplayName("the machine, hugetlbfs and physical memory")
    class MachineAndHugetlbfs extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("createAddressSpace on a missing node", t -> t.machine.createAddressSpace(7), "node=7"));
            l.add(c("page of a pfn out of range", t -> t.machine.page(1L << 40), "pfn=", "frame count"));
            l.add(c("page of a negative pfn", t -> t.machine.page(-1), "pfn=0xffffffffffffffff"));
            l.add(c("readPhysical out of memory", t -> t.machine.readPhysical(4 * GIB, 8), "pa=", "inside memory"));
            l.add(c("readPhysical of 5 bytes", t -> t.machine.readPhysical(0, 5), "width=5"));
            l.add(c("writePhysical at a negative address", t -> t.machine.writePhysical(-8, 8, 0), "pa="));
            l.add(c("hugetlbfs file with an empty name", t -> t.machine.hugetlbfs().create("", 2 * MIB, PageSize.SIZE_2M), "name="));
            l.add(c("hugetlbfs file with a taken name", t -> t.machine.hugetlbfs().create("f", 2 * MIB, PageSize.SIZE_2M), "name=f",
                    "existing"));
            l.add(c("hugetlbfs file of 4 KiB pages", t -> t.machine.hugetlbfs().create("g", 4096, PageSize.SIZE_4K), "pageSize=SIZE_4K"));
            l.add(c("hugetlbfs file of unaligned size", t -> t.machine.hugetlbfs().create("g", 3 * MIB, PageSize.SIZE_2M), "size=",
                    "multiple of 2M"));
            l.add(c("hugetlbfs file of zero size", t -> t.machine.hugetlbfs().create("g", 0, PageSize.SIZE_2M), "size=0x0"));
            l.add(c("pool of a missing node", t -> t.machine.hugetlbfs().pool(5, PageSize.SIZE_2M), "node=5"));
            l.add(c("pool of 4 KiB pages", t -> t.machine.hugetlbfs().pool(0, PageSize.SIZE_4K), "size=SIZE_4K"));
            l.add(c("pageAt past the end of a file", t -> t.file.pageAt(32), "index=0x20", "inside the file"));
            l.add(c("pageAt of a negative index", t -> t.file.pageAt(-1), "index="));
            l.add(c("failNthAllocation of zero", t -> t.machine.failNthAllocation(AllocationKind.FRAME, 0), "nth=0"));
            l.add(c("reclaim of a missing node", t -> t.machine.reclaim(7, 1), "node=7"));
            l.add(c("reclaim of a negative count", t -> t.machine.reclaim(0, -1), "pages=0xffffffffffffffff", "negative"));
            return l;
        }
    }

    @Nested
    @DisplayName("views and statistics")
    class ViewsAndStatistics extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("page-table leaves of an unaligned range", t -> t.mm.pageTableView().forEachLeaf(VA + 8, VA + 4096,
                    (va, level, raw, pa) -> true), "start=", "4K aligned"));
            l.add(c("page-table leaves of an empty range", t -> t.mm.pageTableView().forEachLeaf(VA, VA, (va, level, raw, pa) -> true),
                    "end=", "above start"));
            l.add(c("page-table leaves past user space", t -> t.mm.pageTableView().forEachLeaf(VA, 1L << 48,
                    (va, level, raw, pa) -> true), "end=0x1000000000000", "end of user space 0x800000000000"));
            l.add(c("page-table leaves with a null visitor", t -> t.mm.pageTableView().forEachLeaf(VA, VA + 4096, null),
                    "visitor=null"));
            l.add(c("page-table entry at the folded P4D", t -> t.mm.pageTableView().entry(VA, PageTableLevel.P4D), "level=P4D",
                    "4-level"));
            l.add(c("page-table entry at a null level", t -> t.mm.pageTableView().entry(VA, null), "level=null"));
            l.add(c("page-table walk of a kernel address", t -> t.mm.pageTableView().walk(0xffff_8000_0000_0000L), "va=",
                    "user-space"));
            l.add(closed("page-table view of an exited address space", t -> t.exited.pageTableView()));
            l.add(c("bulk readPhysical into a null array", t -> t.machine.readPhysical(0, null, 0, 8), "dst=null"));
            l.add(c("bulk readPhysical past the array", t -> t.machine.readPhysical(0, new byte[8], 4, 8), "length=8", "from offset 4"));
            l.add(c("bulk readPhysical past the end of memory", t -> t.machine.readPhysical(4 * GIB - 4, new byte[8], 0, 8), "pa=",
                    "inside memory"));
            l.add(c("bulk readPhysical into a read-only buffer", t -> t.machine.readPhysical(0, ByteBuffer.allocate(8).asReadOnlyBuffer()),
                    "dst=", "writable"));
            l.add(c("bulk readPhysical into a null buffer", t -> t.machine.readPhysical(0, (ByteBuffer) null), "dst=null"));
            l.add(c("a vmstat interval from a later snapshot", t -> t.machine.vmstatSnapshot().minus(VmstatSnapshot.of(
                    Map.of(VmstatCounter.PGFAULT, 1L << 40))), "earlier=", "pgfault 1099511627776 is above"));
            l.add(c("unlink of a missing file", t -> t.machine.hugetlbfs().unlink("nope"), "name=nope", "existing file"));
            l.add(c("unlink of a null name", t -> t.machine.hugetlbfs().unlink(null), "name=null"));
            return l;
        }
    }

    @Nested
    @DisplayName("rmap and migration")
    class RmapAndMigration extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("rmap of a free frame", t -> t.machine.rmap().mappings(1L << 19), "pfn=", "mapped or in a page cache"));
            l.add(c("tryToMigrate of a frame out of range", t -> t.machine.rmap().tryToMigrate(1L << 40), "pfn="));
            l.add(c("move_pages to a missing node", t -> t.machine.migration().movePages(t.mm, new long[] {VA}, new int[] {9},
                    MigrationService.MPOL_MF_MOVE), "node=9", "-ENODEV"));
            l.add(c("move_pages with arrays of different lengths", t -> t.machine.migration().movePages(t.mm, new long[] {VA, VA},
                    new int[] {1}, MigrationService.MPOL_MF_MOVE), "nodes=", "as long as addresses"));
            l.add(c("move_pages with both MOVE flags", t -> t.machine.migration().movePages(t.mm, new long[] {VA}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE | MigrationService.MPOL_MF_MOVE_ALL), "flags=6"));
            l.add(c("move_pages with null addresses", t -> t.machine.migration().movePages(t.mm, null, null,
                    MigrationService.MPOL_MF_MOVE), "addresses=null"));
            l.add(c("migrate_pages from a missing node", t -> t.machine.migration().migratePages(t.mm, new int[] {4}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE), "node=4"));
            l.add(c("migrate_pages with unequal node lists", t -> t.machine.migration().migratePages(t.mm, new int[] {0, 1},
                    new int[] {1}, MigrationService.MPOL_MF_MOVE), "toNodes=", "as long as fromNodes"));
            l.add(c("migrate_pages of an address space of another machine", t -> {
                try (Machine other = Machine.builder().build()) {
                    t.machine.migration().migratePages(other.createAddressSpace(), new int[] {0}, new int[] {1},
                            MigrationService.MPOL_MF_MOVE);
                }
            }, "addressSpace=", "this machine"));
            l.add(c("soft offline of a pfn out of range", t -> t.machine.migration().softOffline(1L << 40), "pfn="));
            l.add(c("soft offline of a free 4 KiB frame", t -> t.machine.migration().softOffline((1L << 19) + 7), "pfn=",
                    "in use or a free huge page"));
            l.add(c("offline of an unaligned range", t -> t.machine.migration().offlineRange(1, (1L << 19) + 1, (1L << 19) + 512),
                    "2 MiB aligned"));
            l.add(c("offline of a range outside the node", t -> t.machine.migration().offlineRange(0, 1L << 19, (1L << 19) + 512),
                    "startPfn=", "inside node 0"));
            l.add(c("split_huge_pages of an unaligned range", t -> t.machine.migration().splitHugePages(t.mm, VA + 1, VA + 4096),
                    "start=", "4K aligned"));
            l.add(c("split_huge_pages of an empty range", t -> t.machine.migration().splitHugePages(t.mm, VA, VA), "end=",
                    "above start"));
            l.add(c("khugepaged scan of no range", t -> t.machine.khugepaged().scan(0), "ranges=0", "1 or more"));
            return l;
        }
    }

    @Nested
    @DisplayName("calls on a closed machine or an exited address space")
    class ClosedObjects extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(closed("mmap in an exited address space", t -> t.exited.mmap(0, 4096, Protection.READ, ANON)));
            l.add(closed("fault in an exited address space", t -> t.exited.fault(VA, Access.READ)));
            l.add(closed("counters of an exited address space", t -> t.exited.counters()));
            l.add(closed("createAddressSpace on a closed machine", t -> t.closedMachine.createAddressSpace()));
            l.add(closed("hugetlbfs create on a closed machine", t -> t.closedMachine.hugetlbfs().create("x", 2 * MIB,
                    PageSize.SIZE_2M)));
            l.add(closed("page on a closed machine", t -> t.closedMachine.page(0)));
            l.add(closed("readPhysical on a closed machine", t -> t.closedMachine.readPhysical(0, 8)));
            l.add(closed("flushTlbAll on a closed machine", t -> t.closedMachine.flushTlbAll()));
            l.add(closed("checkInvariants on a closed machine", t -> t.closedMachine.checkInvariants()));
            return l;
        }
    }

    @Nested
    @DisplayName("null, another machine's and closed objects (issue 15 item 4)")
    class NullAndForeignObjects extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("rmap walk with a null visitor", t -> t.machine.rmap().walk(t.anonPfn, null), "visitor=null"));
            l.add(c("tlbHolds of a null address space", t -> t.cpu.tlbHolds(null, VA), "addressSpace=null"));
            l.add(c("tlbHolds of another machine's address space", t -> t.cpu.tlbHolds(t.foreignMm, VA), "addressSpace=", "this machine"));
            l.add(closed("tlbHolds of an exited address space", t -> t.cpu.tlbHolds(t.exited, VA)));
            l.add(c("switching to another machine's address space", t -> t.machine.cpu(1).switchTo(t.foreignMm), "addressSpace=",
                    "this machine"));
            l.add(c("unregistering a null notifier", t -> t.mm.unregisterNotifier(null), "notifier=null"));
            l.add(closed("registering a notifier on an exited address space", t -> t.exited.registerNotifier(new MmuNotifier() {
            })));
            l.add(c("hugetlbfs file with a null name", t -> t.machine.hugetlbfs().create(null, 2 * MIB, PageSize.SIZE_2M), "name=null"));
            l.add(c("hugetlbfs file with a null page size", t -> t.machine.hugetlbfs().create("g", 2 * MIB, null), "pageSize=null"));
            l.add(c("pool of a null size", t -> t.machine.hugetlbfs().pool(0, null), "size=null"));
            l.add(c("pageTableDot of a null list", t -> t.machine.pageTableDot(null, 0, VA, false), "addressSpaces=null"));
            l.add(c("pageTableDot with a null address space", t -> t.machine.pageTableDot(Arrays.asList(t.mm, null), 0, VA, false),
                    "addressSpace=null"));
            l.add(c("pageTableDot of another machine's address space", t -> t.machine.pageTableDot(List.of(t.foreignMm), 0, VA, false),
                    "addressSpace=", "this machine"));
            l.add(closed("pageTableDot of an exited address space", t -> t.machine.pageTableDot(List.of(t.exited), 0, VA, false)));
            l.add(c("checkTranslation of a null address space", t -> t.machine.checkTranslation("gpu", null, VA, t.anonPfn, false),
                    "addressSpace=null"));
            l.add(c("checkTranslation of another machine's address space", t -> t.machine.checkTranslation("gpu", t.foreignMm, VA,
                    t.anonPfn, false), "addressSpace=", "this machine"));
            l.add(c("failNthAllocation of a null kind", t -> t.machine.failNthAllocation(null, 1), "kind=null"));
            l.add(c("allocationCount of a null kind", t -> t.machine.allocationCount(null), "kind=null"));
            l.add(c("move_pages of a null address space", t -> t.machine.migration().movePages(null, new long[] {VA}, null,
                    MigrationService.MPOL_MF_MOVE), "addressSpace=null"));
            l.add(c("move_pages of another machine's address space", t -> t.machine.migration().movePages(t.foreignMm,
                    new long[] {VA}, null, MigrationService.MPOL_MF_MOVE), "addressSpace=", "this machine"));
            l.add(closed("move_pages of an exited address space", t -> t.machine.migration().movePages(t.exited, new long[] {VA}, null,
                    MigrationService.MPOL_MF_MOVE)));
            l.add(c("migrate_pages of a null address space", t -> t.machine.migration().migratePages(null, new int[] {0}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE), "addressSpace=null"));
            l.add(c("migrate_pages with null source nodes", t -> t.machine.migration().migratePages(t.mm, null, new int[] {1},
                    MigrationService.MPOL_MF_MOVE), "fromNodes=null"));
            l.add(closed("migrate_pages of an exited address space", t -> t.machine.migration().migratePages(t.exited, new int[] {0},
                    new int[] {1}, MigrationService.MPOL_MF_MOVE)));
            l.add(c("loadAll with null addresses", t -> t.cpu.loadAll(null, 8, new long[1]), "vas=null"));
            l.add(c("storeAll with fewer values than addresses", t -> t.cpu.storeAll(new long[] {VA, VA}, 8, new long[1]),
                    "values.length=1", "vas.length 2"));
            l.add(c("a MovePagesResult with a null status array", t -> new MovePagesResult(0, null), "status=null"));
            l.add(c("builder: huge pages of a null size", t -> Machine.builder().node(GIB).hugePages(0, null, 1), "size=null"));
            return l;
        }
    }

    @Nested
    @DisplayName("the builder and the value types")
    class Builder extends Table {
        @Override
        List<Arguments> calls() {
            List<Arguments> l = new ArrayList<>();
            l.add(c("builder: a node of 1 byte", t -> Machine.builder().node(1), "nodeBytes=0x1", "multiple of 1 GiB"));
            l.add(c("builder: 2000 CPUs", t -> Machine.builder().cpus(2000), "cpus=2000"));
            l.add(c("builder: huge pages on an unknown node", t -> Machine.builder().hugePages(3, PageSize.SIZE_2M, 1), "node=3"));
            l.add(c("builder: a TLB of 100 entries 16-way", t -> new TlbConfig(100, 16, 8, 8, 4, 4, 1, 1, 1), "entries4k=100"));
            l.add(c("builder: a null TLB", t -> Machine.builder().tlb(null), "tlb=null"));
            l.add(c("builder: a null THP mode", t -> Machine.builder().thp(null), "thp=null"));
            l.add(c("builder: swap of 5000 bytes", t -> Machine.builder().swap(5000), "swapBytes=0x1388", "multiple of 4 KiB"));
            l.add(c("builder: negative swap", t -> Machine.builder().swap(-4096), "swapBytes=", "non-negative"));
            l.add(c("builder: 32 TiB of swap", t -> Machine.builder().swap(1L << 45), "swapBytes=0x200000000000", "at most 16 TiB"));
            l.add(c("Protection.ofBits with unknown bits", t -> Protection.ofBits(0x10), "prot=0x10"));
            l.add(c("PageSize.ofBytes of 8 KiB", t -> PageSize.ofBytes(8192), "pageSize=", "4096, 2097152 or 1073741824"));
            return l;
        }
    }
}
