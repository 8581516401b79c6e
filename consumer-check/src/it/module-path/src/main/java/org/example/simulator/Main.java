package org.example.simulator;

import java.util.List;
import org.vmcore.api.AccessOutcome;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.CostModel;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableEntry;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;
import org.vmcore.api.TraceOp;

/**
 * A consumer of the published vmcore artifacts, doing what a simulator does: replays a mixed
 * trace, charges cycles with its own cost model, reads CR3 and walks the page-table view.
 * args[0] says where vmcore must have been loaded from.
 */
public final class Main {
    private Main() {
    }

    /** One cycle per event, ten per walk reference: easy to check by hand. */
    static final class FlatCosts implements CostModel {
        @Override
        public long l1Hit(PageSize size) {
            return 1;
        }

        @Override
        public long stlbHit(PageSize size) {
            return 1;
        }

        @Override
        public long walkReference(PageTableLevel level, long physicalAddress) {
            return 10;
        }

        @Override
        public long fault(FaultResult result, PageSize size) {
            return 1000;
        }

        @Override
        public long tlbFlush(boolean all, long pages) {
            return 1;
        }

        @Override
        public long shootdownSent(int targets) {
            return 1;
        }

        @Override
        public long shootdownReceived() {
            return 1;
        }

        @Override
        public long notifierCallback() {
            return 1;
        }

        @Override
        public long pageCopy(long bytes) {
            return 1;
        }
    }

    public static void main(String[] args) {
        String expected = args[0];
        String loadedFrom = Machine.class.getModule().isNamed() ? "module-path" : "class-path";
        check(loadedFrom.equals(expected), "vmcore-api was loaded from the " + loadedFrom + ", expected the " + expected);
        try (Machine machine = Machine.builder().node(1L << 30).build()) {
            AddressSpace mm = machine.createAddressSpace();
            long data = mm.mmap(0, 1 << 20, Protection.READ_WRITE, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            long code = mm.mmap(0, 1 << 16, Protection.READ_EXEC, MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS);
            Cpu cpu = machine.cpu(0);
            cpu.switchTo(mm);
            cpu.costModel(new FlatCosts());
            long[] heard = new long[1];
            cpu.accessListener(o -> heard[0] += o.translation() == AccessOutcome.Translation.WALK ? 1 : 0);

            byte[] ops = {TraceOp.STORE, TraceOp.LOAD, TraceOp.FETCH, TraceOp.STORE, TraceOp.LOAD};
            long[] vas = {data, data, code, data + 4096, data + 4096};
            byte[] widths = {8, 8, 4, 2, 2};
            long[] values = {42, 0, 0, 7, 0};
            cpu.replay(ops, vas, widths, values);
            check(values[1] == 42 && values[4] == 7, "replay read back " + values[1] + " and " + values[4]);
            check(heard[0] >= 3, "the listener heard " + heard[0] + " walks");
            check(cpu.cycles() >= 3 * 1000, "three faults cost at least 3000 cycles, charged " + cpu.cycles());

            long cr3 = mm.cr3();
            List<PageTableEntry> walk = mm.pageTableView().walk(data);
            check(walk.getFirst().tablePa() == cr3, "the walk starts at CR3 0x" + Long.toHexString(cr3));
            PageTableEntry leaf = walk.getLast();
            check(leaf.level() == PageTableLevel.PTE && leaf.pa() == mm.translate(data) - (data & 0xFFF),
                    "the leaf maps what translate says: " + leaf);
            System.out.println("consumer on the " + loadedFrom + ": " + machine.getClass().getName() + " replayed "
                    + ops.length + " accesses for " + cpu.cycles() + " cycles; CR3 0x" + Long.toHexString(cr3) + ", "
                    + walk.size() + " levels walked");
        }
    }

    private static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }
}
