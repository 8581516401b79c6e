package org.vmcore.impl.vma;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;
import static org.vmcore.impl.Fixtures.state;

import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.api.Vma;
import org.vmcore.api.VmaKind;
import org.vmcore.impl.Fixtures;

class VmaTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;
    private static final int FIXED_ANON = ANON | MapFlags.MAP_FIXED;
    private static final long BASE = 0x1000_0000L;
    private static final long K4 = 0x1000;

    private final Machine machine = Machine.builder().node(2 * GIB).hugePages(0, PageSize.SIZE_2M, 64).checkInvariantsAfterEveryOperation(true).build();
    private final AddressSpace mm = machine.createAddressSpace();

    @AfterEach
    void close() {
        machine.close();
    }

    private List<String> layout() {
        return mm.vmas().stream().map(v -> String.format("%x-%x %s", v.start() - BASE, v.end() - BASE, v.protection())).toList();
    }

    @Test
    void adjacentAnonymousMappingsWithTheSameProtectionMerge() {
        mm.mmap(BASE, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        mm.mmap(BASE + 4 * K4, 4 * K4, Protection.READ_WRITE, FIXED_ANON);
        mm.mmap(BASE + 8 * K4, 4 * K4, Protection.READ, FIXED_ANON);
        assertThat(layout()).containsExactly("0-8000 rw-", "8000-c000 r--");
    }

    /** mprotect of [from, to) pages inside a 16-page rw- VMA, and the VMAs that result. */
    static Stream<Arguments> mprotectSplits() {
        return Stream.of(
                Arguments.of(0, 16, List.of("0-10000 r--")),
                Arguments.of(0, 4, List.of("0-4000 r--", "4000-10000 rw-")),
                Arguments.of(12, 16, List.of("0-c000 rw-", "c000-10000 r--")),
                Arguments.of(4, 8, List.of("0-4000 rw-", "4000-8000 r--", "8000-10000 rw-")),
                Arguments.of(15, 16, List.of("0-f000 rw-", "f000-10000 r--")));
    }

    @ParameterizedTest(name = "mprotect pages [{0}, {1})")
    @MethodSource("mprotectSplits")
    void mprotectSplitsAndMergingBackRestoresOneVma(int from, int to, List<String> expected) {
        mm.mmap(BASE, 16 * K4, Protection.READ_WRITE, FIXED_ANON | MapFlags.MAP_POPULATE);
        mm.mprotect(BASE + from * K4, (to - from) * K4, Protection.READ);
        assertThat(layout()).containsExactlyElementsOf(expected);
        for (long va = BASE; va < BASE + 16 * K4; va += K4) {
            boolean readOnly = va >= BASE + from * K4 && va < BASE + to * K4;
            assertThat(mm.findVma(va).orElseThrow().protection()).isEqualTo(readOnly ? Protection.READ : Protection.READ_WRITE);
        }
        mm.mprotect(BASE + from * K4, (to - from) * K4, Protection.READ_WRITE);
        assertThat(layout()).as("vma_merge joins the pieces again").containsExactly("0-10000 rw-");
    }

    /** munmap of [from, to) pages of a 16-page VMA. */
    static Stream<Arguments> munmapSplits() {
        return Stream.of(
                Arguments.of(0, 16, List.of()),
                Arguments.of(0, 4, List.of("4000-10000 rw-")),
                Arguments.of(4, 8, List.of("0-4000 rw-", "8000-10000 rw-")),
                Arguments.of(8, 20, List.of("0-8000 rw-")));
    }

    @ParameterizedTest(name = "munmap pages [{0}, {1})")
    @MethodSource("munmapSplits")
    void munmapSplitsVmasAndFreesThePages(int from, int to, List<String> expected) {
        long free = machine.freeFrames();
        mm.mmap(BASE, 16 * K4, Protection.READ_WRITE, FIXED_ANON | MapFlags.MAP_POPULATE);
        assertThat(mm.counters().anonPages()).isEqualTo(16);
        mm.munmap(BASE + from * K4, (to - from) * K4);
        assertThat(layout()).containsExactlyElementsOf(expected);
        long unmapped = Math.min(to, 16) - from;
        assertThat(mm.counters().anonPages()).isEqualTo(16 - unmapped);
        for (long i = 0; i < 16; i++) {
            boolean gone = i >= from && i < to;
            assertThat(mm.translate(BASE + i * K4) < 0).as("page %d unmapped", i).isEqualTo(gone);
        }
        mm.munmap(BASE, 16 * K4);
        assertThat(mm.counters().pageTablePages()).as("only the root is left").isEqualTo(1);
        assertThat(machine.freeFrames()).as("every page and table came back").isEqualTo(free);
    }

    @Test
    void mapFixedReplacesAndNoReplaceRefuses() {
        mm.mmap(BASE, 16 * K4, Protection.READ_WRITE, FIXED_ANON | MapFlags.MAP_POPULATE);
        String before = state(machine);
        assertThatThrownBy(() -> mm.mmap(BASE + 4 * K4, 4 * K4, Protection.READ, ANON | MapFlags.MAP_FIXED_NOREPLACE))
                .isInstanceOf(InvalidArgumentException.class).hasMessageContaining("EEXIST");
        assertThat(state(machine)).isEqualTo(before);
        mm.mmap(BASE + 4 * K4, 4 * K4, Protection.READ, FIXED_ANON);
        assertThat(layout()).containsExactly("0-4000 rw-", "4000-8000 r--", "8000-10000 rw-");
        assertThat(mm.counters().anonPages()).as("the replaced pages were unmapped").isEqualTo(12);
    }

    @Test
    void mappingsWithoutAFixedAddressGoTopDownAndNeverOverlap() {
        long a = mm.mmap(0, 8 * K4, Protection.READ, ANON);
        long b = mm.mmap(0, 8 * K4, Protection.READ_WRITE, ANON);
        long c = mm.mmap(a, 8 * K4, Protection.READ_WRITE, ANON); // the hint is taken: a is busy
        assertThat(a + 8 * K4).isLessThanOrEqualTo(SimAddressSpaceHolder.MMAP_BASE);
        assertThat(b + 8 * K4).isLessThanOrEqualTo(a);
        assertThat(c).isNotIn(a, b);
        List<Vma> vmas = mm.vmas();
        for (int i = 1; i < vmas.size(); i++) {
            assertThat(vmas.get(i).start()).isGreaterThanOrEqualTo(vmas.get(i - 1).end());
        }
        long hinted = mm.mmap(BASE, 4 * K4, Protection.READ, ANON);
        assertThat(hinted).as("a free hint is used").isEqualTo(BASE);
    }

    @Test
    void hugetlbMappingsSplitOnlyAtHugePageBoundaries() {
        HugetlbFile file = machine.hugetlbfs().create("f", 64 * MIB, PageSize.SIZE_2M);
        long va = mm.mmap(file, 0, GIB, 16 * MIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
        String before = state(machine);
        assertThatThrownBy(() -> mm.munmap(va + 4 * K4, 2 * MIB)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("aligned to 2M");
        assertThatThrownBy(() -> mm.mprotect(va, MIB, Protection.READ)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("aligned to 2M");
        assertThat(state(machine)).isEqualTo(before);
        mm.mprotect(va + 2 * MIB, 2 * MIB, Protection.READ);
        assertThat(mm.vmas()).extracting(Vma::pgoff).containsExactly(0L, 512L, 1024L);
        assertThat(mm.vmas()).extracting(Vma::kind).containsOnly(VmaKind.HUGETLB_SHARED);
    }

    static Stream<Arguments> badCalls() {
        return Stream.of(
                Arguments.of("zero length", (Call) (m, f) -> m.mmap(0, 0, Protection.READ, ANON), "length=0x0"),
                Arguments.of("negative length", (Call) (m, f) -> m.mmap(0, -4096, Protection.READ, ANON), "length="),
                Arguments.of("unaligned fixed", (Call) (m, f) -> m.mmap(BASE + 1, K4, Protection.READ, FIXED_ANON), "aligned"),
                Arguments.of("kernel-half fixed", (Call) (m, f) -> m.mmap(0xffff_8000_0000_0000L, K4, Protection.READ, FIXED_ANON), "user space"),
                Arguments.of("below mmap_min_addr", (Call) (m, f) -> m.mmap(0x1000, K4, Protection.READ, FIXED_ANON), "mmap_min_addr"),
                Arguments.of("beyond user space", (Call) (m, f) -> m.mmap(0x7fff_ffff_f000L, 2 * K4, Protection.READ, FIXED_ANON), "TASK_SIZE_MAX 0x7ffffffff000"),
                Arguments.of("shared and private", (Call) (m, f) -> m.mmap(0, K4, Protection.READ, ANON | MapFlags.MAP_SHARED), "exactly one"),
                Arguments.of("neither shared nor private", (Call) (m, f) -> m.mmap(0, K4, Protection.READ, MapFlags.MAP_ANONYMOUS), "exactly one"),
                Arguments.of("unknown flag", (Call) (m, f) -> m.mmap(0, K4, Protection.READ, ANON | 0x40), "0x40"),
                Arguments.of("anon without MAP_ANONYMOUS", (Call) (m, f) -> m.mmap(0, K4, Protection.READ, MapFlags.MAP_PRIVATE), "MAP_ANONYMOUS"),
                Arguments.of("null protection", (Call) (m, f) -> m.mmap(0, K4, null, ANON), "prot=null"),
                Arguments.of("overlapping NOREPLACE", (Call) (m, f) -> m.mmap(BASE, K4, Protection.READ, ANON | MapFlags.MAP_FIXED_NOREPLACE), "EEXIST"),
                Arguments.of("file offset unaligned", (Call) (m, f) -> m.mmap(f, 4096, 0, 2 * MIB, Protection.READ, MapFlags.MAP_SHARED), "offset=0x1000"),
                Arguments.of("file offset negative", (Call) (m, f) -> m.mmap(f, -2 * MIB, 0, 2 * MIB, Protection.READ, MapFlags.MAP_SHARED), "offset="),
                Arguments.of("file length unaligned", (Call) (m, f) -> m.mmap(f, 0, 0, MIB, Protection.READ, MapFlags.MAP_SHARED), "multiple of the file's page size"),
                Arguments.of("beyond the file", (Call) (m, f) -> m.mmap(f, 2 * MIB, 0, 8 * MIB, Protection.READ, MapFlags.MAP_SHARED), "inside the file"),
                Arguments.of("file with MAP_ANONYMOUS", (Call) (m, f) -> m.mmap(f, 0, 0, 2 * MIB, Protection.READ, MapFlags.MAP_SHARED | MapFlags.MAP_ANONYMOUS), "must not contain"),
                Arguments.of("null file", (Call) (m, f) -> m.mmap(null, 0, 0, 2 * MIB, Protection.READ, MapFlags.MAP_SHARED), "file=null"),
                Arguments.of("too many huge pages", (Call) (m, f) -> m.mmap(m.machineFile("big"), 0, 0, 256 * MIB, Protection.READ, MapFlags.MAP_SHARED), "cannot reserve"),
                Arguments.of("unaligned munmap", (Call) (m, f) -> m.munmap(BASE + 1, K4), "aligned"),
                Arguments.of("zero munmap", (Call) (m, f) -> m.munmap(BASE, 0), "length=0x0"),
                Arguments.of("kernel-half munmap", (Call) (m, f) -> m.munmap(0xffff_8000_0000_0000L, K4), "user-space"),
                Arguments.of("mprotect of a hole", (Call) (m, f) -> m.mprotect(BASE, 32 * K4, Protection.READ), "fully mapped"),
                Arguments.of("mprotect null", (Call) (m, f) -> m.mprotect(BASE, K4, null), "prot=null"));
    }

    /** A call on the address space, with a 4 MiB hugetlb file at hand. */
    interface Call {
        void run(Target target, HugetlbFile file);
    }

    /** The address space under test, plus a way to make files inside the lambda. */
    record Target(AddressSpace mm, Machine machine) {
        long mmap(long address, long length, Protection prot, int flags) {
            return mm.mmap(address, length, prot, flags);
        }

        long mmap(HugetlbFile file, long offset, long address, long length, Protection prot, int flags) {
            return mm.mmap(file, offset, address, length, prot, flags);
        }

        void munmap(long address, long length) {
            mm.munmap(address, length);
        }

        void mprotect(long address, long length, Protection prot) {
            mm.mprotect(address, length, prot);
        }

        HugetlbFile machineFile(String name) {
            return machine.hugetlbfs().files().stream().filter(f -> f.name().equals(name)).findFirst().orElseThrow();
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("badCalls")
    void badInputIsRejectedWithTheRuleAndNothingChanges(String name, Call call, String message) {
        HugetlbFile file = machine.hugetlbfs().create("f", 4 * MIB, PageSize.SIZE_2M);
        machine.hugetlbfs().create("big", 256 * MIB, PageSize.SIZE_2M);
        mm.mmap(BASE, 16 * K4, Protection.READ_WRITE, FIXED_ANON | MapFlags.MAP_POPULATE);
        mm.fault(BASE, Access.WRITE);
        String before = state(machine);
        assertThatThrownBy(() -> call.run(new Target(mm, machine), file)).isInstanceOf(org.vmcore.api.VmException.class)
                .hasMessageContaining(message);
        assertThat(state(machine)).as("state after a rejected call").isEqualTo(before);
    }

    /** Exposes the placement constant to the test without widening the API. */
    static final class SimAddressSpaceHolder {
        static final long MMAP_BASE = org.vmcore.impl.mm.SimAddressSpace.MMAP_BASE;
    }
}
