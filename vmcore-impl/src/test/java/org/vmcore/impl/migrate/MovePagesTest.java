package org.vmcore.impl.migrate;

import static org.assertj.core.api.Assertions.assertThat;
import static org.vmcore.impl.Fixtures.GIB;
import static org.vmcore.impl.Fixtures.MIB;

import java.util.function.Consumer;
import org.junit.jupiter.api.DisplayName;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.Errno;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MovePagesResult;
import org.vmcore.api.PageSize;
import org.vmcore.api.Protection;
import org.vmcore.impl.Fixtures;

/** move_pages(2) return value and abort rule, as do_pages_move / move_pages_and_store_status in mm/migrate.c. */
class MovePagesTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS;

    /** Two nodes; node 1 has room for one 2 MiB page only, so the second huge page of a batch fails with -ENOMEM. */
    private static Machine oneFreeHugePageOnNode1() {
        return Machine.builder().node(GIB).node(GIB).hugePages(0, PageSize.SIZE_2M, 4).hugePages(1, PageSize.SIZE_2M, 1).build();
    }

    /** Runs the test on machine, then closes it, and checks that it gave back every off-heap byte. */
    private static void withMachine(Machine machine, Consumer<Machine> test) {
        try {
            test.accept(machine);
        } finally {
            machine.close();
        }
        assertThat(machine.offHeapBytes()).isZero();
    }

    @Test
    @DisplayName("do_pages_move: lookup errors (-EFAULT, -ENOENT, -EACCES) go only into status; a failed batch stops the call"
            + " and returns its failures plus the pages not attempted (err += nr_pages - i)")
    void aFailedBatchStopsTheCallAndLookupErrorsDoNotCount() {
        withMachine(oneFreeHugePageOnNode1(), machine -> {
            AddressSpace mm = machine.createAddressSpace();
            long huge = Fixtures.populatedFile(machine, mm, "f", 4 * MIB).va();
            long anon = mm.mmap(0, 4 * 4096, Protection.READ_WRITE, ANON);
            mm.fault(anon, Access.WRITE); // will be shared with the child: mapcount 2
            mm.fault(anon + 2 * 4096, Access.WRITE);
            mm.fault(anon + 3 * 4096, Access.WRITE);
            AddressSpace child = mm.fork();
            child.fault(anon + 2 * 4096, Access.WRITE); // COW: the parent's copies of pages 2 and 3 stay private
            child.fault(anon + 3 * 4096, Access.WRITE);
            long lastAnon = mm.pageAt(anon + 3 * 4096);

            long[] addresses = {8 * GIB, anon + 4096, anon, huge, huge + 2 * MIB, anon + 2 * 4096, anon + 3 * 4096};
            int[] nodes = {1, 1, 1, 1, 1, 0, 1};
            MovePagesResult r = machine.migration().movePages(mm, addresses, nodes, MigrationService.MPOL_MF_MOVE);

            assertThat(r.status()).containsExactly(-Errno.EFAULT, -Errno.ENOENT, -Errno.EACCES, 1, -Errno.ENOMEM,
                    MovePagesResult.NOT_ATTEMPTED, MovePagesResult.NOT_ATTEMPTED);
            assertThat(r.notMigrated()).as("1 failed in the batch + 2 not attempted; -EFAULT/-ENOENT/-EACCES do not count")
                    .isEqualTo(3);
            assertThat(mm.pageAt(anon + 3 * 4096)).as("the call stopped before the last page").isEqualTo(lastAnon);
            assertThat(machine.page(lastAnon).node()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
        });
    }

    @Test
    @DisplayName("do_pages_move: a page that is not queued migrates the batch before it; if that fails, the page is"
            + " accounted for and only the pages after it count as not attempted")
    void aFailedBatchBeforeALookupErrorCountsThePagesAfterIt() {
        withMachine(oneFreeHugePageOnNode1(), machine -> {
            AddressSpace mm = machine.createAddressSpace();
            long huge = Fixtures.populatedFile(machine, mm, "f", 4 * MIB).va();
            long anon = mm.mmap(0, 2 * 4096, Protection.READ_WRITE, ANON);
            mm.fault(anon + 4096, Access.WRITE);
            long lastAnon = mm.pageAt(anon + 4096);
            MovePagesResult r = machine.migration().movePages(mm, new long[] {huge, huge + 2 * MIB, anon, anon + 4096},
                    new int[] {1, 1, 1, 1}, MigrationService.MPOL_MF_MOVE);
            assertThat(r.status()).containsExactly(1, -Errno.ENOMEM, -Errno.ENOENT, MovePagesResult.NOT_ATTEMPTED);
            assertThat(r.notMigrated()).as("1 failed + 1 after the -ENOENT page (err += nr_pages - i, then err--)").isEqualTo(2);
            assertThat(machine.page(lastAnon).node()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
        });
    }

    @Test
    @DisplayName("do_pages_move: -EACCES of a shared page without MPOL_MF_MOVE_ALL is not counted in the return value")
    void sharedPageIsRefusedInStatusOnly() {
        withMachine(Machine.builder().node(GIB).node(GIB).build(), machine -> {
            AddressSpace mm = machine.createAddressSpace();
            long anon = mm.mmap(0, 2 * 4096, Protection.READ_WRITE, ANON);
            mm.fault(anon, Access.WRITE);
            mm.fault(anon + 4096, Access.WRITE);
            AddressSpace child = mm.fork();
            child.fault(anon + 4096, Access.WRITE);
            MovePagesResult r = machine.migration().movePages(mm, new long[] {anon, anon + 4096}, new int[] {1, 1},
                    MigrationService.MPOL_MF_MOVE);
            assertThat(r.status()).containsExactly(-Errno.EACCES, 1);
            assertThat(r.notMigrated()).isZero();
            assertThat(machine.checkInvariants()).isEmpty();
        });
    }

    @Test
    @DisplayName("add_page_for_migration: a page already queued in the running batch fails isolation (-EBUSY), in status only")
    void aPageTwiceInOneBatchIsBusyTheSecondTime() {
        withMachine(Machine.builder().node(GIB).node(GIB).build(), machine -> {
            AddressSpace mm = machine.createAddressSpace();
            long anon = mm.mmap(0, 4096, Protection.READ_WRITE, ANON);
            mm.fault(anon, Access.WRITE);
            MovePagesResult r = machine.migration().movePages(mm, new long[] {anon, anon + 8}, new int[] {1, 1},
                    MigrationService.MPOL_MF_MOVE);
            assertThat(r.status()).containsExactly(1, -Errno.EBUSY);
            assertThat(r.notMigrated()).isZero();
            assertThat(machine.page(mm.pageAt(anon)).node()).isEqualTo(1);
            assertThat(machine.checkInvariants()).isEmpty();
        });
    }
}
