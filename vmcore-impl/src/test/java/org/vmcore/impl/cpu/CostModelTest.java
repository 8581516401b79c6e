package org.vmcore.impl.cpu;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.vmcore.impl.Fixtures.GIB;

import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.vmcore.api.AddressSpace;
import org.vmcore.api.CostModel;
import org.vmcore.api.CostTable;
import org.vmcore.api.Cpu;
import org.vmcore.api.FaultResult;
import org.vmcore.api.InvalidArgumentException;
import org.vmcore.api.Machine;
import org.vmcore.api.MapFlags;
import org.vmcore.api.MmuNotifier;
import org.vmcore.api.NotifierRange;
import org.vmcore.api.PageSize;
import org.vmcore.api.PageTableLevel;
import org.vmcore.api.Protection;

/** A cost model charges each event to the CPU the class comment of {@link CostModel} names. */
class CostModelTest {
    private static final int ANON = MapFlags.MAP_PRIVATE | MapFlags.MAP_ANONYMOUS | MapFlags.MAP_FIXED;
    private static final long VA = 0x10_0000_0000L;

    /** Charges a distinct figure per event and remembers the events, one list per CPU. */
    static final class Recording implements CostModel {
        final List<String> events = new ArrayList<>();

        @Override
        public long l1Hit(PageSize size) {
            events.add("l1");
            return 1;
        }

        @Override
        public long stlbHit(PageSize size) {
            events.add("stlb");
            return 10;
        }

        @Override
        public long walkReference(PageTableLevel level, long physicalAddress) {
            events.add("ref " + level);
            return 100;
        }

        @Override
        public long fault(FaultResult result, PageSize size) {
            events.add("fault " + result + " " + size.label());
            return 1000;
        }

        @Override
        public long tlbFlush(boolean all, long pages) {
            events.add("flush " + (all ? "all" : pages));
            return 10_000;
        }

        @Override
        public long shootdownSent(int targets) {
            events.add("sent " + targets);
            return 100_000;
        }

        @Override
        public long shootdownReceived() {
            events.add("received");
            return 1_000_000;
        }

        @Override
        public long notifierCallback() {
            events.add("notifier");
            return 10_000_000;
        }

        @Override
        public long pageCopy(long bytes) {
            events.add("copy " + bytes);
            return 100_000_000;
        }
    }

    private Machine machine;
    private Cpu cpu0;
    private Cpu cpu1;
    private AddressSpace mm;
    private final Recording costs0 = new Recording();
    private final Recording costs1 = new Recording();

    @BeforeEach
    void build() {
        machine = Machine.builder().node(GIB).cpus(2).checkInvariantsAfterEveryOperation(true).build();
        cpu0 = machine.cpu(0);
        cpu1 = machine.cpu(1);
        mm = machine.createAddressSpace();
        mm.mmap(VA, 16 * 4096, Protection.READ_WRITE, ANON);
        cpu0.switchTo(mm);
        cpu1.switchTo(mm);
        cpu0.costModel(costs0);
        cpu1.costModel(costs1);
    }

    @AfterEach
    void close() {
        machine.close();
    }

    @Test
    void aColdLoadIsChargedItsWalksAndItsFault() {
        cpu0.loadRecorded(VA, 8);
        assertThat(costs0.events).as("a read maps the zero page").containsExactly("ref PGD", "fault ZERO_PAGE 4K", "ref PGD", "ref PUD",
                "ref PMD", "ref PTE");
        assertThat(cpu0.cycles()).isEqualTo(5 * 100 + 1000);
        assertThat(cpu0.outcome().cycles()).isEqualTo(cpu0.cycles());
        cpu0.load(VA, 8);
        cpu0.load(VA, 8);
        assertThat(costs0.events.subList(6, costs0.events.size())).as("plain loads are charged too: the fill put the 4 KiB entry in the L1").containsExactly("l1", "l1");
        assertThat(cpu0.cycles()).isEqualTo(5 * 100 + 1000 + 1 + 1);
        assertThat(costs1.events).isEmpty();
        cpu0.resetCycles();
        assertThat(cpu0.cycles()).isZero();
    }

    @Test
    void aMunmapChargesTheInitiatorItsFlushAndShootdownAndTheTargetItsInterrupt() {
        cpu0.store(VA, 8, 1);
        cpu1.load(VA, 8);
        mm.registerNotifier(new MmuNotifier() {
            @Override
            public void invalidateRangeStart(NotifierRange range) {
            }
        });
        costs0.events.clear();
        costs1.events.clear();
        cpu0.run(() -> mm.munmap(VA, 4096));
        assertThat(costs0.events).contains("flush 1", "sent 1", "notifier").doesNotContain("received");
        assertThat(costs1.events).containsExactly("received");
        long notifierCalls = costs0.events.stream().filter("notifier"::equals).count();
        assertThat(notifierCalls).as("invalidate_range_start, _end and the secondary TLBs").isGreaterThanOrEqualTo(2);
    }

    @Test
    void aCopyOnWriteIsChargedTheCopyToTheFaultingCpu() {
        cpu0.store(VA, 8, 7);
        AddressSpace child = mm.fork();
        cpu1.switchTo(child);
        costs1.events.clear();
        cpu1.storeRecorded(VA, 8, 9);
        assertThat(costs1.events).contains("fault COW_COPY 4K", "copy 4096");
        assertThat(cpu1.outcome().cycles()).as("the copy is part of the access").isGreaterThanOrEqualTo(100_000_000 + 1000);
    }

    @Test
    void withoutAModelNothingIsCharged() {
        cpu0.costModel(null);
        cpu0.store(VA, 8, 1);
        cpu0.loadRecorded(VA, 8);
        assertThat(cpu0.cycles()).isZero();
        assertThat(cpu0.outcome().cycles()).isZero();
    }

    @Test
    void theDefaultTableChargesPublishedLatencies() {
        cpu0.costModel(CostTable.DEFAULT);
        cpu0.storeRecorded(VA, 8, 1);
        long cold = cpu0.outcome().cycles();
        assertThat(cold).as("five walk references, a minor fault, zeroing 4 KiB")
                .isEqualTo(5 * CostTable.DEFAULT.walkReference() + CostTable.DEFAULT.minorFault() + 4 * CostTable.DEFAULT.zeroPerKiB());
        assertThat(CostTable.DEFAULT.fault(FaultResult.ZERO_PAGE, PageSize.SIZE_4K)).as("the zero page is not zeroed again")
                .isEqualTo(CostTable.DEFAULT.minorFault());
        assertThat(CostTable.DEFAULT.fault(FaultResult.NEW_PAGE, PageSize.SIZE_2M))
                .as("zeroing a 2 MiB page dominates its fault").isGreaterThan(50 * CostTable.DEFAULT.fault(FaultResult.NEW_PAGE, PageSize.SIZE_4K));
        assertThatThrownBy(() -> new CostTable(0, -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)).isInstanceOf(InvalidArgumentException.class)
                .hasMessageContaining("stlbHit=-1");
    }
}
