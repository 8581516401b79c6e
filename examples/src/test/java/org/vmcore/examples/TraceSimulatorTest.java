package org.vmcore.examples;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The trace simulator example: each phase shows the TLB behaviour its access pattern should. */
class TraceSimulatorTest {
    @Test
    void eachPhaseTranslatesAsItsPatternShould() {
        List<TraceSimulator.Phase> phases = TraceSimulator.run(2, 20_000, 7);
        TraceSimulator.Phase streaming = phases.get(0);
        TraceSimulator.Phase random = phases.get(1);
        TraceSimulator.Phase chase = phases.get(2);
        assertThat(phases).allSatisfy(p -> assertThat(p.accesses).isEqualTo(2 * 20_000));
        assertThat(streaming.faults).as("two faults per new 4 KiB page (20000 lines of 64 B span 313 pages, two processes):"
                + " the first load maps the zero page, the first store copies it").isEqualTo(2 * 2 * ((20_000 * 64L + 4095) / 4096));
        assertThat(streaming.l1 + streaming.stlb).as("64 lines per page: all but one access of a page hit")
                .isGreaterThan(streaming.accesses * 9 / 10);
        assertThat(random.faults).as("the window's pages fault in: at most 512 per process, shared by the pool")
                .isPositive().isLessThanOrEqualTo(2 * 512);
        assertThat(chase.walks).as("a page per step, far more pages than the TLB holds: nearly every step walks")
                .isGreaterThan(chase.accesses * 8 / 10);
        assertThat(chase.cycles / chase.accesses).as("walks cost more than hits").isGreaterThan(streaming.cycles / streaming.accesses);
        assertThat(chase.references).isGreaterThanOrEqualTo(chase.walks);
        assertThat(phases).allSatisfy(p -> assertThat(p.toString()).contains("cycles/access", "ns/access"));
    }
}
