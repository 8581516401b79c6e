package org.vmcore.impl.rmap;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.HugetlbFile;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Mapping;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

class RmapTest {
    private static final long VA = 0x7000_0000L;
    private final Machine machine = Machine.builder().node(4 * GIB).hugePages(0, PageSize.SIZE_2M, 600).checkInvariantsAfterEveryOperation(true).build();

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void fileRmapFindsEverySharerAndEveryPrivateMapping() {
        HugetlbFile file = machine.hugetlbfs().create("f", 2 * GIB, PageSize.SIZE_2M);
        List<AddressSpace> sharers = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            AddressSpace mm = machine.createAddressSpace();
            mm.mmap(file, 0, (i + 1) * GIB, GIB, Protection.READ_WRITE, MapFlags.MAP_SHARED | MapFlags.MAP_FIXED);
            mm.fault((i + 1) * GIB + 6 * MIB, Access.READ);
            sharers.add(mm);
        }
        AddressSpace reader = machine.createAddressSpace();
        long priv = reader.mmap(file, 4 * MIB, 0, 4 * MIB, Protection.READ, MapFlags.MAP_PRIVATE);
        reader.fault(priv + 2 * MIB, Access.READ); // file page 3 through a private read-only mapping

        long page = file.pageAt(3);
        assertThat(machine.page(page).mapcount()).as("one shared PMD entry plus the private one").isEqualTo(2);
        List<Mapping> mappings = machine.rmap().mappings(page);
        assertThat(mappings).hasSize(6);
        for (int i = 0; i < 5; i++) {
            assertThat(mappings).contains(new Mapping(sharers.get(i), (i + 1) * GIB + 6 * MIB));
        }
        assertThat(mappings).contains(new Mapping(reader, priv + 2 * MIB));

        List<Mapping> visited = new ArrayList<>();
        int n = machine.rmap().walk(page, (mm, va) -> visited.add(new Mapping(mm, va)));
        assertThat(n).isEqualTo(6);
        assertThat(visited).containsExactlyInAnyOrderElementsOf(mappings);
        assertThat(machine.rmap().walk(page, (mm, va) -> false)).as("the visitor stops the walk").isEqualTo(1);
    }

    @Test
    void anonRmapFollowsForkChainsFiveLevelsDeep() {
        AddressSpace root = machine.createAddressSpace();
        root.mmap(VA, 16 * 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        long original = root.pageAt(VA);
        // A binary fork tree 5 levels deep: 1 + 2 + 4 + 8 + 16 processes.
        List<List<AddressSpace>> levels = new ArrayList<>();
        levels.add(List.of(root));
        for (int depth = 1; depth < 5; depth++) {
            List<AddressSpace> next = new ArrayList<>();
            for (AddressSpace parent : levels.get(depth - 1)) {
                next.add(parent.fork());
                next.add(parent.fork());
            }
            levels.add(next);
        }
        List<AddressSpace> all = levels.stream().flatMap(List::stream).toList();
        assertThat(all).hasSize(31);
        assertThat(machine.page(original).mapcount()).isEqualTo(31);
        assertThat(machine.rmap().mappings(original)).extracting(Mapping::addressSpace).containsExactlyInAnyOrderElementsOf(all);

        // A process at depth 2 breaks COW; the page it gets is found in it and in what it forks afterwards.
        AddressSpace writer = levels.get(2).get(1);
        writer.fault(VA, Access.WRITE);
        long copy = writer.pageAt(VA);
        AddressSpace grandchild = writer.fork().fork();
        assertThat(machine.rmap().mappings(copy)).extracting(Mapping::addressSpace)
                .containsExactlyInAnyOrder(writer, machine.addressSpaces().get(machine.addressSpaces().size() - 2), grandchild);
        assertThat(machine.rmap().mappings(original)).hasSize(31 - 1);
        assertThat(machine.rmap().mappings(original)).extracting(Mapping::addressSpace).doesNotContain(writer, grandchild);
        assertThat(machine.page(copy).index()).isEqualTo(VA >>> 12);
    }

    @Test
    void randomForkTreesAgreeWithTheRecordedOwners() {
        long seed = new Random().nextLong();
        try {
            Random random = new Random(seed);
            AddressSpace root = machine.createAddressSpace();
            root.mmap(VA, 8 * 4096, Protection.READ_WRITE,
                    MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
            List<AddressSpace> alive = new ArrayList<>(List.of(root));
            for (int step = 0; step < 60; step++) {
                AddressSpace mm = alive.get(random.nextInt(alive.size()));
                switch (random.nextInt(4)) {
                    case 0, 1 -> alive.add(mm.fork());
                    case 2 -> mm.fault(VA + random.nextInt(8) * 4096L, Access.WRITE);
                    default -> {
                        if (alive.size() > 1) {
                            mm.close();
                            alive.remove(mm);
                        }
                    }
                }
            }
            for (int i = 0; i < 8; i++) {
                long va = VA + i * 4096L;
                Set<Long> pages = new HashSet<>();
                alive.forEach(mm -> pages.add(mm.pageAt(va)));
                for (long pfn : pages) {
                    Set<AddressSpace> expected = new HashSet<>();
                    alive.forEach(mm -> {
                        if (mm.pageAt(va) == pfn) {
                            expected.add(mm);
                        }
                    });
                    assertThat(machine.rmap().mappings(pfn)).extracting(Mapping::addressSpace).containsExactlyInAnyOrderElementsOf(expected);
                    assertThat(machine.page(pfn).mapcount()).isEqualTo(expected.size());
                }
            }
        } catch (AssertionError e) {
            throw new AssertionError("seed " + seed + ": " + e.getMessage(), e);
        }
    }

    @Test
    void theWalkStopsWhenTheMapcountReachesZero() {
        AddressSpace root = machine.createAddressSpace();
        root.mmap(VA, 4096, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED | MapFlags.MAP_POPULATE);
        long page = root.pageAt(VA);
        AddressSpace a = root.fork();
        AddressSpace b = root.fork();
        AddressSpace c = root.fork();
        c.fault(VA, Access.WRITE); // c's VMA stays linked to the anon_vma but maps another page
        assertThat(machine.page(page).mapcount()).isEqualTo(3);
        List<AddressSpace> visited = new ArrayList<>();
        int n = machine.rmap().walk(page, (mm, va) -> {
            visited.add(mm);
            mm.munmap(va, 4096);
            return true;
        });
        assertThat(visited).containsExactly(root, a, b);
        assertThat(n).as("c was never visited: the walk was done").isEqualTo(3);
    }

    @Test
    void rmapOfAnUnmappedFrameIsRejected() {
        assertThatThrownBy(() -> machine.rmap().mappings(12345)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("pfn=0x3039");
        assertThatThrownBy(() -> machine.rmap().walk(-1, (mm, va) -> true)).isInstanceOf(InvalidArgumentException.class);
    }
}
