package org.vmcore.impl.hostile;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.catchThrowable;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.vmcore.api.Access;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.MapFlags;
import org.vmcore.api.Machine;
import org.vmcore.api.MigrationPhase;
import org.vmcore.api.MigrationService;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageFlag;
import org.vmcore.api.PageReference;
import org.vmcore.api.Protection;

class Hostile18Test {
    private static final long MIB = 1L << 20;
    private static final int PRIV = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;

    /**
     * A PFN walker's reference on the new page of a migration that fails survives the failure:
     * the migration puts only its own reference (folio_put), so the page stays the walker's until
     * its put, and nothing reuses it meanwhile. It used to be freed under the walker.
     */
    @Test
    void aWalkersReferenceOnAFailedMigrationsNewPageKeepsThePage() {
        try (Machine machine = Machine.builder().node(1L << 30).node(1L << 30).build()) {
            AddressSpace mm = machine.createAddressSpace(0);
            long va = 0x40000000L;
            mm.mmap(va, 4096, Protection.READ_WRITE, PRIV);
            mm.fault(va, Access.WRITE);
            PageReference[] ref = new PageReference[1];
            long[] target = {-1};
            machine.migration().setObserver(e -> {
                if (e.phase() == MigrationPhase.BEFORE_COPY && ref[0] == null) {
                    target[0] = e.newPfn();
                    ref[0] = machine.tryGetPage(e.newPfn());
                    throw new IllegalStateException("observer refuses");
                }
            });
            Throwable t = catchThrowable(() -> machine.migration().movePages(mm, new long[] {va}, new int[] {1},
                    MigrationService.MPOL_MF_MOVE));
            machine.migration().setObserver(null);
            assertThat(t).isInstanceOf(IllegalStateException.class);
            assertThat(machine.page(target[0]).refcount()).as("the walker's reference only").isEqualTo(1);
            assertThat(machine.page(target[0]).flags()).doesNotContain(PageFlag.BUDDY);
            assertThat(machine.checkInvariants()).isEmpty();
            // migrate again: the walker's page must not be reused under it
            machine.migration().movePages(mm, new long[] {va}, new int[] {1}, MigrationService.MPOL_MF_MOVE);
            long now = mm.pageAt(va);
            ref[0].close();
            List<String> v = machine.checkInvariants();
            assertThat(v).as("a walker's put must not free a page another mapping holds").isEmpty();
        }
    }

    /**
     * fork's tlb_flush_pending excuses only the permissions fork takes away before its flush: a
     * device's use of a frame the address space does not map, during fork and outside any
     * invalidation, is still a stale use.
     */
    @Test
    void forksPendingFlushDoesNotHideAStaleFrame() {
        try (Machine machine = Machine.builder().node(1L << 30).detectStaleTranslations(true).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long va = 0x40000000L;
            long other = 0x80000000L; // not mapped: no invalidation covers it
            mm.mmap(va, 4096, Protection.READ_WRITE, PRIV);
            mm.fault(va, Access.WRITE);
            long pfn = mm.pageAt(va);
            List<Boolean> results = new ArrayList<>();
            mm.registerNotifier(new MmuNotifier() {
                @Override
                public void invalidateRangeStart(NotifierRange range) {
                    results.add(machine.checkTranslation("dev", mm, other, pfn, false));
                }
            });
            AddressSpace child = mm.fork();
            long during = machine.staleAccessCount();
            machine.checkTranslation("dev", mm, other, pfn, false);
            child.close();
            assertThat(during).as("a device use of a frame va does not map, during fork, outside any invalidation").isEqualTo(1);
        }
    }
}
