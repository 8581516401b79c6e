package org.vmcore.impl;

import static org.assertj.core.api.Assertions.assertThat;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Seeded model-based random testing (see {@link ModelRunner}); the long run is behind -Pstress. */
class ModelBasedTest {
    @ParameterizedTest(name = "seed {0}")
    @ValueSource(longs = {1, 2, 3, 4, 5, 6})
    void randomSequencesAgreeWithTheModel(long seed) {
        ModelRunner.runChecked(seed, 400);
    }

    @Test
    void theRunsDoWhatTheySay() {
        ModelRunner r = new ModelRunner(7);
        try {
            r.run(400, true);
            assertThat(r.log()).hasSize(400);
            assertThat(r.log()).anyMatch(s -> s.startsWith("fork")).anyMatch(s -> s.startsWith("move_pages"))
                    .anyMatch(s -> s.startsWith("store")).anyMatch(s -> s.startsWith("mprotect"))
                    .anyMatch(s -> s.startsWith("truncate")).anyMatch(s -> s.startsWith("mmap p0 small hugetlb file"))
                    .anyMatch(s -> s.startsWith("madvise")).anyMatch(s -> s.startsWith("mremap"));
            assertThat(r.vmstat().get("pgmigrate_success")).as("migrations happened").isPositive();
            assertThat(r.log()).anyMatch(s -> s.startsWith("reclaim"));
            assertThat(r.vmstat().get("pswpout")).as("pages swapped out").isPositive();
            assertThat(r.vmstat().get("pswpin")).as("and read back").isPositive();
        } finally {
            r.close();
        }
    }

    @Test
    void bisectionFindsTheFirstFailingPrefix() {
        // a stand-in failure: the check fails once the model has seen its 137th step
        assertThat(ModelRunner.shortestFailingPrefixOf(n -> n >= 137, 1000)).isEqualTo(137);
    }

    /** At least 10 million steps over many seeds, two seeds at a time; run with mvn -Pstress. */
    @Test
    @Tag("stress")
    void tenMillionSteps() throws Exception {
        long total = Long.getLong("vmcore.model.steps", 10_000_000L);
        int perSeed = 20_000;
        int seeds = (int) ((total + perSeed - 1) / perSeed);
        long start = System.nanoTime();
        var pool = Executors.newFixedThreadPool(2);
        try {
            List<Future<?>> runs = new ArrayList<>();
            for (int i = 0; i < seeds; i++) {
                long seed = 1000 + i;
                runs.add(pool.submit(() -> {
                    ModelRunner.runChecked(seed, perSeed);
                }));
            }
            for (var run : runs) {
                run.get();
            }
        } finally {
            pool.shutdownNow();
        }
        System.out.printf("model-based stress: %d steps over %d seeds (1000..%d) in %.1f s%n", (long) seeds * perSeed, seeds, 1000 + seeds - 1,
                (System.nanoTime() - start) / 1e9);
    }
}
