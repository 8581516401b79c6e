package org.example.simulator;

import org.openjdk.jmh.annotations.Benchmark;
import org.vmcore.api.Machine;

/** A consumer's own JMH benchmark; the check only needs JMH to have generated its harness. */
public class MachineBenchmark {
    @Benchmark
    public int buildAndClose() {
        try (Machine machine = Machine.builder().node(1L << 30).build()) {
            return machine.cpuCount();
        }
    }
}
